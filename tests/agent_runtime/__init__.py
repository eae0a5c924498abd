"""Tests of the node agent's runtime plugins against a real dockerd and real processes."""

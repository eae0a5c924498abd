"""Tests of the broker mesh (fogmesh.broker), against real broker processes."""

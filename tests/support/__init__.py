"""Helpers that start real brokers and processes for the tests."""

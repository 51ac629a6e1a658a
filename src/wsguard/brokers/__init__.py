"""Brokers: where state shared between connections (and nodes) lives."""

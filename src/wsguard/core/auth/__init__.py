"""Authentication methods: pure verifiers that return decisions (no I/O, no clock)."""

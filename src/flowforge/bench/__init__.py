"""Benchmarks against the peer library normflows (issue 3): `flowforge bench NAME`."""

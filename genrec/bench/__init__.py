"""Benchmarks that print JSON (speed is measured here, never asserted in tests)."""

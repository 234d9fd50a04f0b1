"""Benchmarks, run by make targets; nothing here is imported by services."""

"""Benchmarks: scripts that print tables and save plots; never pass/fail tests."""

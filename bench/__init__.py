"""Benchmarks: programs that print figures as JSON, never tests with timing asserts."""

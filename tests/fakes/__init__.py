"""Fake vendor APIs speaking each vendor's wire format, for contract tests and benchmarks."""

"""Benchmarks of the device library and its peers, measured side by side (make bench)."""

"""Benchmarks: each prints one JSON record and a one-line summary with ratios measured in the same run."""

"""Benchmarks: each prints `key=value` lines, ratios against a baseline from the same run last."""

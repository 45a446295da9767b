"""Benchmarks (not unit tests): each prints a table, writes JSON, and reports ratios to a same-run baseline."""

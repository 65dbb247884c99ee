"""Speed benchmarks: `tokenprune bench select` and `tokenprune bench e2e`."""

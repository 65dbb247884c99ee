"""Speed benchmarks: `tokenprune bench select`, `tokenprune bench e2e` and `tokenprune bench hooks`."""

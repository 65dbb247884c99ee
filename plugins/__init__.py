"""tokenprune's built-in strategies. Each module is a plugin, listed as an entry point in setup.cfg
exactly as a third-party distribution lists its own."""

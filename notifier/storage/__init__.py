"""Redis storage: key names, notification records, the store's atomic scripts, rate limits."""

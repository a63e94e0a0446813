"""notifier's HTTP API: a FastAPI app built by :func:`api.main.create_app`."""

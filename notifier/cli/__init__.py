"""The operator CLI (``notifier ...``) and the local development stack."""

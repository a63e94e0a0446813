"""Recipient preferences: unsubscribe tokens and links, and per-category opt-outs (RFC 8058)."""

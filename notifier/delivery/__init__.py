"""Delivery: claim a stored notification, render it, send it over SMTP and record the outcome."""

"""Subscriptions: an org's own plan changes, previewed exactly as they would bill."""

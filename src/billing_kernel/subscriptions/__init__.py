"""Subscriptions: an org's plan, status and scheduled change as they live
(`service/lifecycle.py`), and its own plan changes, previewed exactly as they would bill
(`service/changes.py`)."""

"""Subscriptions' operations: the lifecycle (`lifecycle.py`: an org's plan, status and
scheduled change, below invoices and quota, which read the plan in force through it) and
plan changes priced before they are made (`changes.py`, above them)."""

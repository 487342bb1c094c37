"""Usage: events validated, recorded exactly once per idempotency key, and added to the
per-period counters; the in-process SDK transport. New ways to report usage belong here."""

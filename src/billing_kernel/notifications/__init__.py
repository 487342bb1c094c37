"""Delivering events: webhook endpoints (Standard Webhooks signatures), an org's Slack and
email, one delivery per event and target with every attempt logged, retries on a schedule,
and the worker that does it (`worker.py`). Events come from `alerts`, written in the
transaction of what they are about; here they are read from that outbox."""

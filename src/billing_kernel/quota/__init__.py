"""Quota: an org's effective limits (plan, or its own override) and the decisions against
them. Enforcement policies (hard limits, grace) belong here."""

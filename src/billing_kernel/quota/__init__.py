"""Quota: an org's effective limits (plan, or its own override) and the decisions against
them. How each limit is enforced (soft, or hard with grace) is data of the plans capability;
the ladder a decision climbs, with the billing status above it, is `quota.rules`."""

"""The org billing summary and the billing page's data: plan, state, period, and each
metric's usage against its limit with the overage so far. A read model over the other
capabilities; it owns no tables."""

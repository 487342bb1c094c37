"""The subscription history's one write: billing states as they are, valid from a moment.
Shared by orgs (a new org's first state) and subscriptions (each change of plan or status)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Insert, literal, select

from billing_kernel.db.tables import org_billing_state, subscription_history
from billing_kernel.db.types import UTCDateTime


def add_to_history(which: ColumnElement[bool], since: datetime | None) -> Insert:
    """The billing states `which` selects, into the subscription history from `since` (None:
    from when each state was created), one statement however many orgs."""
    state = org_billing_state.c
    valid_from = state.created_at if since is None else literal(since, UTCDateTime)
    return subscription_history.insert().from_select(
        ["org_id", "valid_from", "plan_slug", "plan_version", "status"],
        select(state.org_id, valid_from, state.plan_slug, state.plan_version, state.status)
        .where(which)
        .order_by(state.org_id),
    )

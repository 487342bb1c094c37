"""The subscription history's one write: billing states as they are, valid from a moment.
Shared by orgs (a new org's first state) and subscriptions (each change of plan or status)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, func, literal, select

from billing_kernel.db.tables import org_billing_state, subscription_history
from billing_kernel.db.types import UTCDateTime


def add_to_history(which: ColumnElement[bool], since: datetime | None, dialect_name: str) -> Insert:
    """The billing states `which` selects, into the subscription history from `since` (None:
    from when each state was created), one statement however many orgs. Each change's number
    is a sequence's on PostgreSQL; on SQLite, where only a lone integer key numbers itself,
    the statement gives it: past the last, in org order (SQLite writes one transaction at a
    time)."""
    state = org_billing_state.c
    valid_from = state.created_at if since is None else literal(since, UTCDateTime)
    columns = ["org_id", "valid_from", "plan_slug", "plan_version", "status"]
    chosen: list[ColumnElement[Any]] = [
        state.org_id,
        valid_from,
        state.plan_slug,
        state.plan_version,
        state.status,
    ]
    if dialect_name == "sqlite":
        last = select(func.coalesce(func.max(subscription_history.c.change_id), 0))
        columns.insert(0, "change_id")
        chosen.insert(0, last.scalar_subquery() + func.row_number().over(order_by=state.org_id))
    return subscription_history.insert().from_select(
        columns, select(*chosen).where(which).order_by(state.org_id)
    )

"""An org's limit for one metric as an SQL expression, for statements that must judge usage
against it in the same step as they write it (the rule itself, in Python:
`quota.rules.terms_after_override`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, select

from billing_kernel.db.tables import org_billing_state, org_limit_overrides, plan_metrics


def included_quantity_of(org_id: ColumnElement[Any], metric: ColumnElement[Any]) -> Any:
    """The org's limit for the metric: its override's when that sets one, else what its plan
    includes; NULL when unlimited (or when the org has no billing state), so that no
    comparison with it holds.

    Each lookup is a scalar subquery by primary key, with `org_id` and `metric` only in
    WHERE clauses: they may be the values of the row an upsert proposes."""
    state, term, override = org_billing_state.c, plan_metrics.c, org_limit_overrides.c
    own = (override.org_id == org_id) & (override.metric == metric)

    def lookup(column: ColumnElement[Any], *where: ColumnElement[bool]) -> Any:
        return (
            select(column)
            .where(*where)
            .correlate_except(org_billing_state, plan_metrics, org_limit_overrides)
            .scalar_subquery()
        )

    return case(
        (lookup(override.included_set, own), lookup(override.included_quantity, own)),
        else_=lookup(
            term.included_quantity,
            state.org_id == org_id,
            term.plan_slug == state.plan_slug,
            term.metric == metric,
        ),
    )

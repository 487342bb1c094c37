"""An org's limit, alert thresholds and overage price for one metric as SQL expressions, for
statements that must judge usage against them in the same step as they write it (the rules
themselves, in Python: `quota.rules.terms_after_override`, `alerts.rules.parse_thresholds`,
`usage.bounds.Charge`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, or_, outerjoin, select

from billing_kernel.common.money import PRICE_TERMS_APART
from billing_kernel.db.tables import (
    org_alert_thresholds,
    org_billing_state,
    org_limit_overrides,
    plan_alert_thresholds,
    plan_metrics,
    plan_versions,
)

_LOOKED_UP = (
    org_billing_state,
    plan_metrics,
    plan_versions,
    org_limit_overrides,
    org_alert_thresholds,
    plan_alert_thresholds,
)


def _lookup(column: ColumnElement[Any], *where: ColumnElement[bool]) -> Any:
    """A scalar subquery by primary key, correlated with nothing but the values it is
    given (which may be the row an upsert proposes or returns)."""
    return select(column).where(*where).correlate_except(*_LOOKED_UP).scalar_subquery()


def included_quantity_of(org_id: ColumnElement[Any], metric: ColumnElement[Any]) -> Any:
    """The org's limit for the metric: its override's when that sets one, else what its plan
    includes (0 when its plan does not name the metric: `plans.rules.not_included`); NULL
    when unlimited (or when the org has no billing state), so that no comparison with it
    holds.

    Each lookup is a scalar subquery by primary key, with `org_id` and `metric` only in
    WHERE clauses: they may be the values of the row an upsert proposes."""
    override = org_limit_overrides.c
    own = (override.org_id == org_id) & (override.metric == metric)
    return case(
        (_lookup(override.included_set, own), _lookup(override.included_quantity, own)),
        else_=_plan_included(org_id, metric),
    )


def _plan_included(org_id: ColumnElement[Any], metric: ColumnElement[Any]) -> Any:
    """What the org's plan includes of the metric: 0 when the plan does not name it, NULL
    when unlimited or when the org has no billing state."""
    state, term = org_billing_state.c, plan_metrics.c
    named = outerjoin(
        org_billing_state,
        plan_metrics,
        and_(
            term.plan_slug == state.plan_slug,
            term.version == state.plan_version,
            term.metric == metric,
        ),
    )
    return (
        select(case((term.metric.is_(None), 0), else_=term.included_quantity))
        .select_from(named)
        .where(state.org_id == org_id)
        .correlate_except(*_LOOKED_UP)
        .scalar_subquery()
    )


def _plan_term(
    column: ColumnElement[Any], org_id: ColumnElement[Any], metric: ColumnElement[Any]
) -> Any:
    """`column` of the org's plan's terms for the metric, at the version the org is on."""
    state, term = org_billing_state.c, plan_metrics.c
    return _lookup(
        column,
        state.org_id == org_id,
        term.plan_slug == state.plan_slug,
        term.version == state.plan_version,
        term.metric == metric,
    )


def price_terms_of(org_id: ColumnElement[Any], metric: ColumnElement[Any]) -> Any:
    """The org's plan's price for the metric in one text, its columns separated by spaces:
    unit price, unit size, model and, for tiered prices, the tiers ("0.020000 1000
    per_unit "), then after PRICE_TERMS_APART a dimension's prices, if any; NULL: its plan
    has no terms for the metric, and charges nothing. One lookup for them all
    (`usage.bounds.charge_of` reads it)."""
    term = plan_metrics.c
    text = (
        cast(term.overage_unit_price, String)
        .concat(" ")
        .concat(cast(term.overage_unit_size, String))
        .concat(" ")
        .concat(term.price_model)
        .concat(" ")
        .concat(func.coalesce(term.price_tiers, ""))
        .concat(PRICE_TERMS_APART)
        .concat(func.coalesce(term.dimension_prices, ""))
    )
    return _plan_term(text, org_id, metric)


def monthly_fee_of(org_id: ColumnElement[Any]) -> Any:
    """The monthly price of the plan version the org is on (NULL: it has no billing state)."""
    state, version = org_billing_state.c, plan_versions.c
    return _lookup(
        version.monthly_price,
        state.org_id == org_id,
        version.plan_slug == state.plan_slug,
        version.version == state.plan_version,
    )


def own_thresholds_of(org_id: ColumnElement[Any], metric: ColumnElement[Any]) -> Any:
    """The org's own alert thresholds for the metric (NULL: it follows its plan's)."""
    own = org_alert_thresholds.c
    return _lookup(own.thresholds, own.org_id == org_id, own.metric == metric)


def thresholds_of(org_id: ColumnElement[Any], metric: ColumnElement[Any], *, default: str) -> Any:
    """The org's alert thresholds for the metric, as stored ("80%,100%"): its own, else its
    plan's, else `default` (`alerts.rules.DEFAULT_THRESHOLDS`) where its plan has terms for
    the metric or its own override sets it a limit, else none ("")."""
    state, plan, override = org_billing_state.c, plan_alert_thresholds.c, org_limit_overrides.c
    plan_slug = _lookup(state.plan_slug, state.org_id == org_id)
    own_limit = _lookup(
        override.included_quantity,
        override.org_id == org_id,
        override.metric == metric,
        override.included_set,
    )
    limits_it = or_(
        _plan_term(plan_metrics.c.metric, org_id, metric).is_not(None), own_limit.is_not(None)
    )
    return func.coalesce(
        own_thresholds_of(org_id, metric),
        _lookup(plan.thresholds, plan.plan_slug == plan_slug, plan.metric == metric),
        case((limits_it, default), else_=""),
    )

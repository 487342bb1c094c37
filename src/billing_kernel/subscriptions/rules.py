"""Which way a plan change goes, when it takes effect, and what a preview of it priced."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.invoices.rules import InvoiceLine
from billing_kernel.plans.rules import Plan


class ChangeKind(StrEnum):
    UPGRADE = "upgrade"
    """To a plan with a higher monthly price: at once."""
    DOWNGRADE = "downgrade"
    """To a plan with a lower monthly price: at the period's end, unless
    BILLING_DOWNGRADE=immediate."""
    LATERAL = "lateral"
    """To another plan (or version) at the same price: at once."""
    NONE = "none"
    """To the plan and version the org is on: nothing changes."""


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    """A move to another plan that takes effect later: a downgrade, at the period's end."""

    plan_slug: str
    plan_version: int
    effective_at: datetime
    requested_at: datetime


def classify(current: Plan, new: Plan) -> ChangeKind:
    """Which way moving from `current` to `new` goes, by monthly price."""
    if (current.slug, current.version) == (new.slug, new.version):
        return ChangeKind.NONE
    if new.monthly_price > current.monthly_price:
        return ChangeKind.UPGRADE
    if new.monthly_price < current.monthly_price:
        return ChangeKind.DOWNGRADE
    return ChangeKind.LATERAL


def takes_effect(kind: ChangeKind, now: datetime, *, downgrade_at_period_end: bool) -> datetime:
    """When a change of `kind` asked for `now` takes effect: a downgrade at the end of the
    period (if `downgrade_at_period_end`, as BILLING_DOWNGRADE=period_end says), anything
    else at once."""
    if kind is ChangeKind.DOWNGRADE and downgrade_at_period_end:
        return BillingPeriod.containing(now).end
    return now


def preview_token(
    org_id: str,
    kind: ChangeKind,
    current: Plan,
    plan: Plan,
    effective_at: datetime,
    lines: Iterable[InvoiceLine],
    status: str,
    scheduled: tuple[str, int, datetime] | None,
    overrides: Mapping[str, object],
) -> str:
    """A digest of everything a preview priced: the org, which way and when, both plans at
    their versions (so their prices), the lines to the cent, the org's billing status, the
    change it had scheduled, and its limit overrides. A confirmation that computes another
    digest is no longer the change the preview showed."""
    figures = [
        org_id,
        kind.value,
        [current.slug, current.version, str(current.monthly_price)],
        [plan.slug, plan.version, str(plan.monthly_price)],
        effective_at.isoformat(),
        [
            [line.kind.value, str(line.amount), line.plan_slug, line.plan_version, line.quantity]
            for line in lines
        ],
        status,
        None if scheduled is None else [scheduled[0], scheduled[1], scheduled[2].isoformat()],
        sorted((metric, repr(terms)) for metric, terms in overrides.items()),
    ]
    text = json.dumps(figures)
    return hashlib.sha256(text.encode()).hexdigest()

"""Which way a plan change goes, when it takes effect, and what a preview priced."""

import re
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from billing_kernel.invoices.rules import InvoiceLine, LineKind
from billing_kernel.subscriptions.rules import (
    ChangeKind,
    classify,
    preview_token,
    takes_effect,
)
from tests.seeded import GROWTH, STARTER

NOW = datetime(2026, 2, 14, 9, 30, tzinfo=UTC)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_change_goes_up_down_across_or_nowhere_by_monthly_price() -> None:
    assert classify(STARTER, GROWTH) is ChangeKind.UPGRADE
    assert classify(GROWTH, STARTER) is ChangeKind.DOWNGRADE
    assert classify(STARTER, STARTER) is ChangeKind.NONE
    same_price = replace(GROWTH, slug="growth-annual-terms")
    assert classify(GROWTH, same_price) is ChangeKind.LATERAL
    # A new version of the same plan is a change, priced as any other.
    dearer = replace(STARTER, version=2, monthly_price=Decimal("49.01"))
    assert classify(STARTER, dearer) is ChangeKind.UPGRADE
    assert classify(dearer, STARTER) is ChangeKind.DOWNGRADE
    assert classify(STARTER, replace(STARTER, version=2)) is ChangeKind.LATERAL


def test_only_a_downgrade_waits_and_only_for_the_period_end() -> None:
    assert takes_effect(ChangeKind.DOWNGRADE, NOW, downgrade_at_period_end=True) == MARCH
    assert takes_effect(ChangeKind.DOWNGRADE, NOW, downgrade_at_period_end=False) == NOW
    for kind in (ChangeKind.UPGRADE, ChangeKind.LATERAL, ChangeKind.NONE):
        assert takes_effect(kind, NOW, downgrade_at_period_end=True) == NOW
    last_second = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    at_end = takes_effect(ChangeKind.DOWNGRADE, last_second, downgrade_at_period_end=True)
    assert at_end == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_preview_token_changes_with_anything_the_preview_priced() -> None:
    at = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
    line = InvoiceLine(LineKind.PRORATION_CHARGE, "charge", Decimal("70.61"), "f", "growth", 1)
    base = {
        "org_id": "acme",
        "kind": ChangeKind.UPGRADE,
        "current": STARTER,
        "plan": GROWTH,
        "effective_at": at,
        "lines": (line,),
        "status": "active",
        "scheduled": None,
        "overrides": {"tokens": 5},
    }
    token = preview_token(**base)  # type: ignore[arg-type]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert preview_token(**base) == token  # type: ignore[arg-type]
    changed = [
        {"org_id": "other"},
        {"kind": ChangeKind.LATERAL},
        {"current": replace(STARTER, version=2)},
        {"current": replace(STARTER, monthly_price=Decimal("49.01"))},
        {"current": replace(STARTER, slug="starter-2")},
        {"plan": replace(GROWTH, version=2)},
        {"plan": replace(GROWTH, monthly_price=Decimal("954.15"))},
        {"plan": replace(GROWTH, slug="growth-2")},
        {"effective_at": at.replace(second=1)},
        {"lines": ()},
        {"lines": (replace(line, amount=Decimal("70.62")),)},
        {"lines": (replace(line, kind=LineKind.BASE_FEE),)},
        {"lines": (replace(line, plan_slug="starter"),)},
        {"lines": (replace(line, plan_version=2),)},
        {"lines": (replace(line, quantity=3),)},
        {"status": "past_due"},
        {"scheduled": ("starter", 1, at)},
        {"overrides": {"tokens": 6}},
        {"overrides": {}},
    ]
    tokens = {preview_token(**{**base, **change}) for change in changed}  # type: ignore[arg-type]
    assert len(tokens) == len(changed)
    assert token not in tokens
    scheduled = preview_token(**{**base, "scheduled": ("starter", 1, at)})  # type: ignore[arg-type]
    assert scheduled != preview_token(**{**base, "scheduled": ("starter", 2, at)})  # type: ignore[arg-type]
    assert scheduled != preview_token(  # type: ignore[arg-type]
        **{**base, "scheduled": ("starter", 1, at.replace(day=21))}
    )
    assert scheduled != preview_token(**{**base, "scheduled": ("growth", 1, at)})  # type: ignore[arg-type]

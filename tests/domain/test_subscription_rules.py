"""Which way a plan change goes, and when it takes effect."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from billing_kernel.subscriptions.rules import (
    ChangeKind,
    DowngradeTiming,
    classify,
    takes_effect,
)
from tests.domain.seeded import GROWTH, STARTER

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
    end = DowngradeTiming.PERIOD_END
    assert takes_effect(ChangeKind.DOWNGRADE, NOW, end) == MARCH
    assert takes_effect(ChangeKind.DOWNGRADE, NOW, DowngradeTiming.IMMEDIATE) == NOW
    for kind in (ChangeKind.UPGRADE, ChangeKind.LATERAL, ChangeKind.NONE):
        assert takes_effect(kind, NOW, end) == NOW
    last_second = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert takes_effect(ChangeKind.DOWNGRADE, last_second, end) == datetime(2027, 1, 1, tzinfo=UTC)

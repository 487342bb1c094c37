"""The enforcement ladder: policies, grace, the billing status overlay, and what a decision
tells the person using the product. Pure, with the clock passed in; each figure is worked out
by hand."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_kernel.errors import InvalidInput
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import (
    MAX_GRACE_PERCENT,
    NOT_INCLUDED,
    SOFT,
    Enforcement,
    Plan,
    PlanMetric,
    Policy,
    validate_grace,
)
from billing_kernel.quota.rules import (
    Ceiling,
    LimitOverride,
    QuotaDecision,
    Reason,
    Standing,
    decide,
    exhausted,
    explained,
    grace_allowance,
    hard_ceiling,
    remaining,
    standing,
    terms_after_override,
    terms_ceiling,
    upgrade_for,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
HARD = Policy(Enforcement.HARD)
TEN_PERCENT = Policy(Enforcement.HARD, grace_percent=10)
THREE_DAYS = Policy(Enforcement.HARD, grace_period=72 * HOUR)
BOTH = Policy(Enforcement.HARD, grace_percent=10, grace_period=72 * HOUR)


def plan(slug: str, price: str, tokens: int | None, active: bool = True) -> Plan:
    return Plan(
        slug=slug,
        name=slug.capitalize(),
        currency="USD",
        monthly_price=Decimal(price),
        is_active=active,
        metrics={"tokens": PlanMetric("tokens", tokens)},
    )


PLANS = [
    plan("internal-dev", "0.00", 10_000_000, active=False),
    plan("starter", "49.00", 1_000_000),
    plan("growth", "199.00", 5_000_000),
    plan("scale", "199.00", 5_000_000),  # as cheap as growth: the slug decides
    plan("enterprise", "599.00", None),
]


# (policy, used, requested, crossed_at, allowed, reason, remaining, grace_ends_at), limit 1,000;
# grace_ends_at is given while a time grace runs, or when this request would start it
LADDER = [
    # soft: never blocks; says when usage goes beyond
    (SOFT, 900, 100, None, True, Reason.WITHIN_LIMIT, 100, None),
    (SOFT, 900, 101, None, True, Reason.SOFT_LIMIT_EXCEEDED, 100, None),
    (SOFT, 5_000, 1, NOW - HOUR, True, Reason.SOFT_LIMIT_EXCEEDED, 0, None),
    # hard: up to the limit exactly, not one more
    (HARD, 999, 1, None, True, Reason.WITHIN_LIMIT, 1, None),
    (HARD, 999, 2, None, False, Reason.LIMIT_REACHED, 1, None),
    (HARD, 1_000, 1, None, False, Reason.LIMIT_REACHED, 0, None),
    (HARD, 1_000, 0, None, True, Reason.WITHIN_LIMIT, 0, None),  # asking for nothing
    (HARD, 1_200, 1, NOW - HOUR, False, Reason.LIMIT_REACHED, 0, None),  # counted events
    # hard, 10 % grace: 100 more, for the whole month
    (TEN_PERCENT, 900, 50, None, True, Reason.WITHIN_LIMIT, 200, None),
    (TEN_PERCENT, 999, 101, None, True, Reason.IN_GRACE, 101, None),
    (TEN_PERCENT, 1_050, 50, NOW - 30 * 24 * HOUR, True, Reason.IN_GRACE, 50, None),
    (TEN_PERCENT, 1_050, 51, NOW - HOUR, False, Reason.LIMIT_REACHED, 50, None),
    # hard, 72 h grace from the first crossing: no bound until it ends, the limit after
    (THREE_DAYS, 900, 100, None, True, Reason.WITHIN_LIMIT, None, None),
    (THREE_DAYS, 900, 500, None, True, Reason.IN_GRACE, None, NOW + 72 * HOUR),  # starts it
    (THREE_DAYS, 5_000, 10**9, NOW - 71 * HOUR, True, Reason.IN_GRACE, None, NOW + HOUR),
    (THREE_DAYS, 5_000, 1, NOW - 72 * HOUR, False, Reason.LIMIT_REACHED, 0, None),  # at its end
    (THREE_DAYS, 5_000, 1, NOW - 73 * HOUR, False, Reason.LIMIT_REACHED, 0, None),
    # both: 10 % more, and only for 72 h
    (BOTH, 999, 101, None, True, Reason.IN_GRACE, 101, NOW + 72 * HOUR),
    (BOTH, 999, 102, None, False, Reason.LIMIT_REACHED, 101, None),  # refused: no clock runs
    (BOTH, 1_050, 50, NOW - 71 * HOUR, True, Reason.IN_GRACE, 50, NOW + HOUR),
    (BOTH, 1_050, 1, NOW - 72 * HOUR, False, Reason.LIMIT_REACHED, 0, None),
    # a crossing from before the limit was raised (usage is within it again) is no longer
    # news: crossing the new limit starts a new grace
    (THREE_DAYS, 900, 500, NOW - 100 * HOUR, True, Reason.IN_GRACE, None, NOW + 72 * HOUR),
    (BOTH, 1_000, 100, NOW - 100 * HOUR, True, Reason.IN_GRACE, 100, NOW + 72 * HOUR),
    (BOTH, 1_000, 0, NOW - 100 * HOUR, True, Reason.WITHIN_LIMIT, 100, None),
]


@pytest.mark.parametrize(
    ("policy", "used", "requested", "crossed_at", "allowed", "reason", "remaining", "ends"),
    LADDER,
)
def test_the_policy_ladder(
    policy: Policy,
    used: int,
    requested: int,
    crossed_at: datetime | None,
    allowed: bool,
    reason: Reason,
    remaining: int | None,
    ends: datetime | None,
) -> None:
    decision = decide(
        "tokens",
        used=used,
        limit=1_000,
        requested=requested,
        now=NOW,
        policy=policy,
        crossed_at=crossed_at,
    )
    assert (decision.allowed, decision.reason, decision.remaining) == (allowed, reason, remaining)
    assert decision.grace_ends_at == ends
    assert (decision.enforcement, decision.policy) == (policy.mode, policy)
    assert (decision.used, decision.requested, decision.limit) == (used, requested, 1_000)
    assert decision.resets_at == DECEMBER
    assert decision.would_exceed is (used + requested > 1_000)
    assert decision.soft_limit_exceeded is (used > 1_000)


@pytest.mark.parametrize("policy", [SOFT, HARD, BOTH])
def test_an_unlimited_metric_is_never_blocked(policy: Policy) -> None:
    decision = decide("tokens", used=10**15, limit=None, requested=10**12, now=NOW, policy=policy)
    assert (decision.allowed, decision.reason, decision.remaining) == (
        True,
        Reason.WITHIN_LIMIT,
        None,
    )
    assert not decision.would_exceed


@pytest.mark.parametrize("policy", [SOFT, HARD, TEN_PERCENT])
def test_a_zero_limit_includes_nothing(policy: Policy) -> None:
    decision = decide("tokens", used=0, limit=0, requested=1, now=NOW, policy=policy)
    assert decision.allowed is (policy.mode is Enforcement.SOFT)  # 10 % of 0 is 0
    assert decision.remaining == 0


def test_the_grace_allowance_is_a_whole_number_of_units_rounded_down() -> None:
    assert grace_allowance(1_000, TEN_PERCENT) == 100
    assert grace_allowance(999, TEN_PERCENT) == 99  # 99.9
    assert grace_allowance(5, Policy(Enforcement.HARD, grace_percent=25)) == 1  # 1.25
    assert grace_allowance(1_000, HARD) == 0
    assert grace_allowance(3, Policy(Enforcement.HARD, grace_percent=1000)) == 30


def test_a_hard_ceiling_follows_the_crossing_clock() -> None:
    assert hard_ceiling(1_000, HARD, None, NOW) == Ceiling(1_000)
    assert hard_ceiling(1_000, TEN_PERCENT, NOW - 1000 * HOUR, NOW) == Ceiling(1_100)
    assert hard_ceiling(1_000, THREE_DAYS, None, NOW) == Ceiling(None, NOW + 72 * HOUR)
    assert hard_ceiling(1_000, BOTH, NOW - HOUR, NOW) == Ceiling(1_100, NOW + 71 * HOUR)
    assert hard_ceiling(1_000, BOTH, NOW - 72 * HOUR, NOW) == Ceiling(1_000)


# (used, limit, policy, crossed_at, ceiling): the most usage may reach, which a consume's
# conditional write is held to
TERMS_CEILINGS = [
    (0, None, HARD, None, Ceiling(None)),  # unlimited
    (5_000, 1_000, SOFT, NOW - HOUR, Ceiling(None)),  # soft: never bounded
    (0, 1_000, HARD, None, Ceiling(1_000)),
    (1_050, 1_000, BOTH, NOW - HOUR, Ceiling(1_100, NOW + 71 * HOUR)),
    (1_050, 1_000, BOTH, NOW - 72 * HOUR, Ceiling(1_000)),
    # within the limit again (it was raised): an old crossing is ignored, a new grace would
    # start now
    (900, 1_000, BOTH, NOW - 72 * HOUR, Ceiling(1_100, NOW + 72 * HOUR)),
]


@pytest.mark.parametrize(("used", "limit", "policy", "crossed_at", "ceiling"), TERMS_CEILINGS)
def test_the_terms_ceiling(
    used: int, limit: int | None, policy: Policy, crossed_at: datetime | None, ceiling: Ceiling
) -> None:
    assert (
        terms_ceiling(used=used, limit=limit, policy=policy, crossed_at=crossed_at, now=NOW)
        == ceiling
    )


def test_a_refusal_in_a_running_time_grace_says_when_it_ends() -> None:
    crossed = NOW - HOUR
    refused = decide(
        "tokens", used=1_050, limit=1_000, requested=51, now=NOW, policy=BOTH, crossed_at=crossed
    )
    assert (refused.allowed, refused.grace_ends_at) == (False, crossed + 72 * HOUR)


PLAN_TERMS = PlanMetric("tokens", 1_000, policy=BOTH)

# (override, limit, policy): each part the override sets replaces the plan's, alone
OVERRIDES = [
    (None, 1_000, BOTH),
    (LimitOverride(), 1_000, BOTH),
    (LimitOverride(included_quantity=5_000, sets_included=True), 5_000, BOTH),
    (LimitOverride(included_quantity=None, sets_included=True), None, BOTH),
    (LimitOverride(included_quantity=5_000), 1_000, BOTH),  # given but not set: the plan's
    (LimitOverride(mode=Enforcement.SOFT), 1_000, replace(BOTH, mode=Enforcement.SOFT)),
    (LimitOverride(grace_percent=0), 1_000, THREE_DAYS),
    (LimitOverride(grace_percent=25), 1_000, replace(BOTH, grace_percent=25)),
    (LimitOverride(grace_period=None, sets_grace_period=True), 1_000, TEN_PERCENT),
    (
        LimitOverride(grace_period=HOUR, sets_grace_period=True),
        1_000,
        replace(BOTH, grace_period=HOUR),
    ),
    (LimitOverride(grace_period=HOUR), 1_000, BOTH),  # given but not set: the plan's
    (
        LimitOverride(0, True, Enforcement.HARD, 0, None, True),
        0,
        HARD,
    ),
]


@pytest.mark.parametrize(("override", "limit", "policy"), OVERRIDES)
def test_an_override_wins_over_the_plan_part_by_part(
    override: LimitOverride | None, limit: int | None, policy: Policy
) -> None:
    terms = terms_after_override(PLAN_TERMS, override)
    assert (terms.limit, terms.policy) == (limit, policy)


def test_an_override_can_harden_a_soft_plan() -> None:
    soft_terms = PlanMetric("tokens", 1_000)
    terms = terms_after_override(soft_terms, LimitOverride(mode=Enforcement.HARD, grace_percent=10))
    assert (terms.limit, terms.policy) == (1_000, TEN_PERCENT)
    decision = decide(
        "tokens", used=1_100, limit=terms.limit, requested=1, now=NOW, policy=terms.policy
    )
    assert (decision.allowed, decision.reason) == (False, Reason.LIMIT_REACHED)


@pytest.mark.parametrize(
    ("percent", "period"),
    [(0, None), (MAX_GRACE_PERCENT, None), (10, HOUR), (0, 744 * HOUR)],
)
def test_a_grace_in_range_is_taken(percent: int, period: timedelta | None) -> None:
    validate_grace(percent, period)


@pytest.mark.parametrize(
    ("percent", "period", "field"),
    [
        (-1, None, "grace_percent"),
        (MAX_GRACE_PERCENT + 1, None, "grace_percent"),
        (True, None, "grace_percent"),
        ("10", None, "grace_percent"),
        (0, timedelta(0), "grace_period_hours"),
        (0, HOUR - timedelta(seconds=1), "grace_period_hours"),
        (0, 745 * HOUR, "grace_period_hours"),
        (0, 90 * timedelta(minutes=1), "grace_period_hours"),  # not whole hours
        (0, 3, "grace_period_hours"),
    ],
)
def test_a_grace_out_of_range_is_refused_by_name(
    percent: object, period: object, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_grace(percent, period)
    assert refused.value.details["field"] == field
    assert field in refused.value.message


def test_a_grace_refusal_gives_the_range() -> None:
    with pytest.raises(
        InvalidInput, match=r"^grace_period_hours must be a whole number from 1 to 744$"
    ):
        validate_grace(0, 745 * HOUR)
    with pytest.raises(
        InvalidInput, match=r"^grace_percent must be a whole number from 0 to 1000$"
    ):
        validate_grace(-1, None)


def test_a_policy_describes_itself_in_a_few_words() -> None:
    assert SOFT.describe() == "soft"
    assert replace(BOTH, mode=Enforcement.SOFT).describe() == "soft"
    assert HARD.describe() == "hard"
    assert TEN_PERCENT.describe() == "hard, 10 % grace"
    assert THREE_DAYS.describe() == "hard, 72 h grace"
    assert BOTH.describe() == "hard, 10 % grace for 72 h"
    assert (HARD.grace_text(), SOFT.grace_text()) == ("", "")
    assert THREE_DAYS.grace_text() == "72 h grace"


def test_policies_say_whether_they_have_grace() -> None:
    assert not SOFT.has_grace
    assert not HARD.has_grace
    assert TEN_PERCENT.has_grace
    assert THREE_DAYS.has_grace
    assert (SOFT.mode, SOFT.grace_percent, SOFT.grace_period) == (Enforcement.SOFT, 0, None)


GRACE = timedelta(days=7)


@pytest.mark.parametrize(
    ("status", "since", "trial_ends_at", "expected"),
    [
        (BillingStatus.ACTIVE, NOW - 400 * 24 * HOUR, None, Standing()),
        (BillingStatus.TRIAL, NOW - 24 * HOUR, NOW + 24 * HOUR, Standing()),
        (BillingStatus.TRIAL, NOW - 24 * HOUR, None, Standing()),
        (BillingStatus.CANCELED, NOW, None, Standing(Reason.CANCELED)),
        # past due: a week of grace from when it became past due
        (BillingStatus.PAST_DUE, NOW - HOUR, None, Standing(blocks_at=NOW - HOUR + GRACE)),
        (BillingStatus.PAST_DUE, NOW - GRACE + HOUR, None, Standing(blocks_at=NOW + HOUR)),
        (BillingStatus.PAST_DUE, NOW - GRACE, None, Standing(Reason.PAST_DUE)),
        (BillingStatus.PAST_DUE, NOW - 30 * GRACE, None, Standing(Reason.PAST_DUE)),
        # a trial that ended without a plan becoming active: the same week, from its end
        (BillingStatus.TRIAL, NOW - 60 * GRACE, NOW, Standing(blocks_at=NOW + GRACE)),
        (BillingStatus.TRIAL, NOW - 60 * GRACE, NOW - GRACE + HOUR, Standing(blocks_at=NOW + HOUR)),
        (BillingStatus.TRIAL, NOW - 60 * GRACE, NOW - GRACE, Standing(Reason.TRIAL_ENDED)),
    ],
)
def test_the_billing_status_overlay(
    status: BillingStatus, since: datetime, trial_ends_at: datetime | None, expected: Standing
) -> None:
    found = standing(status, status_since=since, trial_ends_at=trial_ends_at, now=NOW, grace=GRACE)
    assert found == expected


@pytest.mark.parametrize("policy", [SOFT, HARD])
@pytest.mark.parametrize("reason", [Reason.CANCELED, Reason.PAST_DUE, Reason.TRIAL_ENDED])
def test_a_blocking_status_refuses_every_metric_whatever_its_policy(
    policy: Policy, reason: Reason
) -> None:
    for limit in (None, 1_000):
        decision = decide(
            "tokens",
            used=0,
            limit=limit,
            requested=1,
            now=NOW,
            policy=policy,
            status=Standing(reason),
        )
        assert (decision.allowed, decision.reason, decision.remaining) == (False, reason, 0)


def test_a_status_grace_is_reported_on_allowed_decisions() -> None:
    running = Standing(blocks_at=NOW + HOUR)
    decision = decide("tokens", used=0, limit=10, requested=1, now=NOW, status=running)
    assert (decision.allowed, decision.status_blocks_at) == (True, NOW + HOUR)


def test_the_upgrade_is_the_cheapest_active_plan_that_fits() -> None:
    dev, starter, growth, scale, enterprise = PLANS
    assert upgrade_for(PLANS, starter, "tokens", 1_000_001) == growth  # growth before scale
    assert upgrade_for(PLANS, starter, "tokens", 5_000_000) == growth  # exactly enough
    assert upgrade_for(PLANS, starter, "tokens", 5_000_001) == enterprise  # unlimited
    assert upgrade_for(PLANS, enterprise, "tokens", 10**12) is None  # nothing else fits
    assert upgrade_for(PLANS, growth, "tokens", 2_000_000) == scale  # never the current
    assert upgrade_for(PLANS, starter, "tokens", 1) == growth  # the inactive dev plan: no
    assert upgrade_for(PLANS, starter, "seats", 1) is None  # named by none: given by none
    seats = replace(growth, slug="seats", metrics={"seats": PlanMetric("seats", None)})
    assert upgrade_for([*PLANS, seats], starter, "seats", 10**9) == seats  # said: unlimited
    free = replace(dev, slug="free", is_active=True)  # includes 10,000,000 for nothing
    assert upgrade_for([*PLANS, free], growth, "tokens", 6_000_000) == enterprise  # not down
    assert upgrade_for([*PLANS, free], dev, "tokens", 20_000_000) == enterprise
    same_price = replace(growth, slug="growth-plus", metrics={"tokens": PlanMetric("tokens", None)})
    assert upgrade_for([*PLANS, same_price], growth, "tokens", 10**9) == same_price
    euros = replace(growth, slug="growth-eur", currency="EUR", monthly_price=Decimal("60"))
    assert upgrade_for([*PLANS, euros], starter, "tokens", 1_000_001) == growth  # not compared
    assert upgrade_for([euros], euros, "tokens", 10**12) is None
    private = replace(growth, slug="growth-private", is_public=False)  # assigned, not offered
    assert upgrade_for([starter, private, enterprise], starter, "tokens", 2) == enterprise


def refused(used: int, requested: int, policy: Policy = HARD) -> QuotaDecision:
    return decide("tokens", used=used, limit=1_000_000, requested=requested, now=NOW, policy=policy)


def test_a_refusal_says_what_was_used_when_usage_resets_and_what_would_allow_it() -> None:
    decision = explained(
        refused(1_000_000, 1), org="Acme", unit="tokens", plan="Starter", upgrade=PLANS[2]
    )
    assert decision.message == (
        "Acme has used all 1,000,000 tokens included in Starter this month. "
        "Usage resets on 1 December. Growth includes 5,000,000 tokens."
    )
    assert decision.upgrade == PLANS[2]
    short = explained(refused(999_000, 5_000), org="Acme", unit="tokens", plan="Starter")
    assert short.message == (
        "Acme has 1,000 tokens left in Starter this month, fewer than the 5,000 asked for. "
        "Usage resets on 1 December."
    )
    assert short.upgrade is None
    at_limit = explained(
        refused(1_000_000, 100_001, TEN_PERCENT), org="Acme", unit="tokens", plan="Starter"
    )
    assert at_limit.message == (  # the grace is what is left
        "Acme has 100,000 tokens left in Starter and its grace allowance this month, fewer "
        "than the 100,001 asked for. Usage resets on 1 December."
    )
    graced = explained(
        refused(1_100_000, 1, TEN_PERCENT),
        org="Acme",
        unit="tokens",
        plan="Starter",
        upgrade=PLANS[4],
    )
    assert graced.message == (
        "Acme has used all 1,000,000 tokens included in Starter and its grace allowance this "
        "month. Usage resets on 1 December. Enterprise includes unlimited tokens."
    )


def test_every_other_decision_explains_itself_in_plain_words() -> None:
    def message(decision: QuotaDecision) -> str:
        upgrade = PLANS[2]  # offered only with a refusal for the limit
        return explained(
            decision, org="Acme", unit="tokens", plan="Starter", upgrade=upgrade
        ).message

    assert message(refused(250_000, 1)) == (
        "Acme has used 250,000 of the 1,000,000 tokens included in Starter this month."
    )
    assert message(refused(1_200_000, 1, SOFT)) == (
        "Acme has used 1,200,000 tokens, more than the 1,000,000 included in Starter this "
        "month; usage beyond them is billed as overage."
    )
    assert message(refused(999_999, 2, SOFT)) == (
        "Acme has used 999,999 of the 1,000,000 tokens included in Starter this month; "
        "usage beyond them is billed as overage."
    )
    assert message(refused(1_000_000, 50_000, BOTH)) == (
        "Acme has used all 1,000,000 tokens included in Starter this month and may go on "
        "(100,000 more tokens) until 28 November, 12:00 UTC by its grace allowance. "
        "Usage resets on 1 December."
    )
    assert message(refused(1_000_000, 5, Policy(Enforcement.HARD, grace_percent=5))) == (
        "Acme has used all 1,000,000 tokens included in Starter this month and may go on "
        "(50,000 more tokens) by its grace allowance. Usage resets on 1 December."
    )
    assert message(refused(1_000_000, 10**9, THREE_DAYS)) == (
        "Acme has used all 1,000,000 tokens included in Starter this month and may go on "
        "until 28 November, 12:00 UTC by its grace allowance. Usage resets on 1 December."
    )
    unlimited = decide("tokens", used=7, limit=None, requested=1, now=NOW)
    assert message(unlimited) == "Starter includes unlimited tokens; Acme has used 7 this month."
    none = decide("tokens", used=3, limit=0, requested=1, now=NOW, policy=NOT_INCLUDED)
    assert message(none) == "Starter does not include tokens. Growth includes 5,000,000 tokens."
    for reason, text in [
        (Reason.CANCELED, "Acme's subscription is canceled, so no more tokens can be used."),
        (
            Reason.PAST_DUE,
            "Acme's payment is overdue, so no more tokens can be used until it is settled.",
        ),
        (Reason.TRIAL_ENDED, "Acme's trial has ended: choose a plan to go on using tokens."),
    ]:
        blocked = decide("tokens", used=0, limit=10, requested=1, now=NOW, status=Standing(reason))
        told = explained(blocked, org="Acme", unit="tokens", plan="Starter", upgrade=PLANS[2])
        assert told == replace(blocked, message=text)  # no upgrade offered: not a limit


# Units held by reservations count as used for what a request may take, limit 1,000:
# (policy, used, held, requested, crossed_at, allowed, reason, remaining, grace_ends_at)
HELD_LADDER = [
    (SOFT, 800, 150, 50, None, True, Reason.WITHIN_LIMIT, 50, None),
    (SOFT, 800, 150, 51, None, True, Reason.SOFT_LIMIT_EXCEEDED, 50, None),
    (HARD, 800, 150, 50, None, True, Reason.WITHIN_LIMIT, 50, None),
    (HARD, 800, 150, 51, None, False, Reason.LIMIT_REACHED, 50, None),
    (HARD, 0, 1_000, 1, None, False, Reason.LIMIT_REACHED, 0, None),  # all of it held
    (HARD, 0, 1_000, 0, None, True, Reason.WITHIN_LIMIT, 0, None),
    (TEN_PERCENT, 900, 150, 50, None, True, Reason.IN_GRACE, 50, None),
    (TEN_PERCENT, 900, 150, 51, None, False, Reason.LIMIT_REACHED, 50, None),
    # held units take the request beyond the limit, but only usage starts a time grace
    (THREE_DAYS, 900, 200, 50, None, True, Reason.IN_GRACE, None, None),
    (THREE_DAYS, 900, 200, 101, None, True, Reason.IN_GRACE, None, NOW + 72 * HOUR),
    (BOTH, 1_050, 40, 10, NOW - HOUR, True, Reason.IN_GRACE, 10, NOW + 71 * HOUR),
    (BOTH, 1_050, 40, 11, NOW - HOUR, False, Reason.LIMIT_REACHED, 10, NOW + 71 * HOUR),
]


@pytest.mark.parametrize(
    ("policy", "used", "held", "requested", "crossed_at", "allowed", "reason", "left", "ends"),
    HELD_LADDER,
)
def test_held_units_count_as_used(
    policy: Policy,
    used: int,
    held: int,
    requested: int,
    crossed_at: datetime | None,
    allowed: bool,
    reason: Reason,
    left: int | None,
    ends: datetime | None,
) -> None:
    decision = decide(
        "tokens",
        used=used,
        held=held,
        limit=1_000,
        requested=requested,
        now=NOW,
        policy=policy,
        crossed_at=crossed_at,
    )
    assert (decision.allowed, decision.reason, decision.remaining) == (allowed, reason, left)
    assert decision.grace_ends_at == ends
    assert (decision.used, decision.held, decision.requested) == (used, held, requested)
    assert decision.would_exceed is (used + held + requested > 1_000)
    assert decision.soft_limit_exceeded is (used > 1_000)


def test_a_decision_says_what_work_in_progress_holds() -> None:
    def told(used: int, held: int, requested: int, policy: Policy = HARD) -> str:
        decision = decide(
            "tokens",
            used=used,
            held=held,
            limit=1_000_000,
            requested=requested,
            now=NOW,
            policy=policy,
        )
        return explained(decision, org="Acme", unit="tokens", plan="Starter").message

    assert told(250_000, 30_000, 1) == (
        "Acme has used 250,000 of the 1,000,000 tokens included in Starter this month. "
        "Work in progress holds 30,000 more."
    )
    assert told(900_000, 100_000, 1) == (
        "Acme has no tokens left of the 1,000,000 included in Starter this month: 900,000 "
        "used, 100,000 held by work in progress. Usage resets on 1 December."
    )
    assert told(900_000, 90_000, 20_000) == (
        "Acme has 10,000 tokens left in Starter this month, fewer than the 20,000 asked for. "
        "Work in progress holds 90,000 more. Usage resets on 1 December."
    )
    assert told(990_000, 20_000, 1, SOFT) == (
        "Acme has used 990,000 of the 1,000,000 tokens included in Starter this month; usage "
        "beyond them is billed as overage. Work in progress holds 20,000 more."
    )
    assert told(1_000_000, 20_000, 1, TEN_PERCENT) == (
        "Acme has used all 1,000,000 tokens included in Starter this month and may go on "
        "(80,000 more tokens) by its grace allowance. Work in progress holds 20,000 more. "
        "Usage resets on 1 December."
    )
    assert told(1_000_000, 100_000, 1, TEN_PERCENT) == (
        "Acme has no tokens left of the 1,000,000 included in Starter and its grace "
        "allowance this month: 1,000,000 used, 100,000 held by work in progress. Usage "
        "resets on 1 December."
    )


def test_what_is_left_and_whether_usage_alone_has_reached_the_ceiling() -> None:
    assert (remaining(3, 10), remaining(10, 10), remaining(12, 10)) == (7, 0, 0)
    assert remaining(5, None) is None
    assert remaining(0, 0) == 0
    assert (exhausted(9, 10), exhausted(10, 10), exhausted(11, 10)) == (False, True, True)
    assert exhausted(10**12, None) is False

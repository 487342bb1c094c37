"""An org's limits, how each is enforced, and the quota decisions against them.

The ladder a decision climbs, top first: the org's billing status (canceled, or past due /
trial ended beyond their grace, blocks every metered operation); an unlimited metric; a
`soft` policy (never blocks); a `hard` policy, which allows usage up to its ceiling: the
limit, plus the `grace_percent` allowance, for as long as the `grace_period` that starts when
usage first goes beyond the limit in the period runs (no period: the whole month).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import SOFT, Enforcement, Plan, PlanMetric, Policy

PERCENT_STEP = Decimal("0.1")


class Reason(StrEnum):
    """Why a decision came out as it did: stable codes for programs to branch on."""

    WITHIN_LIMIT = "within_limit"
    """Allowed: the request fits in what is included (or the metric is unlimited)."""
    SOFT_LIMIT_EXCEEDED = "soft_limit_exceeded"
    """Allowed: the limit is soft, and the request takes usage beyond it (overage)."""
    IN_GRACE = "in_grace"
    """Allowed: the limit is hard, and the request is beyond it but within its grace."""
    LIMIT_REACHED = "limit_reached"
    """Refused: the limit is hard, and the request would go beyond it and its grace."""
    PAST_DUE = "past_due"
    """Refused: the org's payment is overdue for longer than its grace."""
    TRIAL_ENDED = "trial_ended"
    """Refused: the trial ended, without a plan becoming active, longer ago than the grace."""
    CANCELED = "canceled"
    """Refused: the org's subscription is canceled."""


@dataclass(frozen=True, slots=True)
class Standing:
    """What the org's billing status does to metered use: a block with its reason, or
    none yet, with when one starts (`blocks_at`) if a grace is running."""

    blocked: Reason | None = None
    blocks_at: datetime | None = None


def standing(
    status: BillingStatus,
    *,
    status_since: datetime,
    trial_ends_at: datetime | None,
    now: datetime,
    grace: timedelta,
) -> Standing:
    """The billing status overlay. Canceled blocks at once. Past due blocks once `grace`
    has passed since it became past due (`status_since`). A trial that ended without a plan
    becoming active is treated the same, its grace counted from the trial's end."""
    if status is BillingStatus.CANCELED:
        return Standing(Reason.CANCELED)
    if status is BillingStatus.PAST_DUE:
        start, reason = status_since, Reason.PAST_DUE
    elif status is BillingStatus.TRIAL and trial_ends_at is not None and trial_ends_at <= now:
        start, reason = trial_ends_at, Reason.TRIAL_ENDED
    else:
        return Standing()
    ends = start + grace
    return Standing(reason) if now >= ends else Standing(blocks_at=ends)


def grace_allowance(limit: int, policy: Policy) -> int:
    """How many units beyond `limit` the policy's `grace_percent` allows (rounded down)."""
    return limit * policy.grace_percent // 100


@dataclass(frozen=True, slots=True)
class Ceiling:
    """The most usage a hard limit lets the period reach now (None: no bound while a time
    grace runs), and when the running time grace ends."""

    most: int | None
    grace_ends_at: datetime | None = None


def terms_ceiling(
    *, used: int, limit: int | None, policy: Policy, crossed_at: datetime | None, now: datetime
) -> Ceiling:
    """The most usage the org's terms let the period reach now, with `used` used (billing
    status aside): no bound for an unlimited metric or a soft limit, else `hard_ceiling`.
    A crossing counts while usage is beyond the limit; at or below it (the limit was raised
    since), a new crossing would start a new grace."""
    if limit is None or policy.mode is Enforcement.SOFT:
        return Ceiling(None)
    return hard_ceiling(limit, policy, crossed_at if used > limit else None, now)


def exhausted(used: int, most: int | None) -> bool:
    """Whether usage alone has reached the ceiling `most` (None: no bound): nothing more
    may be used until the limit changes or the period ends, whatever is released."""
    return most is not None and used >= most


def hard_ceiling(limit: int, policy: Policy, crossed_at: datetime | None, now: datetime) -> Ceiling:
    """The ceiling of a hard limit. `crossed_at`: when usage first went beyond the limit in
    this period (None: not yet). Without a time grace: the limit plus the percent allowance.
    With one: the same (or no bound, with no percent allowance) until the grace period after
    the crossing ends, the limit itself after; not yet crossed, the grace would start now."""
    with_percent = limit + grace_allowance(limit, policy)
    if policy.grace_period is None:
        return Ceiling(with_percent)
    ends = (crossed_at or now) + policy.grace_period
    if now >= ends:
        return Ceiling(limit)
    return Ceiling(with_percent if policy.grace_percent else None, ends)


@dataclass(frozen=True, slots=True)
class LimitOverride:
    """An org's own terms for one metric. Each part it sets replaces its plan's; the parts
    it leaves unset follow the plan (and its later changes)."""

    included_quantity: int | None = None
    """The org's limit (None: unlimited), when `sets_included`."""
    sets_included: bool = False
    mode: Enforcement | None = None
    grace_percent: int | None = None
    grace_period: timedelta | None = None
    """The org's time grace (None: no time limit), when `sets_grace_period`."""
    sets_grace_period: bool = False


@dataclass(frozen=True, slots=True)
class Terms:
    """What binds an org for one metric: its limit (None: unlimited) and how it is enforced."""

    limit: int | None
    policy: Policy = SOFT


def terms_after_override(plan_terms: PlanMetric, override: LimitOverride | None) -> Terms:
    """The org's terms for a metric: its plan's, with each part its override sets replaced."""
    if override is None:
        return Terms(plan_terms.included_quantity, plan_terms.policy)
    plan = plan_terms.policy
    return Terms(
        override.included_quantity if override.sets_included else plan_terms.included_quantity,
        Policy(
            mode=override.mode or plan.mode,
            grace_percent=(
                plan.grace_percent if override.grace_percent is None else override.grace_percent
            ),
            grace_period=override.grace_period if override.sets_grace_period else plan.grace_period,
        ),
    )


def effective_terms(plan: Plan, metric: str, overrides: Mapping[str, LimitOverride]) -> Terms:
    """The org's terms for `metric` on `plan`, after its override of that metric if it has
    one. A metric the plan does not name gives none, enforced hard, unless the override sets
    a limit (or a mode)."""
    return terms_after_override(plan.allowance(metric), overrides.get(metric))


def percent_used(used: int, limit: int | None) -> Decimal | None:
    """`used` as a percentage of `limit`, floored to 0.1 so 99.95 % never shows as 100 %.

    None when there is no bar to draw: an unlimited (None) or zero limit.
    """
    if limit is None or limit <= 0:
        return None
    return (Decimal(used) * 100 / Decimal(limit)).quantize(PERCENT_STEP, rounding=ROUND_FLOOR)


def limit_exceeded(used: int, limit: int | None) -> bool:
    """Whether usage is beyond the included quantity (reaching it exactly is not beyond)."""
    return limit is not None and used > limit


def remaining(used: int, limit: int | None) -> int | None:
    return None if limit is None else max(limit - used, 0)


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """The answer to "may this org use `requested` more of `metric`?"."""

    metric: str
    requested: int
    used: int
    limit: int | None
    remaining: int | None
    """What may still be used now, grace included, after the units held by reservations
    (None: no bound)."""
    soft_limit_exceeded: bool
    """Usage is already beyond the limit."""
    would_exceed: bool
    """Usage plus the request would be beyond the limit."""
    allowed: bool
    enforcement: Enforcement
    reason: Reason
    resets_at: datetime
    """When the period ends and usage starts again from zero."""
    policy: Policy = SOFT
    grace_ends_at: datetime | None = None
    """When the running time grace ends (or would, if this request starts it)."""
    status_blocks_at: datetime | None = None
    """When the org's billing status starts blocking (past due or an ended trial)."""
    message: str = ""
    """What to tell the person using the product, in plain words."""
    upgrade: Plan | None = None
    """The cheapest active plan whose limit would allow the request (refusals only)."""
    held: int = 0
    """Units held by open reservations (work in progress), not yet used; they count
    against the limit as if used."""


def decide(
    metric: str,
    *,
    used: int,
    limit: int | None,
    requested: int,
    now: datetime,
    policy: Policy = SOFT,
    crossed_at: datetime | None = None,
    status: Standing = Standing(),
    held: int = 0,
) -> QuotaDecision:
    """Climb the ladder (see the module's docstring) for `requested` more units when
    `used` are used and `held` more are held by reservations, against `limit` (None:
    unlimited) enforced by `policy`. Held units count as used for what the request may
    take; a time grace is started only by usage itself going beyond the limit."""
    after = used + held + requested
    ceiling = Ceiling(limit)
    if status.blocked is not None:
        allowed, reason, ceiling = False, status.blocked, Ceiling(0)
    elif limit is None:
        allowed, reason = True, Reason.WITHIN_LIMIT
    elif policy.mode is Enforcement.SOFT:
        allowed = True
        reason = Reason.WITHIN_LIMIT if after <= limit else Reason.SOFT_LIMIT_EXCEEDED
    else:
        ceiling = terms_ceiling(
            used=used, limit=limit, policy=policy, crossed_at=crossed_at, now=now
        )
        crossed_at = crossed_at if used > limit else None
        allowed = ceiling.most is None or after <= ceiling.most
        if after <= limit:
            reason = Reason.WITHIN_LIMIT
        else:
            reason = Reason.IN_GRACE if allowed else Reason.LIMIT_REACHED
        # A grace's end is news once usage went beyond the limit, or this request takes it
        # there; before that, no clock runs.
        if crossed_at is None and not (allowed and used + requested > limit):
            ceiling = Ceiling(ceiling.most)
    return QuotaDecision(
        metric=metric,
        requested=requested,
        used=used,
        limit=limit,
        remaining=None if ceiling.most is None else max(ceiling.most - used - held, 0),
        soft_limit_exceeded=limit_exceeded(used, limit),
        would_exceed=limit_exceeded(after, limit),
        allowed=allowed,
        enforcement=policy.mode,
        reason=reason,
        resets_at=BillingPeriod.containing(now).end,
        policy=policy,
        grace_ends_at=ceiling.grace_ends_at,
        status_blocks_at=status.blocks_at,
        held=held,
    )


def upgrade_for(plans: Sequence[Plan], current: Plan, metric: str, needed: int) -> Plan | None:
    """The cheapest active, public plan in the same currency, other than `current` and
    costing no less, that includes at least `needed` of `metric` (or all of it); None if no
    plan does. A private plan, which the operator assigns, is never offered.
    A cheaper plan is never offered as the way up, even one that happens to include more of
    this metric, and prices in another currency are not compared."""

    def fits(plan: Plan) -> bool:
        included = plan.allowance(metric).included_quantity
        return (
            plan.is_active
            and plan.is_public
            and plan.slug != current.slug
            and plan.currency == current.currency
            and plan.monthly_price >= current.monthly_price
            and (included is None or included >= needed)
        )

    return min(filter(fits, plans), key=lambda plan: (plan.monthly_price, plan.slug), default=None)


def explained(
    decision: QuotaDecision, *, org: str, unit: str, plan: str, upgrade: Plan | None = None
) -> QuotaDecision:
    """The decision with its `message` for the person using the product (`org`: the org's
    name; `unit`: the metric's unit, as "tokens"; `plan`: the plan's name) and, if it was
    refused for its limit, the `upgrade` that would allow it."""
    d = decision
    resets = f"Usage resets on {d.resets_at.day} {d.resets_at:%B}."
    grace = " and its grace allowance" if d.policy.has_grace else ""
    offer = _offer(upgrade, d.metric, unit) if d.reason is Reason.LIMIT_REACHED else ""
    holds = f" Work in progress holds {d.held:,} more." if d.held else ""
    if d.reason is Reason.CANCELED:
        text = f"{org}'s subscription is canceled, so no more {unit} can be used."
    elif d.reason is Reason.PAST_DUE:
        text = f"{org}'s payment is overdue, so no more {unit} can be used until it is settled."
    elif d.reason is Reason.TRIAL_ENDED:
        text = f"{org}'s trial has ended: choose a plan to go on using {unit}."
    elif d.limit is None:
        text = f"{plan} includes unlimited {unit}; {org} has used {d.used:,} this month."
    elif d.limit == 0 and d.reason is Reason.LIMIT_REACHED:
        text = f"{plan} does not include {unit}."
    elif d.reason is Reason.WITHIN_LIMIT:
        text = (
            f"{org} has used {d.used:,} of the {d.limit:,} {unit} included in {plan} this "
            f"month.{holds}"
        )
    elif d.reason is Reason.SOFT_LIMIT_EXCEEDED:
        so_far = (
            f"{d.used:,} {unit}, more than the {d.limit:,}"
            if d.soft_limit_exceeded
            else f"{d.used:,} of the {d.limit:,} {unit}"
        )
        text = (
            f"{org} has used {so_far} included in {plan} this month; usage beyond them is "
            f"billed as overage.{holds}"
        )
    elif d.reason is Reason.IN_GRACE:
        more = "" if d.remaining is None else f" ({d.remaining:,} more {unit})"
        ends = d.grace_ends_at
        until = "" if ends is None else f" until {ends.day} {ends:%B, %H:%M} UTC"
        text = (
            f"{org} has used all {d.limit:,} {unit} included in {plan} this month and may go "
            f"on{more}{until} by its grace allowance.{holds} {resets}"
        )
    elif not d.remaining and d.held:
        text = (
            f"{org} has no {unit} left of the {d.limit:,} included in {plan}{grace} this "
            f"month: {d.used:,} used, {d.held:,} held by work in progress. {resets}"
        )
    elif not d.remaining:
        text = (
            f"{org} has used all {d.limit:,} {unit} included in {plan}{grace} this month. {resets}"
        )
    else:
        text = (
            f"{org} has {d.remaining:,} {unit} left in {plan}{grace} this month, fewer than the "
            f"{d.requested:,} asked for.{holds} {resets}"
        )
    return replace(d, message=text + offer, upgrade=upgrade if offer else None)


def _offer(upgrade: Plan | None, metric: str, unit: str) -> str:
    if upgrade is None:
        return ""
    included = upgrade.allowance(metric).included_quantity
    amount = "unlimited" if included is None else f"{included:,}"
    return f" {upgrade.name} includes {amount} {unit}."

"""Quota decisions, and the per-org terms that replace parts of a plan's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from billing_kernel.alerts.service import AlertService
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    validate_id,
    validate_quantity,
)
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import IdempotencyConflict
from billing_kernel.metrics.rules import Metric, used_and_peak
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.service import OrgService
from billing_kernel.plans.rules import validate_grace
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.repository import (
    Operation,
    QuotaInputs,
    QuotaRepository,
    StoredDecision,
)
from billing_kernel.quota.rules import (
    LimitOverride,
    QuotaDecision,
    Reason,
    Standing,
    Terms,
    decide,
    effective_terms,
    exhausted,
    explained,
    limit_exceeded,
    standing,
    terms_after_override,
    terms_ceiling,
    upgrade_for,
)
from billing_kernel.reservations.rules import DEFAULT_TTL_SECONDS, Reservation, validate_ttl
from billing_kernel.reservations.service import ReservationService
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService
from billing_kernel.telemetry.instruments import DECISIONS
from billing_kernel.usage.rules import CeilingWrite, validate_metric
from billing_kernel.usage.service import UsageService


@dataclass(frozen=True, slots=True)
class Consumption:
    """A consume's answer: its decision (allowed: the units are recorded), and whether
    this call was a retry answered with the decision first made for its key."""

    decision: QuotaDecision
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Reserved:
    """A reservation's answer: the reservation (held, or refused), the decision it was
    made with, and whether this call was a retry answered with what its key first got."""

    reservation: Reservation
    decision: QuotaDecision
    replayed: bool = False


class _TakenMeanwhile(Exception):
    """A concurrent call with the same idempotency key decided first."""


Write = Callable[[int | None, datetime], Awaitable[CeilingWrite]]
"""A conditional write of a decision's units: given the most the counter's usage and holds
may reach (None: no bound) and the decision's moment, it adds the units only if they fit."""


class QuotaService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        metrics: MetricService,
        plans: PlanService,
        orgs: OrgService,
        subscriptions: SubscriptionService,
        usage: UsageService,
        reservations: ReservationService,
        alerts: AlertService,
    ) -> None:
        self._tx = transactions
        self._alerts = alerts
        self._clock = clock
        self._metrics = metrics
        self._plans = plans
        self._orgs = orgs
        self._subscriptions = subscriptions
        self._usage = usage
        self._reservations = reservations
        self._status_grace = timedelta(days=settings.past_due_grace_days)
        self._ended_trial_blocks = settings.ended_trial_blocks

    async def check(
        self, org_id: str, metric: str, amount: int = 1, uow: UnitOfWork | None = None
    ) -> QuotaDecision:
        """May the org use `amount` more of `metric`? The decision climbs the ladder of
        `quota.rules` (billing status, then the metric's limit and policy), says why as a
        stable reason and in plain words, and offers an upgrade when the limit refuses it.
        Units held by reservations count as used; those whose TTL has ended do not."""
        requested = validate_quantity(amount)
        now = self._clock()
        period = BillingPeriod.containing(now)
        async with self._tx.read(uow) as unit:
            checked = await self._metrics.get(metric, unit)
            inputs = await QuotaRepository(unit).quota_inputs(org_id, period.key, metric, now)
        if inputs is None:  # first touch: seed the state, then ask again
            async with self._tx.begin(uow) as unit:
                await self._subscriptions.billing_state(org_id, unit)
                inputs = await QuotaRepository(unit).quota_inputs(org_id, period.key, metric, now)
        assert inputs is not None
        decision = self._decision(checked, inputs, requested, now)
        decided("check", decision.allowed)
        return await self._explained(decision, org_id, checked, inputs, uow)

    async def consume(
        self, org_id: str, metric: str, amount: int = 1, *, idempotency_key: str
    ) -> Consumption:
        """Decide as `check` does and, if allowed, record the `amount` as a usage event
        keyed `idempotency_key`, in one atomic step: the counter is added to by one
        conditional statement that holds its row, so with k units left, of any number of
        concurrent consumes of one unit exactly k are allowed. A retry with the same key
        (the same metric and amount) is answered with the first decision and counts
        nothing more; a different metric or amount under a used key raises
        IdempotencyConflict. Refusals are kept too: a retry of one is refused again. An org
        not seen before is created as a usage event would create it."""
        requested = validate_quantity(amount)
        key = validate_id(idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
        try:
            # A retry is not looked for first: the first call's event or decision, already
            # stored under the key, makes the write below fail and roll back, and the retry
            # is then answered from what is stored. A first call pays no extra read.
            async with self._tx.begin() as unit:

                async def record(most: int | None, now: datetime) -> CeilingWrite:
                    return await self._usage.record_within(
                        org_id, metric, requested, idempotency_key=key, most=most, now=now, uow=unit
                    )

                decision = await self._decided(
                    Operation.CONSUME, org_id, metric, requested, key, record, unit
                )
            decided("consume", decision.allowed)  # committed
            return Consumption(decision)
        except (_TakenMeanwhile, IdempotencyConflict):
            async with self._tx.read() as unit:  # what the first call with the key decided
                stored = await self._stored(Operation.CONSUME, org_id, metric, requested, key, unit)
                if stored is None:  # the key belongs to a usage event, not a decision
                    raise
                return Consumption(await self._with_upgrade(stored, unit), replayed=True)

    async def reserve(
        self,
        org_id: str,
        metric: str,
        estimate: int,
        *,
        idempotency_key: str,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> Reserved:
        """Decide as `consume` does for `estimate` units and, if allowed, hold them for
        `ttl_seconds` against the limit in one atomic step: they count as used for every
        other decision until the reservation is committed (`ReservationService.commit`:
        its actual usage recorded), released, or its TTL ends. A refused reservation is
        kept, refused. Retries are answered as `consume` answers them."""
        org_id = validate_id(org_id, "org_id")
        requested = validate_quantity(estimate)
        key = validate_id(idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
        ttl = validate_ttl(ttl_seconds)
        try:
            async with self._tx.begin() as unit:
                holds: list[Reservation] = []

                async def hold(most: int | None, now: datetime) -> CeilingWrite:
                    made = await self._reservations.hold(
                        org_id,
                        metric,
                        requested,
                        idempotency_key=key,
                        ttl=ttl,
                        most=most,
                        now=now,
                        uow=unit,
                    )
                    holds.append(made.reservation)
                    return made.write

                decision = await self._decided(
                    Operation.RESERVE, org_id, metric, requested, key, hold, unit
                )
                if not holds:  # the org's billing status refused it before any write
                    holds.append(
                        await self._reservations.refuse(
                            org_id,
                            metric,
                            requested,
                            idempotency_key=key,
                            ttl=ttl,
                            now=self._clock(),
                            uow=unit,
                        )
                    )
                return Reserved(holds[0], decision)
        except (_TakenMeanwhile, IdempotencyConflict):
            async with self._tx.read() as unit:
                stored = await self._stored(Operation.RESERVE, org_id, metric, requested, key, unit)
                if stored is None:  # the key belongs to a usage event, not a decision
                    raise
                return Reserved(
                    await self._reservations.by_key(org_id, key, unit),
                    await self._with_upgrade(stored, unit),
                    replayed=True,
                )

    async def _decided(
        self,
        operation: Operation,
        org_id: str,
        metric: str,
        requested: int,
        key: str,
        write: Write,
        unit: UnitOfWork,
    ) -> QuotaDecision:
        """The decision for `requested` units, made by `write` in one conditional statement,
        and kept under `key`; raises _TakenMeanwhile if a concurrent call with the key kept
        its decision first."""
        decision = await self._decide_and_write(org_id, metric, requested, write, unit)
        saved = await QuotaRepository(unit).save_decision(
            org_id, key, operation, decision, self._clock()
        )
        if not saved:
            raise _TakenMeanwhile
        return decision

    async def _decide_and_write(
        self, org_id: str, metric: str, requested: int, write: Write, unit: UnitOfWork
    ) -> QuotaDecision:
        now = self._clock()
        checked = validate_metric(metric, await self._metrics.by_key(unit))  # seats: not usage
        quota, period = QuotaRepository(unit), BillingPeriod.containing(now)
        inputs = await quota.quota_inputs(org_id, period.key, metric, now)
        if inputs is None:  # an org not seen before, or one with no billing state yet
            admission = await self._orgs.admit({org_id}, now, unit)
            if admission.unknown:
                raise admission.refusal(org_id)
            await self._subscriptions.billing_state(org_id, unit)
            inputs = await quota.quota_inputs(org_id, period.key, metric, now)
            assert inputs is not None
        if inputs.expired_held:  # holds whose time ended go back before anything is judged
            await self._reservations.expire_due(org_id, metric, now, unit)
        terms = terms_after_override(inputs.plan_terms, inputs.override)
        status = self._standing(inputs, now)
        # The crossing the ceiling is judged with; the decision below must use the same,
        # though the usage it is told of may have grown since `inputs` was read.
        crossed_at = inputs.crossed_at if limit_exceeded(inputs.counted, terms.limit) else None
        most = None
        if status.blocked is not None:
            written = CeilingWrite(False, inputs.counted, inputs.held - inputs.expired_held)
        else:
            most = terms_ceiling(
                used=inputs.counted,
                limit=terms.limit,
                policy=terms.policy,
                crossed_at=crossed_at,
                now=now,
            ).most
            written = await write(most, now)
        decision = decide(
            metric,
            used=written.used,
            held=written.held,
            limit=terms.limit,
            requested=requested,
            now=now,
            policy=terms.policy,
            crossed_at=crossed_at,
            status=status,
        )
        assert decision.allowed == written.recorded, "the written ceiling and the rules disagree"
        if decision.reason is Reason.LIMIT_REACHED and exhausted(written.used, most):
            await self._alerts.blocked(
                org_id, metric, period.key, written.used, terms.limit, now, unit
            )
        return await self._explained(decision, org_id, checked, inputs, unit)

    async def _stored(
        self,
        operation: Operation,
        org_id: str,
        metric: str,
        requested: int,
        key: str,
        unit: UnitOfWork,
    ) -> StoredDecision | None:
        """The decision first made under `key`, for a retry of the same call (None: no
        decision was kept under it); an IdempotencyConflict naming what the key was used
        for when that was something else."""
        stored = await QuotaRepository(unit).get_decision(org_id, key)
        if stored is None:
            return None
        first = stored.decision
        if (stored.operation, first.metric, first.requested) != (operation, metric, requested):
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for org {org_id!r} to "
                f"{stored.operation.value} {first.requested} {first.metric}",
                org_id=org_id,
                idempotency_key=key,
            )
        return stored

    async def _with_upgrade(self, stored: StoredDecision, unit: UnitOfWork) -> QuotaDecision:
        upgrade = None
        if stored.upgrade_plan is not None:
            upgrade = await self._plans.get(stored.upgrade_plan, unit)
        return replace(stored.decision, upgrade=upgrade)

    async def _explained(
        self,
        decision: QuotaDecision,
        org_id: str,
        metric: Metric,
        inputs: QuotaInputs,
        uow: UnitOfWork | None = None,
    ) -> QuotaDecision:
        """The decision in plain words, with the way up when its limit refused it."""
        upgrade = None
        if decision.reason is Reason.LIMIT_REACHED:
            async with self._tx.read(uow) as unit:
                current = await self._plans.get(inputs.plan_slug, unit, version=inputs.plan_version)
                offered = await self._plans.list_active(unit, offered=True)
            needed = decision.used + decision.held + decision.requested
            upgrade = upgrade_for(offered, current, metric.key, needed)
        return explained(
            decision,
            org=inputs.org_name or org_id,
            unit=metric.unit,
            plan=inputs.plan_name,
            upgrade=upgrade,
        )

    def _decision(
        self, metric: Metric, inputs: QuotaInputs, requested: int, now: datetime
    ) -> QuotaDecision:
        used, _ = used_and_peak(metric, inputs.counted, inputs.members)
        terms = terms_after_override(inputs.plan_terms, inputs.override)
        return decide(
            metric.key,
            used=used,
            held=inputs.held - inputs.expired_held,
            limit=terms.limit,
            requested=requested,
            now=now,
            policy=terms.policy,
            crossed_at=inputs.crossed_at,
            status=self._standing(inputs, now),
        )

    def _standing(self, inputs: QuotaInputs, now: datetime) -> Standing:
        return standing(
            inputs.status,
            status_since=inputs.status_since,
            # An ended trial blocks only where the operator chose so: until payments move
            # orgs out of trial, every org's trial ends.
            trial_ends_at=inputs.trial_ends_at if self._ended_trial_blocks else None,
            now=now,
            grace=self._status_grace,
        )

    async def overrides(
        self, org_id: str, uow: UnitOfWork | None = None
    ) -> dict[str, LimitOverride]:
        """The org's own terms, by metric."""
        async with self._tx.read(uow) as unit:
            return await QuotaRepository(unit).get_limit_overrides(org_id)

    async def terms(self, org_id: str, uow: UnitOfWork | None = None) -> dict[str, Terms]:
        """The org's terms for every metric in the catalogue: its plan's, after its overrides."""
        async with self._tx.begin(uow) as unit:
            state = await self._subscriptions.billing_state(org_id, unit)
            plan = await self._plans.get(state.plan_slug, unit, version=state.plan_version)
            overrides = await QuotaRepository(unit).get_limit_overrides(org_id)
            return {
                metric.key: effective_terms(plan, metric.key, overrides)
                for metric in await self._metrics.catalogue(unit)
            }

    async def prune_decisions(self, older_than: timedelta, *, batch: int = 1_000) -> int:
        """Forget the decisions made more than `older_than` ago (BILLING_DECISION_RETENTION_DAYS):
        `batch` a transaction, never one long one, oldest first, until none is left; how
        many. A reservation's decision stays while it holds units. A consume retried under
        the key of a forgotten decision is no longer answered as the first was: its key
        belongs to the event it recorded, which counts once."""
        before = self._clock() - older_than
        return await self._tx.in_batches(
            lambda unit: QuotaRepository(unit).prune_decisions(before, batch), batch
        )

    async def set_override(
        self,
        org_id: str,
        metric: str,
        override: LimitOverride | int | None,
        uow: UnitOfWork | None = None,
    ) -> Terms:
        """Give the org its own terms for `metric`: the parts `override` sets replace the
        plan's (a bare number, or None, sets only the limit; None: unlimited). Replaces the
        org's earlier override of the metric; returns the org's terms for it now."""
        if not isinstance(override, LimitOverride):
            override = LimitOverride(included_quantity=override, sets_included=True)
        if override.sets_included and override.included_quantity is not None:
            validate_quantity(override.included_quantity)
        validate_grace(
            override.grace_percent or 0,
            override.grace_period if override.sets_grace_period else None,
        )
        async with self._tx.begin(uow) as unit:
            await self._subscriptions.billing_state(org_id, unit)
            await self._metrics.get(metric, unit)
            await QuotaRepository(unit).set_limit_override(org_id, metric, override, self._clock())
            await self._alerts.reevaluate(org_id, unit)
            return (await self.terms(org_id, unit))[metric]

    async def clear_override(
        self, org_id: str, metric: str, uow: UnitOfWork | None = None
    ) -> Terms:
        """Return the org to its plan's terms for `metric`; returns them."""
        async with self._tx.begin(uow) as unit:
            await self._orgs.require(org_id, unit)
            await self._metrics.get(metric, unit)
            await QuotaRepository(unit).clear_limit_override(org_id, metric)
            await self._alerts.reevaluate(org_id, unit)
            return (await self.terms(org_id, unit))[metric]


def decided(kind: str, allowed: bool) -> None:
    """Count a decision (`check`, `consume`) for the operators' metrics; a replayed one is
    not counted again."""
    DECISIONS.labels(kind, "allowed" if allowed else "refused").inc()

"""BillingService: the kernel's public operations, each one transaction.

Routes, dashboard pages, the CLI and the in-process SDK backend call these methods and nothing
below them. The service validates with the pure domain, reads and writes through the store's
repositories, and raises only `billing_kernel.errors` exceptions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from billing_kernel.auth.api_keys import (
    ApiKey,
    hash_secret,
    new_key_material,
    secret_matches,
    split_key,
)
from billing_kernel.auth.principal import Scope, Service
from billing_kernel.config import FALLBACK_PLAN_SLUG, Settings
from billing_kernel.domain.billing_state import MemberRole, OrgBillingState, new_trial_state
from billing_kernel.domain.metrics import Aggregation, Metric, used_and_peak
from billing_kernel.domain.periods import BillingPeriod
from billing_kernel.domain.plans import Plan, limit_after_overrides
from billing_kernel.domain.quota import QuotaDecision, decide
from billing_kernel.domain.summary import (
    OrgBillingSummary,
    OrgDashboard,
    PeriodUsage,
    build_summary,
    days_so_far,
)
from billing_kernel.domain.usage import (
    EventTimeWindow,
    UsageEvent,
    counter_increments,
    new_usage_event,
    validate_id,
    validate_quantity,
    validate_text,
)
from billing_kernel.errors import (
    ApiKeyNotFound,
    BillingError,
    IdempotencyConflict,
    InvalidInput,
    MemberNotFound,
    OrgNotFound,
    PlanInactive,
    PlanNotFound,
    Unauthenticated,
    UnknownMetric,
)
from billing_kernel.store.api_keys import ApiKeyRepository
from billing_kernel.store.database import Database
from billing_kernel.store.orgs import OrgRepository
from billing_kernel.store.plans import PlanRepository
from billing_kernel.store.usage import QuotaInputs, UsageRepository

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class RecordStatus(StrEnum):
    ACCEPTED = "accepted"
    """The event was new and has been counted."""
    DUPLICATE = "duplicate"
    """The key was seen before with the same payload; nothing changed."""
    CONFLICT = "conflict"
    """The key was seen before with a different payload; nothing changed."""
    REFUSED = "refused"
    """The event was not counted; its error says why."""


class RawUsage(Protocol):
    """What `record_usage_batch` reads of each event: a UsageInput, or any object with these
    attributes (the HTTP layer passes its parsed request bodies as they are)."""

    @property
    def org_id(self) -> object: ...
    @property
    def metric(self) -> object: ...
    @property
    def quantity(self) -> object: ...
    @property
    def idempotency_key(self) -> object: ...
    @property
    def occurred_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class UsageInput:
    """One usage event as a caller sent it, before validation."""

    org_id: object
    metric: object
    quantity: object
    idempotency_key: object
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageRecordResult:
    status: RecordStatus
    event: UsageEvent


@dataclass(frozen=True, slots=True)
class UsageOutcome:
    status: RecordStatus
    event: UsageEvent | None
    error: BillingError | None = None


@dataclass(frozen=True, slots=True)
class UsageBatchResult:
    outcomes: tuple[UsageOutcome, ...]

    def count(self, status: RecordStatus) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status is status)


CATALOGUE_TTL_SECONDS = 10.0
"""How long the metric catalogue is kept in memory: a new metric is seen within this."""


@dataclass
class _Shared:
    """What one service and its per-user views keep between calls."""

    warned_default_plan: bool = False
    catalogue: tuple[float, list[Metric]] | None = None
    api_keys: dict[str, tuple[float, ApiKey]] = field(default_factory=dict)


class _Unit:
    """The repositories of one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.plans = PlanRepository(conn)
        self.orgs = OrgRepository(conn)
        self.usage = UsageRepository(conn)
        self.api_keys = ApiKeyRepository(conn)


class BillingService:
    """Plans, org billing state, usage and quota decisions. Safe to share across tasks."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        acting_user: str | None = None,
        shared: _Shared | None = None,
    ) -> None:
        self._db = database
        self._acting_user = acting_user
        self._settings = settings
        self._clock = clock
        self._window = EventTimeWindow(
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            max_age=timedelta(days=settings.max_event_age_days),
        )
        self._shared = shared or _Shared()
        self.tracking_failures = 0
        """How many best-effort `update_usage_counters` calls failed (and were swallowed)."""

    def for_user(self, user_id: str) -> BillingService:
        """The same service, with every transaction confined to the user's orgs by row-level
        security (on PostgreSQL). Used for requests made by a signed-in user."""
        return BillingService(
            self._db, self._settings, clock=self._clock, acting_user=user_id, shared=self._shared
        )

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Unit]:
        async with self._db.transaction(acting_user=self._acting_user) as conn:
            yield _Unit(conn)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[_Unit]:
        """For reads that need no common snapshot and write nothing (see Database.read)."""
        async with self._db.read(acting_user=self._acting_user) as conn:
            yield _Unit(conn)

    # --- plans -----------------------------------------------------------------------------

    async def get_default_plan(self) -> Plan:
        """The plan new orgs start on: BILLING_DEFAULT_PLAN_SLUG, else internal-dev."""
        async with self._transaction() as unit:
            return await self._default_plan(unit)

    async def list_plans(self) -> list[Plan]:
        """Active plans, cheapest first."""
        async with self._transaction() as unit:
            return await unit.plans.list_plans(active_only=True)

    async def get_plan_by_slug(self, slug: str) -> Plan:
        """The plan, active or not; PlanNotFound if there is none."""
        async with self._transaction() as unit:
            plan = await unit.plans.get_plan(slug)
        if plan is None:
            raise PlanNotFound(f"no plan with slug {slug!r}", plan_slug=slug)
        return plan

    async def list_metrics(self) -> list[Metric]:
        async with self._transaction() as unit:
            return await self._metrics(unit)

    async def _metrics(self, unit: _Unit) -> list[Metric]:
        """The metric catalogue, read at most every CATALOGUE_TTL_SECONDS (it is on every
        hot path and changes only when an operator adds a metric)."""
        cached = self._shared.catalogue
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        metrics = await unit.plans.list_metrics()
        self._shared.catalogue = (time.monotonic() + CATALOGUE_TTL_SECONDS, metrics)
        return metrics

    async def _default_plan(self, unit: _Unit) -> Plan:
        slug = self._settings.default_plan_slug
        plan = await unit.plans.get_plan(slug)
        if plan is not None and plan.is_active:
            return plan
        if not self._shared.warned_default_plan:
            self._shared.warned_default_plan = True
            logger.warning(
                "default plan %r is %s; new orgs get %r instead",
                slug,
                "inactive" if plan else "unknown",
                FALLBACK_PLAN_SLUG,
            )
        fallback = await unit.plans.get_plan(FALLBACK_PLAN_SLUG)
        if fallback is None:
            raise PlanNotFound(
                f"neither the default plan {slug!r} nor {FALLBACK_PLAN_SLUG!r} "
                "exists; run `billing-kernel migrate`",
                plan_slug=slug,
            )
        return fallback

    @staticmethod
    async def _active_plan(unit: _Unit, slug: str) -> Plan:
        validate_id(slug, "plan_slug")
        plan = await unit.plans.get_plan(slug)
        if plan is None:
            raise PlanNotFound(f"no plan with slug {slug!r}", plan_slug=slug)
        if not plan.is_active:
            raise PlanInactive(f"plan {slug!r} is no longer offered", plan_slug=slug)
        return plan

    # --- orgs and members ------------------------------------------------------------------

    async def create_org(
        self, org_id: str, *, name: str | None = None, plan_slug: str | None = None
    ) -> OrgBillingState:
        """Create the org (or rename it) and seed its billing state if it has none; an
        existing state, plan included, is kept."""
        async with self._transaction() as unit:
            state, _ = await self._save_org(unit, org_id, name, plan_slug)
            return state

    async def put_org(
        self, org_id: str, *, name: str | None = None, plan_slug: str | None = None
    ) -> OrgBillingState:
        """Create or update the org: its name, and its plan when `plan_slug` is given."""
        async with self._transaction() as unit:
            state, plan = await self._save_org(unit, org_id, name, plan_slug)
            if plan_slug and state.plan_slug != plan.slug:
                await unit.orgs.set_plan(org_id, plan.slug, self._clock())
                state = await self._require_state(unit, org_id)
            return state

    async def _save_org(
        self, unit: _Unit, org_id: str, name: str | None, plan_slug: str | None
    ) -> tuple[OrgBillingState, Plan]:
        """Create or rename the org and seed its state (on `plan_slug`, else the default plan)
        if it has none; the state and the plan asked for."""
        validate_id(org_id, "org_id")
        now = self._clock()
        plan = await (self._active_plan(unit, plan_slug) if plan_slug else self._default_plan(unit))
        await unit.orgs.save_org(org_id, validate_text(name, "name", 200), now)
        await unit.orgs.seed_billing_states(
            [new_trial_state(org_id, plan.slug, now, self._settings.trial_days)]
        )
        return await self._require_state(unit, org_id), plan

    async def get_org(self, org_id: str) -> tuple[str | None, OrgBillingState]:
        """The org's name and billing state (seeded if missing)."""
        async with self._transaction() as unit:
            name = await unit.orgs.org_name(org_id)
            return name, await self._ensure_state(unit, org_id)

    async def add_org_member(
        self,
        org_id: str,
        user_id: str,
        role: MemberRole = MemberRole.MEMBER,
        *,
        email: str | None = None,
    ) -> int:
        """Put the user in the org with `role` (or change their role); returns the seat count.

        The period's seat peak is raised in the same transaction.
        """
        validate_id(user_id, "user_id")
        now = self._clock()
        async with self._transaction() as unit:
            await self._lock_existing_org(unit, org_id)
            await unit.orgs.ensure_user(user_id, validate_text(email, "email", 320), now)
            await unit.orgs.put_member(org_id, user_id, MemberRole(role), now)
            seats = await unit.orgs.count_members(org_id)
            period = BillingPeriod.containing(now)
            for metric in await self._metrics(unit):
                if metric.aggregation is Aggregation.SEATS:
                    await unit.usage.raise_to_at_least((org_id, period.key, metric.key), seats, now)
            return seats

    async def remove_org_member(self, org_id: str, user_id: str) -> int:
        """Take the user out of the org; returns the seat count. The period's peak stays."""
        async with self._transaction() as unit:
            await self._lock_existing_org(unit, org_id)
            if not await unit.orgs.remove_member(org_id, user_id):
                raise MemberNotFound(
                    f"user {user_id!r} is not a member of org {org_id!r}",
                    org_id=org_id,
                    user_id=user_id,
                )
            return await unit.orgs.count_members(org_id)

    async def list_org_members(self, org_id: str) -> list[tuple[str, MemberRole]]:
        async with self._transaction() as unit:
            await self._require_org(unit, org_id)
            return await unit.orgs.list_members(org_id)

    @staticmethod
    async def _lock_existing_org(unit: _Unit, org_id: str) -> None:
        if not await unit.orgs.lock_org(org_id):
            raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)

    @staticmethod
    async def _require_org(unit: _Unit, org_id: str) -> None:
        if not await unit.orgs.existing_org_ids([org_id]):
            raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)

    async def memberships(self, user_id: str) -> dict[str, MemberRole]:
        """The orgs `user_id` is a member of, with the role in each."""
        async with self._read() as unit:
            return await unit.orgs.memberships_of(user_id)

    # --- API keys --------------------------------------------------------------------------

    async def create_api_key(
        self, scopes: Iterable[Scope], *, org_id: str | None = None, name: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new service key; returns it and its plaintext, which is never shown again."""
        granted = frozenset(scopes)
        if not granted:
            raise InvalidInput("an API key needs at least one scope", field="scopes")
        if org_id is not None:
            validate_id(org_id, "org_id")
        key_id, secret, plaintext = new_key_material()
        key = ApiKey(
            key_id=key_id,
            secret_hash=hash_secret(secret),
            scopes=granted,
            org_id=org_id,
            name=name,
            created_at=self._clock(),
        )
        async with self._transaction() as unit:
            await unit.api_keys.add(key)
        return key, plaintext

    async def _api_key(self, key_id: str) -> ApiKey | None:
        """The key, from memory for up to BILLING_API_KEY_CACHE_SECONDS after it was read."""
        cache = self._shared.api_keys
        cached = cache.get(key_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._read() as unit:
            key = await unit.api_keys.get(key_id)
        ttl = self._settings.api_key_cache_seconds
        if key is not None and ttl > 0:
            if len(cache) >= 10_000:
                cache.clear()
            cache[key_id] = (time.monotonic() + ttl, key)
        return key

    async def list_api_keys(self) -> list[ApiKey]:
        async with self._transaction() as unit:
            return await unit.api_keys.list_all()

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key at once; requests with it are refused from now on."""
        async with self._transaction() as unit:
            if not await unit.api_keys.revoke(key_id, self._clock()):
                raise ApiKeyNotFound(f"no API key {key_id!r}", key_id=key_id)
        self._shared.api_keys.pop(key_id, None)

    async def authenticate_api_key(self, plaintext: str) -> Service:
        """The service a key belongs to; Unauthenticated for a malformed, unknown or revoked
        key (one message for all, so the answer tells an attacker nothing)."""
        parts = split_key(plaintext)
        if parts is not None:
            key_id, secret = parts
            key = await self._api_key(key_id)
            if key is not None and secret_matches(key, secret) and not key.is_revoked:
                return Service(key_id=key.key_id, scopes=key.scopes, org_id=key.org_id)
        raise Unauthenticated("the API key is not valid (unknown, malformed or revoked)")

    # --- billing state ---------------------------------------------------------------------

    async def get_org_billing_state(self, org_id: str) -> OrgBillingState:
        """The org's billing state, seeded on first use (default plan, in trial)."""
        async with self._transaction() as unit:
            return await self._ensure_state(unit, org_id)

    async def set_org_plan(self, org_id: str, plan_slug: str) -> OrgBillingState:
        """Move the org to an active plan; an unknown or inactive plan is refused."""
        async with self._transaction() as unit:
            plan = await self._active_plan(unit, plan_slug)
            await self._ensure_state(unit, org_id)
            await unit.orgs.set_plan(org_id, plan.slug, self._clock())
            return await self._require_state(unit, org_id)

    async def set_org_limit_override(
        self, org_id: str, metric: str, included_quantity: int | None
    ) -> None:
        """Give the org its own limit for `metric` (None: unlimited), replacing the plan's."""
        async with self._transaction() as unit:
            await self._ensure_state(unit, org_id)
            if metric not in {m.key for m in await self._metrics(unit)}:
                raise UnknownMetric(f"unknown metric {metric!r}", field="metric")
            if included_quantity is not None:
                validate_quantity(included_quantity)
            await unit.orgs.set_limit_override(org_id, metric, included_quantity, self._clock())

    async def clear_org_limit_override(self, org_id: str, metric: str) -> None:
        """Return the org to its plan's limit for `metric`."""
        async with self._transaction() as unit:
            await self._require_org(unit, org_id)
            await unit.orgs.clear_limit_override(org_id, metric)

    async def _ensure_state(self, unit: _Unit, org_id: str) -> OrgBillingState:
        state = await unit.orgs.get_billing_state(org_id)
        if state is not None:
            return state
        await self._require_org(unit, org_id)
        plan = await self._default_plan(unit)
        await unit.orgs.seed_billing_states(
            [new_trial_state(org_id, plan.slug, self._clock(), self._settings.trial_days)]
        )
        return await self._require_state(unit, org_id)

    @staticmethod
    async def _require_state(unit: _Unit, org_id: str) -> OrgBillingState:
        state = await unit.orgs.get_billing_state(org_id)
        if state is None:  # only if the org vanished in between
            raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)
        return state

    # --- usage -----------------------------------------------------------------------------

    async def record_usage(
        self,
        org_id: str,
        metric: str,
        quantity: int,
        *,
        idempotency_key: str,
        occurred_at: datetime | None = None,
    ) -> UsageRecordResult:
        """Count `quantity` of `metric` for the org, exactly once per idempotency key.

        The event time (default: now) decides the period. The same key with the same payload
        again is a no-op reported as DUPLICATE; with a different payload it raises
        IdempotencyConflict. Invalid input raises InvalidInput. Nothing is written on error.
        An org the kernel has not seen is created and seeded, unless BILLING_AUTO_CREATE_ORGS
        is false, in which case OrgNotFound is raised.
        """
        [outcome] = (
            await self.record_usage_batch(
                [UsageInput(org_id, metric, quantity, idempotency_key, occurred_at)]
            )
        ).outcomes
        if outcome.error is not None:
            raise outcome.error
        assert outcome.event is not None
        return UsageRecordResult(status=outcome.status, event=outcome.event)

    async def record_usage_batch(self, inputs: Sequence[RawUsage]) -> UsageBatchResult:
        """Judge each event alone and count the valid ones, all in one transaction.

        Each outcome is ACCEPTED, DUPLICATE or REFUSED (with the error that says why: invalid
        input, unknown org when auto-creation is off, or an idempotency conflict). Refused
        events write nothing; the others are committed together, by set-based statements.
        """
        outcomes: list[UsageOutcome | None] = [None] * len(inputs)
        async with self._transaction() as unit:
            received_at = self._clock()
            catalogue = {m.key: m for m in await self._metrics(unit)}
            valid: list[tuple[int, UsageEvent]] = []
            for index, raw in enumerate(inputs):
                try:
                    event = new_usage_event(
                        org_id=raw.org_id,
                        metric=raw.metric,
                        quantity=raw.quantity,
                        idempotency_key=raw.idempotency_key,
                        occurred_at=raw.occurred_at,
                        received_at=received_at,
                        catalogue=catalogue,
                        window=self._window,
                    )
                except BillingError as exc:
                    outcomes[index] = UsageOutcome(RecordStatus.REFUSED, None, exc)
                else:
                    valid.append((index, event))
            unknown = await self._ensure_orgs_for_usage(
                unit, {event.org_id for _, event in valid}, received_at
            )
            for index, event in valid:
                if event.org_id in unknown:
                    outcomes[index] = UsageOutcome(
                        RecordStatus.REFUSED,
                        event,
                        OrgNotFound(
                            f"unknown org {event.org_id!r} (BILLING_AUTO_CREATE_ORGS is false)",
                            org_id=event.org_id,
                        ),
                    )
            countable = [(i, e) for i, e in valid if e.org_id not in unknown]
            statuses = await self._ingest(unit, [event for _, event in countable])
            for (index, event), status in zip(countable, statuses, strict=True):
                error = (
                    None
                    if status is not RecordStatus.CONFLICT
                    else IdempotencyConflict(
                        f"idempotency key {event.idempotency_key!r} was already used for org "
                        f"{event.org_id!r} with a different metric, quantity or event time",
                        org_id=event.org_id,
                        idempotency_key=event.idempotency_key,
                    )
                )
                outcomes[index] = UsageOutcome(
                    RecordStatus.REFUSED if error else status, event, error
                )
        return UsageBatchResult(tuple(o for o in outcomes if o is not None))

    async def _ingest(self, unit: _Unit, events: Sequence[UsageEvent]) -> list[RecordStatus]:
        """Insert new events and add them to their counters, set-based; one status per event
        (ACCEPTED, DUPLICATE, or CONFLICT for a reused key with a different payload)."""
        if not events:
            return []
        first: dict[tuple[str, str], UsageEvent] = {}
        for event in events:  # a key repeated inside the batch is judged against its first use
            first.setdefault((event.org_id, event.idempotency_key), event)
        inserted = await unit.usage.insert_events(list(first.values()))
        await unit.usage.add_to_counters(
            counter_increments(e for key, e in first.items() if key in inserted), self._clock()
        )
        stored = await unit.usage.get_events([key for key in first if key not in inserted])
        statuses = []
        for event in events:
            key = (event.org_id, event.idempotency_key)
            if key in inserted and event is first[key]:
                statuses.append(RecordStatus.ACCEPTED)
                continue
            original = first[key] if key in inserted else stored.get(key, first[key])
            statuses.append(
                RecordStatus.DUPLICATE if event.is_replay_of(original) else RecordStatus.CONFLICT
            )
        return statuses

    async def _ensure_orgs_for_usage(
        self, unit: _Unit, org_ids: set[str], now: datetime
    ) -> set[str]:
        """Create and seed the orgs not seen before, if allowed; returns those left unknown."""
        missing = org_ids - await unit.orgs.existing_org_ids(org_ids)
        if not missing or not self._settings.auto_create_orgs:
            return missing
        plan = await self._default_plan(unit)
        await unit.orgs.ensure_orgs(missing, now)
        await unit.orgs.seed_billing_states(
            new_trial_state(org_id, plan.slug, now, self._settings.trial_days) for org_id in missing
        )
        return set()

    async def update_usage_counters(
        self,
        org_id: str,
        increments: Mapping[str, int],
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """Best effort: record each metric's increment, and never raise into the caller.

        One transaction; each metric is judged alone, as in a batch. Returns whether all were
        recorded; a failure is logged and counted in `tracking_failures`. With
        `idempotency_key`, each metric's event is keyed `"{idempotency_key}:{metric}"`, so a
        retried call counts once.
        """
        base_key = idempotency_key or uuid.uuid4().hex
        try:
            result = await self.record_usage_batch(
                [
                    UsageInput(org_id, metric, quantity, f"{base_key}:{metric}", occurred_at)
                    for metric, quantity in increments.items()
                ]
            )
            errors = [outcome.error for outcome in result.outcomes if outcome.error]
            if errors:
                raise errors[0]
        except Exception as exc:  # best-effort by contract: the product must not fail
            self.tracking_failures += 1
            level = logging.WARNING if isinstance(exc, BillingError) else logging.ERROR
            logger.log(
                level,
                "usage for org %r not recorded: %s",
                org_id,
                exc,
                exc_info=not isinstance(exc, BillingError),
            )
            return False
        return True

    async def get_org_usage_for_current_period(self, org_id: str) -> PeriodUsage:
        """What the org has used in the current calendar month (UTC)."""
        period = BillingPeriod.containing(self._clock())
        async with self._transaction() as unit:
            await self._require_org(unit, org_id)
            return await self._period_usage(unit, org_id, period)

    async def _period_usage(self, unit: _Unit, org_id: str, period: BillingPeriod) -> PeriodUsage:
        counters = await unit.usage.counters_for_period(org_id, period.key)
        seats = await unit.orgs.count_members(org_id)
        used: dict[str, int] = {}
        peaks: dict[str, int] = {}
        for metric in await self._metrics(unit):
            used[metric.key], peak = used_and_peak(metric, counters.get(metric.key, 0), seats)
            if peak is not None:
                peaks[metric.key] = peak
        return PeriodUsage(org_id=org_id, period=period, used=used, peaks=peaks)

    # --- summary and quota -----------------------------------------------------------------

    async def build_org_billing_summary(self, org_id: str) -> OrgBillingSummary:
        """Plan, state, period, and each metric's usage against the org's effective limit."""
        async with self._transaction() as unit:
            return await self._summary(unit, org_id)

    async def _summary(self, unit: _Unit, org_id: str) -> OrgBillingSummary:
        now = self._clock()
        period = BillingPeriod.containing(now)
        state = await self._ensure_state(unit, org_id)
        plan = await unit.plans.get_plan(state.plan_slug)
        if plan is None:  # prevented by the foreign key
            raise PlanNotFound(f"org {org_id!r} is on missing plan {state.plan_slug!r}")
        return build_summary(
            plan=plan,
            state=state,
            period=period,
            catalogue=await self._metrics(unit),
            counters=await unit.usage.counters_for_period(org_id, period.key),
            seat_count=await unit.orgs.count_members(org_id),
            overrides=await unit.orgs.get_limit_overrides(org_id),
            now=now,
        )

    async def build_org_dashboard(
        self, org_id: str, *, months: int = 6, include_plans: bool = False
    ) -> OrgDashboard:
        """The summary, this month's usage per day, the previous `months` months' totals and,
        for admins, the plans on offer: one transaction, for the billing page."""
        async with self._transaction() as unit:
            summary = await self._summary(unit, org_id)
            period = oldest = summary.period
            for _ in range(months):
                oldest = oldest.previous()
            per_day = await unit.usage.daily_totals(org_id, period.key)
            past = await unit.usage.counters_between(org_id, oldest.key, period.key)
            plans = await unit.plans.list_plans() if include_plans else []
        days = days_so_far(period, summary.generated_at)
        recordable = [line.metric.key for line in summary.usage if line.peak is None]
        history = []
        month = oldest
        while month != period:
            history.append(
                (
                    month,
                    {
                        line.metric.key: past.get((month.key, line.metric.key), 0)
                        for line in summary.usage
                    },
                )
            )
            month = month.next()
        return OrgDashboard(
            summary=summary,
            daily={
                key: tuple((day, per_day.get((day, key), 0)) for day in days) for key in recordable
            },
            history=tuple(history),
            plans=tuple(plans),
        )

    async def check_org_quota(self, org_id: str, metric: str, amount: int = 1) -> QuotaDecision:
        """May the org use `amount` more of `metric`? Soft limits: always allowed, and says
        whether the limit is or would be exceeded."""
        requested = validate_quantity(amount)
        period = BillingPeriod.containing(self._clock())
        async with self._read() as unit:
            catalogue = {m.key: m for m in await self._metrics(unit)}
            if metric not in catalogue:
                raise UnknownMetric(f"unknown metric {metric!r}", field="metric")
            inputs = await unit.usage.quota_inputs(org_id, period.key, metric)
        if inputs is None:  # first touch: seed the state, then ask again
            async with self._transaction() as unit:
                await self._ensure_state(unit, org_id)
                inputs = await unit.usage.quota_inputs(org_id, period.key, metric)
        assert inputs is not None
        return _decision(catalogue[metric], inputs, requested)


def _decision(metric: Metric, inputs: QuotaInputs, requested: int) -> QuotaDecision:
    used, _ = used_and_peak(metric, inputs.counted, inputs.members)
    limit = limit_after_overrides(inputs.plan_included, metric.key, inputs.overrides)
    return decide(metric.key, used, limit, requested)

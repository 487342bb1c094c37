"""The kernel: every capability's service, built in one place for the HTTP app, the billing
page, the CLI and the in-process SDK transport.

    kernel = Kernel(Database(url), settings)
    await kernel.usage.record("acme", "tokens", 1532, idempotency_key="req-1")
    summary = await kernel.summary.summary("acme")

Each service method runs in a transaction of its own, or in the caller's unit of work when
it is given one (`async with kernel.transaction() as uow: ...`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from billing_kernel.alerts.service import AlertService
from billing_kernel.auth.service import ApiKeyCache, ApiKeyService
from billing_kernel.compat.service import CompatService
from billing_kernel.config import Settings
from billing_kernel.credit_notes.service import CreditNoteService
from billing_kernel.credits.service import CreditService
from billing_kernel.db.database import Database
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.discounts.service import DiscountService
from billing_kernel.events.service import EventLog
from billing_kernel.features.service import FeatureService
from billing_kernel.invoices.service import InvoiceService
from billing_kernel.members.service import MemberService
from billing_kernel.metrics.service import CatalogueCache, MetricService
from billing_kernel.notifications.outbound import Resolver, system_resolver
from billing_kernel.notifications.service import NotificationService
from billing_kernel.orgs.service import OrgService
from billing_kernel.payments.gateway import StripeGateway
from billing_kernel.payments.service import PaymentService
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.service import QuotaService
from billing_kernel.reservations.service import ReservationService
from billing_kernel.sandbox.rules import MovableClock
from billing_kernel.sandbox.service import SandboxService
from billing_kernel.subscriptions.service.changes import PlanChangeService
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService
from billing_kernel.summary.service import SummaryService
from billing_kernel.telemetry.service import TelemetryService
from billing_kernel.usage.service import (
    PartitionService,
    RetentionService,
    UsageReader,
    UsageService,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _ProcessState:
    """What a kernel and its per-user views keep between calls."""

    catalogue: CatalogueCache = field(default_factory=CatalogueCache)
    api_keys: ApiKeyCache = field(default_factory=ApiKeyCache)
    resolver: Resolver = system_resolver
    """How outbound URLs' hosts are resolved (a test resolver in tests)."""
    stripe: StripeGateway | None = None
    """Stripe's client, made once (its connection pool shared by every per-user view)."""
    stripe_made: bool = False


class Kernel:
    """The services of one deployment. Safe to share across tasks."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
        acting_user: str | None = None,
        reads_may_lag: bool = False,
        resolver: Resolver | None = None,
        _state: _ProcessState | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        if clock is None:  # in dev mode, a clock the sandbox may move; else real time
            clock = MovableClock() if settings.dev_mode else utc_now
        self._clock = clock
        self._state = _state or _ProcessState()
        if resolver is not None:
            self._state.resolver = resolver
        self._acting_user = acting_user
        self._tx = tx = Transactions(database, acting_user=acting_user, reads_may_lag=reads_may_lag)
        state = self._state
        self.metrics = MetricService(tx, state.catalogue, clock)
        self.plans = PlanService(tx, self.metrics, clock)
        self.events = EventLog(tx)
        self.alerts = AlertService(tx, clock, self.metrics, self.plans, self.events)
        self.orgs = OrgService(tx, settings, clock, self.plans)
        self.subscriptions = SubscriptionService(
            tx, clock, plans=self.plans, orgs=self.orgs, alerts=self.alerts
        )
        self.usage = UsageService(tx, settings, clock, self.metrics, self.orgs, self.alerts)
        self.usage_reader = UsageReader(tx, clock, self.metrics, self.orgs)
        self.partitions = PartitionService(tx, clock)
        self.retention = RetentionService(
            tx,
            clock,
            self.orgs,
            months=settings.event_retention_months,
            max_event_age=timedelta(days=settings.max_event_age_days),
        )
        self.members = MemberService(tx, clock, self.orgs, self.usage)
        self.reservations = ReservationService(tx, clock, self.usage)
        self.quota = QuotaService(
            tx,
            settings,
            clock,
            self.metrics,
            self.plans,
            self.orgs,
            self.subscriptions,
            self.usage,
            self.reservations,
            self.alerts,
        )
        self.features = FeatureService(
            tx,
            clock,
            metrics=self.metrics,
            plans=self.plans,
            orgs=self.orgs,
            subscriptions=self.subscriptions,
            quota=self.quota,
        )
        self.summary = SummaryService(
            tx,
            clock,
            metrics=self.metrics,
            plans=self.plans,
            orgs=self.orgs,
            subscriptions=self.subscriptions,
            members=self.members,
            usage=self.usage_reader,
            quota=self.quota,
        )
        self.credits = CreditService(tx, clock)
        self.discounts = DiscountService(
            tx, clock, plans=self.plans, orgs=self.orgs, subscriptions=self.subscriptions
        )
        self.invoices = InvoiceService(
            tx,
            settings,
            clock,
            metrics=self.metrics,
            plans=self.plans,
            subscriptions=self.subscriptions,
            quota=self.quota,
            summary=self.summary,
            members=self.members,
            usage=self.usage_reader,
            events=self.events,
            credits=self.credits,
            discounts=self.discounts,
        )
        self.plan_changes = PlanChangeService(
            tx,
            settings,
            clock,
            plans=self.plans,
            subscriptions=self.subscriptions,
            invoices=self.invoices,
            quota=self.quota,
        )
        self.notifications = NotificationService(tx, settings, clock, self.orgs, state.resolver)
        self.api_keys = ApiKeyService(tx, settings, clock, state.api_keys)
        self.telemetry = TelemetryService(
            tx, clock, timedelta(hours=settings.late_event_grace_hours)
        )
        self.sandbox = SandboxService(
            tx, settings, clock if isinstance(clock, MovableClock) else None, self.invoices
        )
        self.payments = PaymentService(
            tx,
            clock,
            self._stripe(),
            webhook_secret=None
            if settings.stripe_webhook_secret is None
            else settings.stripe_webhook_secret.get_secret_value(),
            dunning_days=settings.dunning_schedule(),
            invoices=self.invoices,
            subscriptions=self.subscriptions,
            orgs=self.orgs,
            members=self.members,
            events=self.events,
        )
        self.credit_notes = CreditNoteService(
            tx,
            clock,
            self._stripe(),
            invoices=self.invoices,
            payments=self.payments,
            credits=self.credits,
        )
        self.compat = CompatService(
            tx,
            usage=self.usage,
            usage_reader=self.usage_reader,
            orgs=self.orgs,
            summary=self.summary,
            invoices=self.invoices,
            quota=self.quota,
        )

    def now(self) -> datetime:
        """The time on the kernel's clock (what its services take for now)."""
        return self._clock()

    @classmethod
    def open(cls, settings: Settings, *, resolver: Resolver | None = None) -> Kernel:
        """A kernel on a database pool of its own (BILLING_DATABASE_URL, BILLING_DB_POOL_SIZE,
        BILLING_DATABASE_DIRECT_URL, BILLING_DATABASE_REPLICA_URL), as the HTTP app and the
        CLI run it; `aclose()` closes the pool."""
        database = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            direct_url=settings.database_direct_url,
            replica_url=settings.database_replica_url,
            replica_max_lag=settings.replica_max_lag_seconds,
        )
        return cls(database, settings, resolver=resolver)

    async def aclose(self) -> None:
        """Close the database pool (for a kernel from `open`), and Stripe's connections."""
        if self._state.stripe is not None:
            await self._state.stripe.aclose()
        await self.database.dispose()

    def _stripe(self) -> StripeGateway | None:
        """Stripe, when the deployment has a key: made once per kernel and its views."""
        if not self._state.stripe_made:
            self._state.stripe, self._state.stripe_made = stripe_gateway(self.settings), True
        return self._state.stripe

    def for_user(self, user_id: str) -> Kernel:
        """The same kernel, with every transaction confined to the user's orgs by row-level
        security (on PostgreSQL). Used for requests made by a signed-in user."""
        return Kernel(
            self.database, self.settings, clock=self._clock, acting_user=user_id, _state=self._state
        )

    def from_replica(self) -> Kernel:
        """The same kernel (for the same user), its reads served by the read replica when
        there is one no more than BILLING_REPLICA_MAX_LAG_SECONDS behind: for what may show
        a state seconds old (the billing page, read-back lists, exports), never for a
        decision or for what must show the caller's own writes. Writes still go to the
        primary."""
        return Kernel(
            self.database,
            self.settings,
            clock=self._clock,
            acting_user=self._acting_user,
            reads_may_lag=True,
            _state=self._state,
        )

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work for several reads that share one snapshot where it matters (a
        user's reads run in one transaction); it must not write."""
        async with self._tx.read() as uow:
            yield uow

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work for several service calls: committed when the block ends, rolled
        back, with every call's writes, if it raises."""
        async with self._tx.begin() as uow:
            yield uow


def stripe_gateway(settings: Settings) -> StripeGateway | None:
    """Stripe, when the deployment has a key (BILLING_STRIPE_API_KEY)."""
    if settings.stripe_api_key is None:
        return None
    return StripeGateway(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)

"""Delivering events at least once, on every channel, with a stable id.

Events are written by `alerts` in the transaction of what they are about (the outbox). The
delivery worker (`worker.py`) turns each into one delivery per target (`dispatch`: each
webhook endpoint that wants it, the org's Slack, the org's owners' and admins' email), then
claims due deliveries one attempt at a time (`claim`: counted and leased, so that several
workers never send one attempt twice and a worker that dies lets its attempt go), sends
them, and records each attempt (`record`): delivered, or tried again later by the retry
schedule, or failed when it is spent.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing_kernel.common.validation import validate_id, validate_text
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import DeliveryNotFound, EndpointNotFound, InvalidInput
from billing_kernel.events.rules import EventType
from billing_kernel.notifications.outbound import (
    Destination,
    Resolver,
    destination,
    system_resolver,
)
from billing_kernel.notifications.repository import NotificationRepository
from billing_kernel.notifications.rules import (
    TOLD_TO_PEOPLE,
    Attempt,
    Channel,
    ChannelSettings,
    Claimed,
    Delivery,
    DeliveryStatus,
    Endpoint,
    new_secret,
    next_attempt,
    told_to_people,
    validate_url,
    wants,
)
from billing_kernel.orgs.service import OrgService

logger = logging.getLogger(__name__)

EMAIL_TARGET = "owners"
SLACK_TARGET = "slack"
LEASE_MARGIN = timedelta(seconds=1)
PRUNE_BATCH = 1_000
"""Billing events forgotten in one transaction by `prune`: a short one, however many are due."""
"""A claimed attempt is held for twice the attempt's time limit and this: long enough for any
attempt to finish and be recorded, short enough that one a dead worker held is soon sent
again."""


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed attempt and where it goes."""

    claimed: Claimed
    endpoint: Endpoint | None = None
    """For a webhook: its endpoint (None: removed since; the attempt fails)."""
    slack_url: str | None = None

    @property
    def attempt(self) -> int:
        return self.claimed.delivery.attempts


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    ok: bool
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    skipped: bool = False
    """Nothing to send to (no email address): done, not retried."""
    final: bool = False
    """No retry can succeed (the endpoint was removed)."""


class NotificationService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        orgs: OrgService,
        resolve: Resolver = system_resolver,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._orgs = orgs
        self._resolve = resolve
        self._email_off_said = False
        self._random = random.Random()

    # Endpoints

    async def add_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] = (),
        org_id: str | None = None,
        description: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> Endpoint:
        """Register a webhook endpoint for one org's events (or, without `org_id`, every
        org's) of `event_types` (none: all); the answer holds its signing secret, which is
        never shown again."""
        url = validate_url(url, "url")
        await self._check_outbound(url, "url")
        types = tuple(sorted({_event_type(t) for t in event_types}))
        description = validate_text(description, "description", 200)
        async with self._tx.begin(uow) as unit:
            if org_id is not None:
                await self._orgs.require(validate_id(org_id, "org_id"), unit)
            endpoint = Endpoint(
                endpoint_id=_time_ordered_id("we_"),
                org_id=org_id,
                url=url,
                event_types=types,
                description=description,
                secret=new_secret(),
                previous_secret=None,
                previous_until=None,
                created_at=self._clock(),
                disabled_at=None,
            )
            await NotificationRepository(unit).add_endpoint(endpoint)
            return endpoint

    async def endpoint(
        self, endpoint_id: str, *, org_id: str | None = None, uow: UnitOfWork | None = None
    ) -> Endpoint:
        """An enabled endpoint; EndpointNotFound for another org's when `org_id` is given."""
        async with self._tx.read(uow) as unit:
            found = await NotificationRepository(unit).endpoint(endpoint_id)
        if (
            found is None
            or found.disabled_at is not None
            or (org_id is not None and found.org_id != org_id)
        ):
            raise EndpointNotFound(f"no webhook endpoint {endpoint_id!r}", endpoint_id=endpoint_id)
        return found

    async def endpoints(
        self,
        *,
        org_id: str | None,
        only_org: bool = False,
        after: str | None = None,
        limit: int = 50,
        uow: UnitOfWork | None = None,
    ) -> list[Endpoint]:
        async with self._tx.read(uow) as unit:
            return await NotificationRepository(unit).endpoints(
                org_id=org_id, only_org=only_org, after=after, limit=limit
            )

    async def remove_endpoint(
        self, endpoint_id: str, *, org_id: str | None = None, uow: UnitOfWork | None = None
    ) -> None:
        """Stop sending to the endpoint; its pending deliveries end failed."""
        async with self._tx.begin(uow) as unit:
            await self.endpoint(endpoint_id, org_id=org_id, uow=unit)
            repo, now = NotificationRepository(unit), self._clock()
            await repo.disable_endpoint(endpoint_id, now)
            await repo.fail_for_endpoint(endpoint_id, now)

    async def rotate_secret(
        self, endpoint_id: str, *, org_id: str | None = None, uow: UnitOfWork | None = None
    ) -> Endpoint:
        """A new signing secret for the endpoint; the old one goes on signing too (a second
        signature in `webhook-signature`) for BILLING_WEBHOOK_SECRET_OVERLAP_HOURS, so that
        the receiver can switch without losing a message."""
        async with self._tx.begin(uow) as unit:
            await self.endpoint(endpoint_id, org_id=org_id, uow=unit)
            overlap = timedelta(hours=self._settings.webhook_secret_overlap_hours)
            repo = NotificationRepository(unit)
            await repo.rotate_secret(endpoint_id, new_secret(), self._clock() + overlap)
            found = await repo.endpoint(endpoint_id)
            assert found is not None
            return found

    async def destination(self, url: str, field: str) -> Destination:
        """Where a request to `url` may go, checked now (see `outbound.destination`):
        UrlNotAllowed naming `field` for a host that does not resolve or, unless
        BILLING_ALLOW_PRIVATE_WEBHOOKS, one that is not public."""
        return await destination(
            url,
            self._resolve,
            allow_private=self._settings.private_webhooks_allowed(),
            field=field,
        )

    async def _check_outbound(self, url: str, field: str) -> None:
        """At registration: UrlNotAllowed unless `url` reaches only public addresses now
        (nothing to check when BILLING_ALLOW_PRIVATE_WEBHOOKS allows every address)."""
        if not self._settings.private_webhooks_allowed():
            await self.destination(url, field)

    # An org's channels

    async def channel_settings(self, org_id: str, uow: UnitOfWork | None = None) -> ChannelSettings:
        async with self._tx.read(uow) as unit:
            await self._orgs.require(org_id, unit)
            return await NotificationRepository(unit).settings(org_id)

    async def put_channel_settings(
        self,
        org_id: str,
        *,
        slack_webhook_url: str | None,
        email: bool,
        email_events: Collection[EventType] = TOLD_TO_PEOPLE,
        uow: UnitOfWork | None = None,
    ) -> ChannelSettings:
        """Where the org's alerts go besides webhooks: a Slack incoming webhook (None: no
        Slack), and whether its owners and admins get them by email, and which types."""
        if slack_webhook_url is not None:
            slack_webhook_url = validate_url(slack_webhook_url, "slack_webhook_url")
            await self._check_outbound(slack_webhook_url, "slack_webhook_url")
        settings = ChannelSettings(slack_webhook_url, bool(email), frozenset(email_events))
        async with self._tx.begin(uow) as unit:
            await self._orgs.require(org_id, unit)
            await NotificationRepository(unit).put_settings(org_id, settings, self._clock())
            return settings

    # The worker's steps

    @property
    def email_on(self) -> bool:
        return self._settings.smtp_url is not None

    async def prune(self, older_than: timedelta, *, batch: int = PRUNE_BATCH) -> int:
        """Forget the billing events made more than `older_than` ago whose deliveries have
        all finished, with their deliveries and attempts (BILLING_DELIVERY_RETENTION_DAYS):
        `batch` events a transaction, never one long one, until none is left; how many."""
        before = self._clock() - older_than
        return await self._tx.in_batches(
            lambda unit: NotificationRepository(unit).prune(before, batch), batch
        )

    async def dispatch(self, limit: int = 100) -> int:
        """Make the deliveries of up to `limit` events not yet dispatched, in one
        transaction with marking them dispatched; returns how many events it took."""
        async with self._tx.begin() as unit:
            repo, now = NotificationRepository(unit), self._clock()
            events = await repo.undispatched(limit)
            if not events:
                return 0
            endpoints, settings = await repo.targets({e.org_id for e in events})
            people = told_to_people(events)
            # By the types an org chose; the default's are the Slack ones, worked out once.
            emailed: dict[frozenset[EventType], set[str]] = {TOLD_TO_PEOPLE: people}
            rows: list[dict[str, object]] = []
            for event in events:
                # The operators' events go to deployment-wide endpoints alone.
                chosen = (
                    ChannelSettings(email=False)
                    if event.for_operators
                    else settings.get(event.org_id, ChannelSettings())
                )
                readers = (None,) if event.for_operators else (None, event.org_id)
                targets = [
                    (Channel.WEBHOOK, e.endpoint_id)
                    for e in endpoints
                    if e.org_id in readers and wants(e.event_types, event.event_type)
                ]
                # A back-under, or 80 % beside 100 %: webhooks only (email: unless chosen).
                if chosen.slack_webhook_url and event.event_id in people:
                    targets.append((Channel.SLACK, SLACK_TARGET))
                types = chosen.email_events
                if types not in emailed:
                    emailed[types] = told_to_people(events, types)
                if chosen.email and event.event_id in emailed[types]:
                    if self.email_on:
                        targets.append((Channel.EMAIL, EMAIL_TARGET))
                    elif not self._email_off_said:
                        self._email_off_said = True
                        logger.info("alert emails are off: BILLING_SMTP_URL is not set")
                rows += [
                    {
                        "delivery_id": _time_ordered_id("dlv_"),
                        "event_id": event.event_id,
                        "org_id": event.org_id,
                        "channel": channel.value,
                        "target": target,
                        "status": DeliveryStatus.PENDING.value,
                        "attempts": 0,
                        "attempt_base": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for channel, target in targets
                ]
            await repo.add_deliveries(rows)
            await repo.mark_dispatched(events, now)
            return len(events)

    async def claim(self, limit: int = 20) -> list[Job]:
        """Take up to `limit` due deliveries for one attempt each, leased for the attempt's
        time and a margin."""
        async with self._tx.begin() as unit:
            repo, now = NotificationRepository(unit), self._clock()
            lease = 2 * timedelta(seconds=self._settings.delivery_timeout_seconds) + LEASE_MARGIN
            claimed = await repo.claim(now, now + lease, limit)
            jobs = []
            for item in claimed:
                delivery = item.delivery
                if delivery.channel is Channel.WEBHOOK:
                    endpoint = await repo.endpoint(delivery.target)
                    if endpoint is not None and endpoint.disabled_at is not None:
                        endpoint = None
                    jobs.append(Job(item, endpoint=endpoint))
                elif delivery.channel is Channel.SLACK:
                    slack = (await repo.settings(delivery.org_id)).slack_webhook_url
                    jobs.append(Job(item, slack_url=slack))
                else:
                    jobs.append(Job(item))
            return jobs

    async def record(self, job: Job, outcome: Outcome) -> DeliveryStatus:
        """Log the attempt and move the delivery on: delivered; skipped; pending again at
        the schedule's next time; or failed when the schedule is spent."""
        delivery = job.claimed.delivery
        now = self._clock()
        retry_at = None
        if outcome.ok:
            status = DeliveryStatus.DELIVERED
        elif outcome.skipped:
            status = DeliveryStatus.SKIPPED
        else:
            tried = delivery.attempts - delivery.attempt_base
            retry_at = (
                None
                if outcome.final
                else next_attempt(
                    tried, now, self._random, schedule=self._settings.delivery_retry_seconds
                )
            )
            status = DeliveryStatus.FAILED if retry_at is None else DeliveryStatus.PENDING
        attempt = Attempt(
            attempt=job.attempt,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            error=outcome.error,
            outcome=(
                "delivered"
                if status is DeliveryStatus.DELIVERED
                else "retry"
                if status is DeliveryStatus.PENDING
                else status.value
            ),
        )
        async with self._tx.begin() as unit:
            await NotificationRepository(unit).record_attempt(
                delivery, attempt, status, retry_at, now
            )
        return status

    # The delivery log

    async def deliveries(
        self,
        *,
        org_id: str | None,
        only_org: bool = False,
        endpoint_id: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: str | None = None,
        after: str | None = None,
        limit: int = 50,
        uow: UnitOfWork | None = None,
    ) -> list[tuple[Delivery, list[Attempt]]]:
        """Deliveries newest first, each with its attempts."""
        async with self._tx.read(uow) as unit:
            repo = NotificationRepository(unit)
            found = await repo.list_deliveries(
                org_id=org_id,
                only_org=only_org,
                target=endpoint_id,
                status=status,
                event_id=event_id,
                after=after,
                limit=limit,
            )
            attempts = await repo.attempts(found)
            return [(d, attempts[d.delivery_id]) for d in found]

    async def delivery(
        self, delivery_id: str, *, org_id: str | None = None, uow: UnitOfWork | None = None
    ) -> tuple[Delivery, list[Attempt]]:
        """A delivery with its attempts; with `org_id`, only one of that org's own (not to
        a deployment-wide endpoint): DeliveryNotFound otherwise."""
        async with self._tx.read(uow) as unit:
            repo = NotificationRepository(unit)
            found = await repo.delivery(delivery_id, only_org=org_id)
            if found is None:
                raise DeliveryNotFound(f"no delivery {delivery_id!r}", delivery_id=delivery_id)
            return found, (await repo.attempts([found]))[delivery_id]

    async def replay(
        self, delivery_id: str, *, org_id: str | None = None, uow: UnitOfWork | None = None
    ) -> tuple[Delivery, list[Attempt]]:
        """Send a delivery again, with the same `webhook-id`, from the start of the retry
        schedule (delivered ones too: a receiver that lost what it got)."""
        async with self._tx.begin(uow) as unit:
            found, _ = await self.delivery(delivery_id, org_id=org_id, uow=unit)
            await NotificationRepository(unit).replay(found, self._clock())
            return await self.delivery(delivery_id, uow=unit)


def _time_ordered_id(prefix: str) -> str:
    """An id whose order is the order it was made in (to the millisecond; random after)."""
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def _event_type(value: object) -> str:
    try:
        return EventType(str(value)).value
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise InvalidInput(
            f"unknown event type {value!r}; the types are {known}", field="event_types"
        ) from None

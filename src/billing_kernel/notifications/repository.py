"""Webhook endpoints, an org's channel settings, and the deliveries the worker claims."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, tuple_, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import (
    billing_events,
    deliveries,
    delivery_attempts,
    org_notification_settings,
    webhook_endpoints,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.events.rules import Event, EventType
from billing_kernel.notifications.rules import (
    TOLD_TO_PEOPLE,
    Attempt,
    Channel,
    ChannelSettings,
    Claimed,
    Delivery,
    DeliveryStatus,
    Endpoint,
)


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        endpoint_id=row.endpoint_id,
        org_id=row.org_id,
        url=row.url,
        event_types=tuple(t for t in row.event_types.split(",") if t),
        description=row.description,
        secret=row.secret,
        previous_secret=row.previous_secret,
        previous_until=row.previous_until,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def _own(org_id: str) -> ColumnElement[bool]:
    """The deliveries that are the org's own: of its events, and by its own channels (its
    endpoints, its Slack, its email), not to a deployment-wide endpoint, whose answers are
    the operators' (as every delivery of the operators' events is)."""
    dl, ep = deliveries.c, webhook_endpoints.c
    its_endpoints = select(ep.endpoint_id).where(ep.org_id == org_id)
    return and_(
        dl.org_id == org_id,
        or_(dl.channel != Channel.WEBHOOK.value, dl.target.in_(its_endpoints)),
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        org_id=row.org_id,
        channel=Channel(row.channel),
        target=row.target,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        attempt_base=row.attempt_base,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        last_status_code=row.last_status_code,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


class NotificationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    # Endpoints

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        await self._conn.execute(
            webhook_endpoints.insert().values(
                endpoint_id=endpoint.endpoint_id,
                org_id=endpoint.org_id,
                url=endpoint.url,
                event_types=",".join(endpoint.event_types),
                description=endpoint.description,
                secret=endpoint.secret,
                created_at=endpoint.created_at,
            )
        )

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        found = (
            await self._conn.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.endpoint_id == endpoint_id)
            )
        ).first()
        return None if found is None else _endpoint(found)

    async def endpoints(
        self, *, org_id: str | None, only_org: bool, after: str | None, limit: int
    ) -> list[Endpoint]:
        """Endpoints in id order after `after`, enabled ones only: with `only_org`, those of
        `org_id` alone; else all, or those of `org_id` when it is given."""
        ep = webhook_endpoints.c
        query = select(webhook_endpoints).where(ep.disabled_at.is_(None))
        if only_org or org_id is not None:
            query = query.where(ep.org_id == org_id)
        if after is not None:
            query = query.where(ep.endpoint_id > after)
        result = await self._conn.execute(query.order_by(ep.endpoint_id).limit(limit))
        return [_endpoint(row) for row in result]

    async def disable_endpoint(self, endpoint_id: str, now: datetime) -> None:
        ep = webhook_endpoints.c
        await self._conn.execute(
            update(webhook_endpoints)
            .where(ep.endpoint_id == endpoint_id, ep.disabled_at.is_(None))
            .values(disabled_at=now)
        )

    async def rotate_secret(self, endpoint_id: str, secret: str, previous_until: datetime) -> None:
        ep = webhook_endpoints.c
        await self._conn.execute(
            update(webhook_endpoints)
            .where(ep.endpoint_id == endpoint_id)
            .values(secret=secret, previous_secret=ep.secret, previous_until=previous_until)
        )

    # Org settings

    async def settings(self, org_id: str) -> ChannelSettings:
        found = (
            await self._conn.execute(
                select(org_notification_settings).where(
                    org_notification_settings.c.org_id == org_id
                )
            )
        ).first()
        return ChannelSettings() if found is None else _settings(found)

    async def put_settings(self, org_id: str, settings: ChannelSettings, now: datetime) -> None:
        values = {
            "slack_webhook_url": settings.slack_webhook_url,
            "email": settings.email,
            "email_events": (
                None
                if settings.email_events == TOLD_TO_PEOPLE
                else ",".join(sorted(settings.email_events))
            ),
        }
        stmt = upsert(self._conn, org_notification_settings).values(
            org_id=org_id, updated_at=now, **values
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[org_notification_settings.c.org_id],
                set_={**values, "updated_at": now},
            )
        )

    # The outbox

    async def undispatched(self, limit: int) -> list[Event]:
        """The oldest events no delivery was made for yet, locked for this transaction
        (others' workers skip them)."""
        ev = billing_events.c
        query = (
            select(billing_events).where(ev.dispatched_at.is_(None)).order_by(ev.seq).limit(limit)
        )
        if self._conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        result = await self._conn.execute(query)
        return [_event(row) for row in result]

    async def targets(self, org_ids: set[str]) -> tuple[list[Endpoint], dict[str, ChannelSettings]]:
        """The enabled endpoints that may want the orgs' events (theirs and the deployment's)
        and the orgs' settings."""
        ep, st = webhook_endpoints.c, org_notification_settings.c
        named = sorted(org_ids)
        endpoints = await self._conn.execute(
            select(webhook_endpoints).where(
                ep.disabled_at.is_(None), or_(ep.org_id.is_(None), ep.org_id.in_(named))
            )
        )
        settings = await self._conn.execute(
            select(org_notification_settings).where(st.org_id.in_(named))
        )
        return (
            [_endpoint(row) for row in endpoints],
            {row.org_id: _settings(row) for row in settings},
        )

    async def add_deliveries(self, rows: Sequence[dict[str, object]]) -> None:
        """New pending deliveries; one already made for its event and target is kept."""
        if rows:
            await self._conn.execute(
                upsert(self._conn, deliveries).on_conflict_do_nothing(
                    index_elements=[
                        deliveries.c.org_id,
                        deliveries.c.event_id,
                        deliveries.c.channel,
                        deliveries.c.target,
                    ]
                ),
                list(rows),
            )

    async def mark_dispatched(self, events: Sequence[Event], now: datetime) -> None:
        if events:
            ev = billing_events.c
            await self._conn.execute(
                update(billing_events)
                .where(tuple_(ev.org_id, ev.event_id).in_([(e.org_id, e.event_id) for e in events]))
                .values(dispatched_at=now)
            )

    # Attempts

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Claimed]:
        """Take up to `limit` deliveries due at `now` for one attempt each: counted, and held
        until `lease_until` (skipped by every other worker meanwhile)."""
        dl = deliveries.c
        due = (
            select(dl.org_id, dl.delivery_id)
            .where(
                dl.status == DeliveryStatus.PENDING.value,
                dl.next_attempt_at <= now,
                or_(dl.locked_until.is_(None), dl.locked_until <= now),
            )
            .order_by(dl.next_attempt_at)
            .limit(limit)
        )
        if self._conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        keys = [tuple(row) for row in await self._conn.execute(due)]
        if not keys:
            return []
        taken = tuple_(dl.org_id, dl.delivery_id).in_(keys)
        await self._conn.execute(
            update(deliveries)
            .where(taken)
            .values(attempts=dl.attempts + 1, locked_until=lease_until)
        )
        ev = billing_events.c
        result = await self._conn.execute(
            select(deliveries, ev.payload, ev.event_type)
            .join(billing_events, and_(ev.org_id == dl.org_id, ev.event_id == dl.event_id))
            .where(taken)
            .order_by(dl.next_attempt_at)
        )
        return [
            Claimed(delivery=_delivery(row), payload=row.payload, event=_event(row))
            for row in result
        ]

    async def record_attempt(
        self,
        delivery: Delivery,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> bool:
        """Log an attempt and move its delivery on, if the delivery is still at that attempt
        (a worker whose lease ran out and whose attempt was taken over logs it only)."""
        await self._conn.execute(
            upsert(self._conn, delivery_attempts)
            .values(
                org_id=delivery.org_id,
                delivery_id=delivery.delivery_id,
                attempt=attempt.attempt,
                started_at=attempt.started_at,
                duration_ms=attempt.duration_ms,
                status_code=attempt.status_code,
                error=attempt.error,
                outcome=attempt.outcome,
            )
            .on_conflict_do_nothing(
                index_elements=[
                    delivery_attempts.c.org_id,
                    delivery_attempts.c.delivery_id,
                    delivery_attempts.c.attempt,
                ]
            )
        )
        dl = deliveries.c
        finished = status is not DeliveryStatus.PENDING
        result = await self._conn.execute(
            update(deliveries)
            .where(
                dl.org_id == delivery.org_id,
                dl.delivery_id == delivery.delivery_id,
                dl.attempts == attempt.attempt,
                dl.status == DeliveryStatus.PENDING.value,
            )
            .values(
                status=status.value,
                locked_until=None,
                last_error=attempt.error,
                last_status_code=attempt.status_code,
                next_attempt_at=next_attempt_at or dl.next_attempt_at,
                finished_at=now if finished else None,
            )
            .returning(dl.delivery_id)
        )
        return result.first() is not None

    async def delivery(self, delivery_id: str, *, only_org: str | None = None) -> Delivery | None:
        """A delivery; with `only_org`, only one of that org's own (see `_own`)."""
        query = select(deliveries).where(deliveries.c.delivery_id == delivery_id)
        if only_org is not None:
            query = query.where(_own(only_org))
        found = (await self._conn.execute(query)).first()
        return None if found is None else _delivery(found)

    async def list_deliveries(
        self,
        *,
        org_id: str | None,
        only_org: bool,
        target: str | None,
        status: DeliveryStatus | None,
        event_id: str | None,
        after: str | None,
        limit: int,
    ) -> list[Delivery]:
        """Deliveries newest first (by id, which grows with time), filtered."""
        dl = deliveries.c
        query = select(deliveries)
        if only_org and org_id is not None:
            query = query.where(_own(org_id))
        elif org_id is not None:
            query = query.where(dl.org_id == org_id)
        for column, value in ((dl.target, target), (dl.event_id, event_id)):
            if value is not None:
                query = query.where(column == value)
        if status is not None:
            query = query.where(dl.status == status.value)
        if after is not None:
            query = query.where(dl.delivery_id < after)
        result = await self._conn.execute(query.order_by(dl.delivery_id.desc()).limit(limit))
        return [_delivery(row) for row in result]

    async def attempts(self, found_ones: Sequence[Delivery]) -> dict[str, list[Attempt]]:
        """The attempts of each delivery, by its id, in order."""
        found: dict[str, list[Attempt]] = {d.delivery_id: [] for d in found_ones}
        if not found_ones:
            return found
        at = delivery_attempts.c
        result = await self._conn.execute(
            select(delivery_attempts)
            .where(
                tuple_(at.org_id, at.delivery_id).in_(
                    [(d.org_id, d.delivery_id) for d in found_ones]
                )
            )
            .order_by(at.delivery_id, at.attempt)
        )
        for row in result:
            found[row.delivery_id].append(
                Attempt(
                    row.attempt,
                    row.started_at,
                    row.duration_ms,
                    row.status_code,
                    row.error,
                    row.outcome,
                )
            )
        return found

    async def replay(self, delivery: Delivery, now: datetime) -> None:
        """Send a delivery again from the start of the schedule, with the same id."""
        dl = deliveries.c
        await self._conn.execute(
            update(deliveries)
            .where(dl.org_id == delivery.org_id, dl.delivery_id == delivery.delivery_id)
            .values(
                status=DeliveryStatus.PENDING.value,
                attempt_base=dl.attempts,
                next_attempt_at=now,
                locked_until=None,
                finished_at=None,
            )
        )

    async def prune(self, before: datetime, limit: int) -> int:
        """Delete the oldest billing events (up to `limit`) made before `before` that were
        dispatched and whose every delivery has finished (none pending), with their
        deliveries and attempts; how many events."""
        e, d, a = billing_events.c, deliveries.c, delivery_attempts.c
        pending = (
            select(d.delivery_id)
            .where(
                d.org_id == e.org_id,
                d.event_id == e.event_id,
                d.status == DeliveryStatus.PENDING.value,
            )
            .exists()
        )
        doomed = [
            tuple(row)
            for row in await self._conn.execute(
                select(e.org_id, e.event_id)
                .where(e.created_at < before, e.dispatched_at.is_not(None), ~pending)
                .order_by(e.seq)
                .limit(limit)
            )
        ]
        if doomed:
            theirs = select(d.org_id, d.delivery_id).where(tuple_(d.org_id, d.event_id).in_(doomed))
            await self._conn.execute(
                delete(delivery_attempts).where(tuple_(a.org_id, a.delivery_id).in_(theirs))
            )
            await self._conn.execute(
                delete(deliveries).where(tuple_(d.org_id, d.event_id).in_(doomed))
            )
            await self._conn.execute(
                delete(billing_events).where(tuple_(e.org_id, e.event_id).in_(doomed))
            )
        return len(doomed)

    async def fail_for_endpoint(self, endpoint_id: str, now: datetime) -> None:
        """Pending deliveries to a removed endpoint end failed."""
        dl = deliveries.c
        await self._conn.execute(
            update(deliveries)
            .where(
                and_(
                    dl.channel == Channel.WEBHOOK.value,
                    dl.target == endpoint_id,
                    dl.status == DeliveryStatus.PENDING.value,
                )
            )
            .values(
                status=DeliveryStatus.FAILED.value,
                last_error="the endpoint was removed",
                finished_at=now,
                locked_until=None,
            )
        )


def _event(row: Any) -> Event:
    payload = json.loads(row.payload)
    return Event(
        event_id=payload["id"],
        event_type=EventType(row.event_type),
        org_id=row.org_id,
        created_at=_parse_time(payload["timestamp"]),
        data=payload["data"],
    )


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _settings(row: Any) -> ChannelSettings:
    """An org's channel settings as stored (`email_events` NULL: the default types)."""
    types = (
        TOLD_TO_PEOPLE
        if row.email_events is None
        else frozenset(EventType(text) for text in row.email_events.split(",") if text)
    )
    return ChannelSettings(row.slack_webhook_url, row.email, types)

"""Invoices and what they are computed from that no other capability serves: the
subscription history (written by `orgs`), the usage events each invoice billed, and the
deployment's invoice numbers."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update

from billing_kernel.db.lines import rank_last_first
from billing_kernel.db.numbers import take_number
from billing_kernel.db.tables import (
    invoice_lines,
    invoice_usage,
    invoices,
    orgs,
    subscription_history,
    usage_lines,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.invoices.rules import StoredInvoice, StoredLine, StoredUsage
from billing_kernel.metrics.rules import Position, Tally
from billing_kernel.orgs.rules import BillingStatus

COUNTER = "invoices"


_INVOICE_COLUMNS = [column.name for column in invoices.c]
_LINE_COLUMNS = list(StoredLine.__dataclass_fields__)


def _split_text(split: Mapping[str, int] | None) -> str | None:
    """What an invoice billed of each value priced apart, as stored (JSON object)."""
    if split is None:
        return None
    return json.dumps(dict(sorted(split.items())), separators=(",", ":"), ensure_ascii=False)


def _split_of(text: str | None) -> dict[str, int] | None:
    return None if text is None else {value: int(n) for value, n in json.loads(text).items()}


def _invoice(row: Any) -> StoredInvoice:
    return StoredInvoice(**{name: getattr(row, name) for name in _INVOICE_COLUMNS})


def _counted(as_of: StoredInvoice | None) -> ColumnElement[bool]:
    """The invoices that count: those not void; or, when the invoice `as_of` was made, those
    made before it and not void by then. A void is told by its correction (every void makes
    one in the same transaction): by number, so two changes at one clock reading still
    order."""
    i = invoices.c
    if as_of is None:
        return i.status != "void"
    correction = invoices.alias("correction")
    voided_by_then = (
        select(correction.c.invoice_id)
        .where(
            correction.c.replaces == i.invoice_id,
            correction.c.sequence <= as_of.sequence,
        )
        .exists()
    )
    return and_(i.sequence < as_of.sequence, or_(i.status != "void", ~voided_by_then))


Tallies = dict[tuple[date, str], Tally]
"""What lines come to, by period and metric."""


class InvoiceRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def history(
        self, org_id: str, before: datetime
    ) -> list[tuple[datetime, str, int, BillingStatus]]:
        """The org's changes made in force before `before`, in the order they were made:
        (from when, plan, plan version, status)."""
        h = subscription_history.c
        result = await self._conn.execute(
            select(h.valid_from, h.plan_slug, h.plan_version, h.status)
            .where(h.org_id == org_id, h.valid_from < before)
            .order_by(h.change_id)
        )
        return [
            (row.valid_from, row.plan_slug, row.plan_version, BillingStatus(row.status))
            for row in result
        ]

    async def lock_org(self, org_id: str) -> None:
        """Hold the org until the transaction ends, so that one close of its periods runs at
        a time (SQLite's transactions already hold the database write lock)."""
        if self._conn.dialect.name == "postgresql":
            query = select(orgs.c.org_id).where(orgs.c.org_id == org_id).with_for_update()
            await self._conn.execute(query)

    async def orgs_to_invoice(self, period_start: date, period_end: datetime) -> list[str]:
        """The orgs subscribed before `period_end` that have no invoice for the period yet,
        in id order."""
        h, i = subscription_history.c, invoices.c
        invoiced = (
            select(i.org_id)
            .where(i.org_id == h.org_id, i.period_start == period_start, i.status != "void")
            .exists()
        )
        result = await self._conn.execute(
            select(h.org_id)
            .where(h.valid_from < period_end, ~invoiced)
            .distinct()
            .order_by(h.org_id)
        )
        return list(result.scalars())

    async def first_change(self) -> datetime | None:
        """When the earliest subscription began (None: there is none)."""
        found = await self._conn.execute(select(func.min(subscription_history.c.valid_from)))
        value: datetime | None = found.scalar_one()
        return value

    async def unbilled(self, org_id: str, before: date, latest: Collection[str] = ()) -> Tallies:
        """The org's events of periods before `before` that no invoice billed yet (late
        events), by period and metric (the last line of those `latest` names)."""
        e = usage_lines.c
        return await self._tallies(
            [e.org_id == org_id, e.invoice_id.is_(None), e.period_start < before], latest
        )

    async def _tallies(
        self, where: Sequence[ColumnElement[bool]], latest: Collection[str]
    ) -> Tallies:
        """What the lines that pass `where` come to, by period and metric; for the metrics
        `latest` names, with the last line of each (by event time, then key)."""
        e = usage_lines.c
        result = await self._conn.execute(
            select(
                e.period_start, e.metric, func.sum(e.quantity), func.count(), func.max(e.quantity)
            )
            .where(*where)
            .group_by(e.period_start, e.metric)
        )
        tallies = {(row[0], row[1]): Tally(int(row[2]), int(row[3]), int(row[4])) for row in result}
        if not latest:
            return tallies
        rank = rank_last_first((e.period_start, e.metric), self._conn.dialect.name)
        ranked = (
            select(
                e.period_start,
                e.metric,
                e.occurred_at,
                e.idempotency_key,
                e.quantity,
                rank.label("rank"),
            )
            .where(*where, e.metric.in_(sorted(latest)))
            .subquery()
        )
        last = ranked.c
        for row in await self._conn.execute(
            select(
                last.period_start,
                last.metric,
                last.occurred_at,
                last.idempotency_key,
                last.quantity,
            ).where(last.rank == 1)
        ):
            key = (row.period_start, row.metric)
            tallies[key] = replace(
                tallies[key],
                last_at=Position(row.occurred_at, row.idempotency_key),
                last=row.quantity,
            )
        return tallies

    async def mark_events(
        self, org_id: str, invoice_id: str, *, through: date | None, moved_from: str | None
    ) -> Tallies:
        """Mark with `invoice_id` the org's events no invoice billed yet, of the periods
        `through` the given one (or those `moved_from` a voided invoice), and return what
        they add up to, by period and metric. The rows marked are exactly those counted:
        an event committed meanwhile is left for the org's next invoice."""
        e = usage_lines.c
        which = (
            e.invoice_id == moved_from
            if moved_from is not None
            else and_(e.invoice_id.is_(None), e.period_start <= through)
        )
        result = await self._conn.execute(
            update(usage_lines)
            .where(e.org_id == org_id, which)
            .values(invoice_id=invoice_id)
            .returning(e.period_start, e.metric, e.quantity, e.occurred_at, e.idempotency_key)
        )
        billed: Tallies = defaultdict(Tally)
        for period_start, metric, quantity, occurred_at, key in result:
            billed[period_start, metric] = billed[period_start, metric].plus(
                quantity, Position(occurred_at, key)
            )
        return dict(billed)

    async def billed_events(self, invoice_id: str, latest: Collection[str] = ()) -> Tallies:
        """What the events an invoice billed add up to, by period and metric (the last line
        of those `latest` names)."""
        return await self._tallies([usage_lines.c.invoice_id == invoice_id], latest)

    async def sample_keys(
        self, invoice_id: str, period_start: date, metric: str, limit: int
    ) -> list[str]:
        """Some of the idempotency keys of the events an invoice billed for a period and
        metric, in key order."""
        e = usage_lines.c
        result = await self._conn.execute(
            select(e.idempotency_key)
            .where(e.invoice_id == invoice_id, e.period_start == period_start, e.metric == metric)
            .order_by(e.idempotency_key)
            .limit(limit)
        )
        return list(result.scalars())

    async def usage_billed_before(
        self, org_id: str, period_start: date, as_of: StoredInvoice | None = None
    ) -> dict[str, int]:
        """What the org's invoices that count billed so far of each metric of a period: now,
        or when the invoice `as_of` was made (see `_counted`)."""
        u, i = invoice_usage.c, invoices.c
        query = (
            select(u.metric, func.sum(u.quantity))
            .join(invoices, and_(i.org_id == u.org_id, i.invoice_id == u.invoice_id))
            .where(i.org_id == org_id, u.period_start == period_start, _counted(as_of))
            .group_by(u.metric)
        )
        return {metric: int(total) for metric, total in await self._conn.execute(query)}

    async def split_billed_before(
        self, org_id: str, period_start: date, metric: str, as_of: StoredInvoice | None = None
    ) -> dict[str, int]:
        """What the org's invoices that count (now, or when `as_of` was made) billed so far
        of each value of a metric priced per value, in a period."""
        u, i = invoice_usage.c, invoices.c
        query = (
            select(u.split)
            .join(invoices, and_(i.org_id == u.org_id, i.invoice_id == u.invoice_id))
            .where(
                i.org_id == org_id,
                u.period_start == period_start,
                u.metric == metric,
                u.split.is_not(None),
                _counted(as_of),
            )
        )
        billed: dict[str, int] = defaultdict(int)
        for (text,) in await self._conn.execute(query):
            for value, quantity in (_split_of(text) or {}).items():
                billed[value] += quantity
        return dict(billed)

    async def last_billed(
        self, org_id: str, period_start: date, as_of: StoredInvoice | None = None
    ) -> dict[str, Position]:
        """Where the last line billed so far of each latest metric of a period stands, by
        the org's invoices that count (now, or when `as_of` was made)."""
        u, i = invoice_usage.c, invoices.c
        query = (
            select(u.metric, u.last_at, u.last_key)
            .join(invoices, and_(i.org_id == u.org_id, i.invoice_id == u.invoice_id))
            .where(
                i.org_id == org_id,
                u.period_start == period_start,
                u.last_at.is_not(None),
                _counted(as_of),
            )
        )
        last: dict[str, Position] = {}
        for metric, at, key in await self._conn.execute(query):
            if metric not in last or Position(at, key) > last[metric]:
                last[metric] = Position(at, key)
        return last

    async def live_invoice(
        self, org_id: str, period_start: date, as_of: StoredInvoice | None = None
    ) -> StoredInvoice | None:
        """The org's invoice for a period that counts now (not void), or that counted when
        the invoice `as_of` was made; with its lines and usage."""
        i = invoices.c
        query = select(invoices).where(
            i.org_id == org_id, i.period_start == period_start, _counted(as_of)
        )
        row = (await self._conn.execute(query)).first()
        return None if row is None else await self._whole(_invoice(row))

    async def live_invoice_id(self, org_id: str, period_start: date) -> str | None:
        """The id of `live_invoice`, without reading the invoice."""
        i = invoices.c
        query = select(i.invoice_id).where(
            i.org_id == org_id, i.period_start == period_start, _counted(None)
        )
        found: str | None = (await self._conn.execute(query)).scalar_one_or_none()
        return found

    async def id_of_number(self, number: str) -> str | None:
        query = select(invoices.c.invoice_id).where(invoices.c.number == number)
        found: str | None = (await self._conn.execute(query)).scalar_one_or_none()
        return found

    async def get(self, invoice_id: str) -> StoredInvoice | None:
        row = (
            await self._conn.execute(select(invoices).where(invoices.c.invoice_id == invoice_id))
        ).first()
        return None if row is None else await self._whole(_invoice(row))

    async def _whole(self, invoice: StoredInvoice) -> StoredInvoice:
        line, use = invoice_lines.c, invoice_usage.c
        lines = await self._conn.execute(
            select(invoice_lines)
            .where(line.org_id == invoice.org_id, line.invoice_id == invoice.invoice_id)
            .order_by(line.number)
        )
        usage = await self._conn.execute(
            select(invoice_usage)
            .where(use.org_id == invoice.org_id, use.invoice_id == invoice.invoice_id)
            .order_by(use.period_start, use.metric)
        )
        return replace(
            invoice,
            lines=tuple(
                StoredLine(**{name: getattr(row, name) for name in _LINE_COLUMNS}) for row in lines
            ),
            usage=tuple(
                StoredUsage(
                    row.period_start,
                    row.metric,
                    row.quantity,
                    row.events,
                    row.included,
                    None if row.last_at is None else Position(row.last_at, row.last_key),
                    _split_of(row.split),
                )
                for row in usage
            ),
        )

    async def list_invoices(
        self, org_id: str | None, *, before: int | None, limit: int
    ) -> list[StoredInvoice]:
        """Up to `limit` invoices, newest first (by number), those numbered before the
        sequence `before`; of one org or of all."""
        query = select(invoices).order_by(invoices.c.sequence.desc()).limit(limit)
        if org_id is not None:
            query = query.where(invoices.c.org_id == org_id)
        if before is not None:
            query = query.where(invoices.c.sequence < before)
        return [_invoice(row) for row in await self._conn.execute(query)]

    async def counted_of_period(
        self, period_start: date, *, plan_slug: str | None, org_ids: Collection[str] | None
    ) -> list[StoredInvoice]:
        """The invoices of a period that count (not void), whole, in org order: those made
        by the plan `plan_slug`, or those of `org_ids`."""
        i = invoices.c
        query = select(invoices).where(i.period_start == period_start, _counted(None))
        if plan_slug is not None:
            query = query.where(i.plan_slug == plan_slug)
        if org_ids is not None:
            query = query.where(i.org_id.in_(sorted(org_ids)))
        rows = await self._conn.execute(query.order_by(i.org_id))
        return [await self._whole(_invoice(row)) for row in rows]

    async def all_invoice_ids(self) -> list[str]:
        """Every invoice, void ones included, in number order."""
        query = select(invoices.c.invoice_id).order_by(invoices.c.sequence)
        return list((await self._conn.execute(query)).scalars())

    async def next_number(self) -> int:
        """The next invoice number's figure, taken in this transaction: a row lock orders
        every close, and a rollback gives the figure back, so numbers have no gaps."""
        return await take_number(self._conn, COUNTER)

    async def insert(
        self,
        invoice: StoredInvoice,
        lines: Sequence[StoredLine],
        usage: Iterable[StoredUsage],
    ) -> None:
        await self._conn.execute(
            invoices.insert().values({name: getattr(invoice, name) for name in _INVOICE_COLUMNS})
        )
        if lines:
            await self._conn.execute(
                invoice_lines.insert(),
                [
                    {"org_id": invoice.org_id, "invoice_id": invoice.invoice_id, **asdict(line)}
                    for line in lines
                ],
            )
        rows = [
            {
                "org_id": invoice.org_id,
                "invoice_id": invoice.invoice_id,
                "period_start": u.period_start,
                "metric": u.metric,
                "quantity": u.quantity,
                "events": u.events,
                "included": u.included,
                "last_at": None if u.last_at is None else u.last_at.occurred_at,
                "last_key": None if u.last_at is None else u.last_at.idempotency_key,
                "split": _split_text(u.split),
            }
            for u in usage
        ]
        if rows:
            await self._conn.execute(invoice_usage.insert(), rows)

    async def set_paid(self, invoice_id: str, now: datetime, paid_by: str | None) -> bool:
        """Mark an open invoice paid (by the payment `paid_by`; None: by hand); False
        (nothing written) if it was not open by the time this statement held its row."""
        result = await self._conn.execute(
            update(invoices)
            .where(invoices.c.invoice_id == invoice_id, invoices.c.status == "open")
            .values(status="paid", paid_at=now, paid_by=paid_by)
        )
        return bool(result.rowcount == 1)

    async def credited_ids(self) -> list[str]:
        """Every invoice with a credit recorded, in number order."""
        query = select(invoices.c.invoice_id).where(invoices.c.credited != Decimal(0))
        return list((await self._conn.execute(query.order_by(invoices.c.sequence))).scalars())

    async def add_credit(self, invoice_id: str, seen: Decimal, amount: Decimal) -> bool:
        """Add `amount` to a paid invoice's credited amount, from `seen`; False (nothing
        written) if it was not paid, or was credited meanwhile, by the time this statement
        held its row."""
        i = invoices.c
        result = await self._conn.execute(
            update(invoices)
            .where(i.invoice_id == invoice_id, i.status == "paid", i.credited == seen)
            .values(credited=seen + amount)
        )
        return bool(result.rowcount == 1)

    async def set_void(self, invoice_id: str, reason: str, now: datetime) -> bool:
        """Void an open invoice with the reason; False (nothing written) if it was not open
        by the time this statement held its row."""
        result = await self._conn.execute(
            update(invoices)
            .where(invoices.c.invoice_id == invoice_id, invoices.c.status == "open")
            .values(status="void", voided_at=now, void_reason=reason)
        )
        return bool(result.rowcount == 1)

    async def status_disagreements(self) -> list[tuple[str, str, bool, bool]]:
        """The invoices whose status and the times it records disagree (paid without a
        payment time, void without a void time, or a time of the other state): (number,
        status, has a payment time, has a void time)."""
        i = invoices.c
        disagree = or_(
            and_(i.status == "open", or_(i.paid_at.is_not(None), i.voided_at.is_not(None))),
            and_(i.status == "paid", or_(i.paid_at.is_(None), i.voided_at.is_not(None))),
            and_(i.status == "void", or_(i.voided_at.is_(None), i.paid_at.is_not(None))),
        )
        result = await self._conn.execute(
            select(i.number, i.status, i.paid_at.is_not(None), i.voided_at.is_not(None))
            .where(disagree)
            .order_by(i.sequence)
        )
        return [(row[0], row[1], bool(row[2]), bool(row[3])) for row in result]

"""Payments' SQL: each org's Stripe customer (claimed, then stored), each collection attempt
(written before Stripe is asked, moved forward only by a statement that checks the status it
moves from), and each Stripe webhook event applied (once, by its id). Invoices are read
here, never written: paying one is `InvoiceService.mark_paid`'s."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import (
    invoices,
    org_billing_state,
    payment_customers,
    payments,
    stripe_events,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.payments.checks import (
    PaidInvoice,
)
from billing_kernel.payments.rules import (
    Card,
    Payment,
    PaymentStatus,
)


def _payment(row: Any) -> Payment:
    values = dict(row._mapping)
    values["status"] = PaymentStatus(values["status"])
    return Payment(**values)


class PaymentRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def customer_id(self, org_id: str) -> str | None:
        """The org's Stripe customer id, once stored."""
        return (
            await self._conn.execute(
                select(payment_customers.c.stripe_customer_id).where(
                    payment_customers.c.org_id == org_id
                )
            )
        ).scalar_one_or_none()

    async def claim_customer(self, org_id: str, now: datetime, stale_before: datetime) -> bool:
        """Claim the making of the org's customer: True for the one caller that may ask
        Stripe now (no claim yet, or one older than `stale_before` without a customer: its
        worker died), False while another holds a fresh claim or the customer exists."""
        made = await self._conn.execute(
            upsert(self._conn, payment_customers)
            .values(org_id=org_id, claimed_at=now)
            .on_conflict_do_nothing(index_elements=[payment_customers.c.org_id])
        )
        if made.rowcount == 1:
            return True
        c = payment_customers.c
        retaken = await self._conn.execute(
            update(payment_customers)
            .where(
                c.org_id == org_id,
                c.stripe_customer_id.is_(None),
                c.claimed_at < stale_before,
            )
            .values(claimed_at=now)
        )
        return bool(retaken.rowcount == 1)

    async def set_card(self, org_id: str, card: Card, now: datetime) -> None:
        """The org's card on file, as Stripe describes it."""
        await self._conn.execute(
            update(payment_customers)
            .where(payment_customers.c.org_id == org_id)
            .values(
                card_payment_method_id=card.payment_method_id,
                card_brand=card.brand,
                card_last4=card.last4,
                card_exp_month=card.exp_month,
                card_exp_year=card.exp_year,
                card_set_at=now,
            )
        )

    async def clear_card(self, org_id: str, now: datetime) -> None:
        """The org has no card on file any more (its default was removed at Stripe)."""
        await self._conn.execute(
            update(payment_customers)
            .where(payment_customers.c.org_id == org_id)
            .values(
                card_payment_method_id=None,
                card_brand=None,
                card_last4=None,
                card_exp_month=None,
                card_exp_year=None,
                card_set_at=now,
            )
        )

    async def claim_card_check(self, org_id: str, now: datetime, before: datetime) -> bool:
        """Claim asking Stripe for the org's card: True for the one caller that may ask now
        (never asked, or last asked before `before`), False otherwise."""
        c = payment_customers.c
        claimed = await self._conn.execute(
            update(payment_customers)
            .where(
                c.org_id == org_id,
                c.card_checked_at.is_(None) | (c.card_checked_at < before),
            )
            .values(card_checked_at=now)
        )
        return bool(claimed.rowcount == 1)

    async def card(self, org_id: str) -> Card | None:
        c = payment_customers.c
        row = (
            await self._conn.execute(
                select(
                    c.card_payment_method_id, c.card_brand, c.card_last4,
                    c.card_exp_month, c.card_exp_year,
                ).where(c.org_id == org_id, c.card_payment_method_id.is_not(None))
            )
        ).one_or_none()  # fmt: skip
        return None if row is None else Card(*row)

    async def org_of_customer(self, customer_id: str) -> str | None:
        return (
            await self._conn.execute(
                select(payment_customers.c.org_id).where(
                    payment_customers.c.stripe_customer_id == customer_id
                )
            )
        ).scalar_one_or_none()

    async def store_customer(self, org_id: str, customer_id: str, now: datetime) -> None:
        await self._conn.execute(
            update(payment_customers)
            .where(payment_customers.c.org_id == org_id)
            .values(stripe_customer_id=customer_id, created_at=now)
        )

    async def attempts(self, invoice_id: str) -> list[Payment]:
        """The invoice's collection attempts, first to last."""
        rows = await self._conn.execute(
            select(payments).where(payments.c.invoice_id == invoice_id).order_by(payments.c.attempt)
        )
        return [_payment(row) for row in rows]

    async def of_invoices(self, invoice_ids: Sequence[str]) -> dict[str, list[Payment]]:
        """Each invoice's attempts, first to last (invoices without one left out)."""
        rows = await self._conn.execute(
            select(payments)
            .where(payments.c.invoice_id.in_(list(invoice_ids)))
            .order_by(payments.c.invoice_id, payments.c.attempt)
        )
        found: dict[str, list[Payment]] = {}
        for row in rows:
            found.setdefault(row.invoice_id, []).append(_payment(row))
        return found

    async def every_attempt(self) -> list[Payment]:
        rows = await self._conn.execute(
            select(payments).order_by(payments.c.invoice_id, payments.c.attempt)
        )
        return [_payment(row) for row in rows]

    async def paid_or_tried_invoices(self) -> list[PaidInvoice]:
        """Every invoice paid by a payment, or with an attempt to collect it."""
        i = invoices.c
        tried = select(payments.c.invoice_id).where(payments.c.invoice_id == i.invoice_id)
        rows = await self._conn.execute(
            select(i.invoice_id, i.number, i.status, i.total, i.currency, i.paid_by)
            .where(i.paid_by.is_not(None) | tried.exists())
            .order_by(i.sequence)
        )
        return [PaidInvoice(*row) for row in rows]

    async def made_since(self, since: datetime) -> list[Payment]:
        """Every attempt made since `since`, oldest first."""
        rows = await self._conn.execute(
            select(payments)
            .where(payments.c.created_at >= since)
            .order_by(payments.c.created_at, payments.c.payment_id)
        )
        return [_payment(row) for row in rows]

    async def latest(self, org_id: str | None, limit: int) -> list[Payment]:
        """The org's attempts (or every org's), newest first."""
        query = select(payments)
        if org_id is not None:
            query = query.where(payments.c.org_id == org_id)
        rows = await self._conn.execute(
            query.order_by(payments.c.created_at.desc(), payments.c.payment_id.desc()).limit(limit)
        )
        return [_payment(row) for row in rows]

    async def get(self, payment_id: str) -> Payment | None:
        row = (
            await self._conn.execute(select(payments).where(payments.c.payment_id == payment_id))
        ).one_or_none()
        return None if row is None else _payment(row)

    async def by_intent(self, payment_intent_id: str) -> Payment | None:
        row = (
            await self._conn.execute(
                select(payments).where(payments.c.stripe_payment_intent_id == payment_intent_id)
            )
        ).one_or_none()
        return None if row is None else _payment(row)

    async def by_checkout(self, session_id: str) -> Payment | None:
        row = (
            await self._conn.execute(
                select(payments).where(payments.c.checkout_session_id == session_id)
            )
        ).one_or_none()
        return None if row is None else _payment(row)

    async def by_attempt(self, invoice_id: str, attempt: int) -> Payment | None:
        row = (
            await self._conn.execute(
                select(payments).where(
                    payments.c.invoice_id == invoice_id, payments.c.attempt == attempt
                )
            )
        ).one_or_none()
        return None if row is None else _payment(row)

    async def add_attempt(
        self,
        *,
        payment_id: str,
        invoice_id: str,
        org_id: str,
        attempt: int,
        amount: Decimal,
        currency: str,
        card_id: str | None,
        now: datetime,
        checkout_expires_at: datetime | None = None,
    ) -> bool:
        """Write the attempt `pending`, to charge the card `card_id` (or, with
        `checkout_expires_at`, to be paid on a pay-now page until then); False (nothing
        written) when that attempt of the invoice exists already: another worker, or the
        org's owner, is making it."""
        made = await self._conn.execute(
            upsert(self._conn, payments)
            .values(
                payment_id=payment_id,
                invoice_id=invoice_id,
                org_id=org_id,
                attempt=attempt,
                status=PaymentStatus.PENDING.value,
                amount=amount,
                currency=currency,
                stripe_payment_method_id=card_id,
                checkout_expires_at=checkout_expires_at,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[payments.c.org_id, payments.c.invoice_id, payments.c.attempt]
            )
        )
        return bool(made.rowcount == 1)

    async def move(
        self,
        payment_id: str,
        before: PaymentStatus,
        after: PaymentStatus,
        *,
        payment_intent_id: str | None,
        failure_code: str | None,
        failure_message: str | None,
        now: datetime,
    ) -> bool:
        """Move the attempt from `before` to `after`, in a statement that checks `before`;
        False (nothing written) when it had moved meanwhile. The PaymentIntent id, once
        known, is kept."""
        c = payments.c
        values: dict[str, Any] = {
            "status": after.value,
            "failure_code": failure_code,
            "failure_message": failure_message,
            "updated_at": now,
        }
        if payment_intent_id is not None:
            values["stripe_payment_intent_id"] = payment_intent_id
        moved = await self._conn.execute(
            update(payments)
            .where(c.payment_id == payment_id, c.status == before.value)
            .values(**values)
        )
        return bool(moved.rowcount == 1)

    async def set_checkout(self, payment_id: str, session_id: str, url: str) -> None:
        """Keep the pay-now page a pending attempt is paid on."""
        await self._conn.execute(
            update(payments)
            .where(payments.c.payment_id == payment_id, payments.c.checkout_session_id.is_(None))
            .values(checkout_session_id=session_id, checkout_url=url)
        )

    async def note_intent(self, payment_id: str, payment_intent_id: str) -> None:
        """Keep the PaymentIntent an attempt made, before its outcome is known."""
        await self._conn.execute(
            update(payments)
            .where(
                payments.c.payment_id == payment_id,
                payments.c.stripe_payment_intent_id.is_(None),
            )
            .values(stripe_payment_intent_id=payment_intent_id)
        )

    async def collectable(self, limit: int) -> list[str]:
        """Open invoices above zero not yet tried, or whose last attempt failed (a retry
        may be due) or was a pay-now page left unpaid, oldest first, for the worker's
        round."""
        p, later = payments.c, payments.alias("later")
        last_failed = (
            select(p.invoice_id)
            .where(
                p.invoice_id == invoices.c.invoice_id,
                p.status.in_([PaymentStatus.FAILED.value, PaymentStatus.CANCELED.value]),
                ~select(later.c.attempt)
                .where(later.c.invoice_id == p.invoice_id, later.c.attempt > p.attempt)
                .exists(),
            )
            .exists()
        )
        tried = select(p.invoice_id).where(p.invoice_id == invoices.c.invoice_id).exists()
        rows = await self._conn.execute(
            select(invoices.c.invoice_id)
            .where(
                invoices.c.status == "open",
                invoices.c.total > Decimal(0),
                ~tried | last_failed,
            )
            .order_by(invoices.c.issued_at, invoices.c.invoice_id)
            .limit(limit)
        )
        return list(rows.scalars())

    async def trials_to_convert(self, now: datetime, limit: int) -> list[str]:
        """Orgs whose trial has ended and that have a card on file."""
        b, c = org_billing_state.c, payment_customers.c
        rows = await self._conn.execute(
            select(b.org_id)
            .join(payment_customers, c.org_id == b.org_id)
            .where(
                b.status == "trial",
                b.trial_ends_at <= now,
                c.card_payment_method_id.is_not(None),
            )
            .order_by(b.trial_ends_at, b.org_id)
            .limit(limit)
        )
        return list(rows.scalars())

    async def unfinished(self, older_than: datetime, now: datetime, limit: int) -> list[Payment]:
        """Attempts left `pending` (a worker died between writing one and hearing Stripe)
        since before `older_than`, and pay-now pages that have expired: to be finished."""
        c = payments.c
        rows = await self._conn.execute(
            select(payments)
            .where(
                c.status == PaymentStatus.PENDING.value,
                c.updated_at < older_than,
                c.checkout_expires_at.is_(None) | (c.checkout_expires_at <= now),
            )
            .order_by(payments.c.created_at)
            .limit(limit)
        )
        return [_payment(row) for row in rows]

    async def failed_open(self, org_id: str) -> int:
        """How many of the org's open invoices have a failed last attempt (a pay-now page
        left unpaid aside): what keeps it past due."""
        last = (
            select(payments.c.invoice_id, func.max(payments.c.attempt).label("attempt"))
            .where(payments.c.org_id == org_id, payments.c.status != PaymentStatus.CANCELED.value)
            .group_by(payments.c.invoice_id)
            .subquery()
        )
        count = await self._conn.execute(
            select(func.count())
            .select_from(payments)
            .join(
                last,
                and_(
                    last.c.invoice_id == payments.c.invoice_id,
                    last.c.attempt == payments.c.attempt,
                ),
            )
            .join(invoices, invoices.c.invoice_id == payments.c.invoice_id)
            .where(invoices.c.status == "open", payments.c.status == PaymentStatus.FAILED.value)
        )
        return int(count.scalar_one())

    async def record_event(
        self, event_id: str, event_type: str, now: datetime, payment_id: str | None, outcome: str
    ) -> bool:
        """Note a Stripe event as applied; False (nothing written) when it was already:
        the caller then applies nothing."""
        made = await self._conn.execute(
            upsert(self._conn, stripe_events)
            .values(
                event_id=event_id,
                event_type=event_type,
                received_at=now,
                payment_id=payment_id,
                outcome=outcome,
            )
            .on_conflict_do_nothing(index_elements=[stripe_events.c.event_id])
        )
        return bool(made.rowcount == 1)

    async def event_applied(self, event_id: str) -> bool:
        found = await self._conn.execute(
            select(stripe_events.c.event_id).where(stripe_events.c.event_id == event_id)
        )
        return found.first() is not None

    async def set_event_outcome(self, event_id: str, payment_id: str | None, outcome: str) -> None:
        await self._conn.execute(
            update(stripe_events)
            .where(stripe_events.c.event_id == event_id)
            .values(payment_id=payment_id, outcome=outcome)
        )

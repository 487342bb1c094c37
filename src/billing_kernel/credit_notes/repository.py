"""Credit notes' SQL: each note written with its number (taken from the `credit_notes`
counter in the same transaction, so numbers have no gaps), and its refund moved forward
only by a statement that checks the status it moves from. Invoices are read and credited
through `InvoiceService`, never here."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from billing_kernel.credit_notes.rules import CreditLine, CreditNote, RefundStatus
from billing_kernel.db.numbers import take_number
from billing_kernel.db.tables import credit_notes
from billing_kernel.db.unit_of_work import UnitOfWork

COUNTER = "credit_notes"


def _note(row: Any) -> CreditNote:
    values = dict(row._mapping)
    values["status"] = RefundStatus(values["status"])
    values["lines"] = tuple(
        CreditLine(int(line["number"]), str(line["description"]), Decimal(line["amount"]))
        for line in json.loads(values["lines"])
    )
    return CreditNote(**values)


class CreditNoteRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def next_number(self) -> int:
        """The next credit note's figure, taken in this transaction (gap-free)."""
        return await take_number(self._conn, COUNTER)

    async def insert(self, note: CreditNote) -> None:
        lines = [
            {"number": line.number, "description": line.description, "amount": str(line.amount)}
            for line in note.lines
        ]
        await self._conn.execute(
            credit_notes.insert().values(
                credit_note_id=note.credit_note_id,
                number=note.number,
                sequence=note.sequence,
                org_id=note.org_id,
                invoice_id=note.invoice_id,
                reason=note.reason,
                amount=note.amount,
                currency=note.currency,
                lines=json.dumps(lines),
                payment_id=note.payment_id,
                status=note.status.value,
                stripe_refund_id=note.stripe_refund_id,
                failure_message=note.failure_message,
                created_at=note.created_at,
                updated_at=note.updated_at,
            )
        )

    async def get(self, credit_note_id: str) -> CreditNote | None:
        row = (
            await self._conn.execute(
                select(credit_notes).where(
                    (credit_notes.c.credit_note_id == credit_note_id)
                    | (credit_notes.c.number == credit_note_id)
                )
            )
        ).one_or_none()
        return None if row is None else _note(row)

    async def of_invoice(self, invoice_id: str) -> list[CreditNote]:
        rows = await self._conn.execute(
            select(credit_notes)
            .where(credit_notes.c.invoice_id == invoice_id)
            .order_by(credit_notes.c.sequence)
        )
        return [_note(row) for row in rows]

    async def every(self) -> list[CreditNote]:
        rows = await self._conn.execute(select(credit_notes).order_by(credit_notes.c.sequence))
        return [_note(row) for row in rows]

    async def latest(self, org_id: str | None, limit: int) -> list[CreditNote]:
        query = select(credit_notes)
        if org_id is not None:
            query = query.where(credit_notes.c.org_id == org_id)
        rows = await self._conn.execute(query.order_by(credit_notes.c.sequence.desc()).limit(limit))
        return [_note(row) for row in rows]

    async def pending(self, limit: int) -> list[CreditNote]:
        """Credit notes whose refund Stripe has not answered, oldest first."""
        rows = await self._conn.execute(
            select(credit_notes)
            .where(credit_notes.c.status == RefundStatus.PENDING.value)
            .order_by(credit_notes.c.sequence)
            .limit(limit)
        )
        return [_note(row) for row in rows]

    async def made_since(self, since: datetime) -> list[CreditNote]:
        rows = await self._conn.execute(
            select(credit_notes)
            .where(credit_notes.c.created_at >= since)
            .order_by(credit_notes.c.sequence)
        )
        return [_note(row) for row in rows]

    async def move(
        self,
        credit_note_id: str,
        before: RefundStatus,
        after: RefundStatus,
        *,
        refund_id: str | None,
        failure: str | None,
        now: datetime,
    ) -> bool:
        """Move the refund from `before` to `after`, in a statement that checks `before`;
        False (nothing written) when it had moved meanwhile. Stripe's refund id, once
        known, is kept."""
        c = credit_notes.c
        values: dict[str, Any] = {
            "status": after.value,
            "failure_message": failure,
            "updated_at": now,
        }
        if refund_id is not None:
            values["stripe_refund_id"] = refund_id
        moved = await self._conn.execute(
            update(credit_notes)
            .where(c.credit_note_id == credit_note_id, c.status == before.value)
            .values(**values)
        )
        return bool(moved.rowcount == 1)

    async def note_refund(self, credit_note_id: str, refund_id: str) -> None:
        """Keep the refund Stripe made, before its outcome is known."""
        await self._conn.execute(
            update(credit_notes)
            .where(
                credit_notes.c.credit_note_id == credit_note_id,
                credit_notes.c.stripe_refund_id.is_(None),
            )
            .values(stripe_refund_id=refund_id)
        )

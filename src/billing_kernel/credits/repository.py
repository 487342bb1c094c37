"""Credit balances' SQL: grants (one per source, so a retried grant is one grant), and what
each invoice drew from each (a burn), its grant's money left moved in a statement that
checks the amount it moves from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from billing_kernel.credits.rules import Burn, Grant
from billing_kernel.db.database import upsert
from billing_kernel.db.tables import credit_burns, credit_grants
from billing_kernel.db.unit_of_work import UnitOfWork


def _grant(row: Any) -> Grant:
    return Grant(**dict(row._mapping))


def _burn(row: Any) -> Burn:
    return Burn(**dict(row._mapping))


class CreditRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def add_grant(self, grant: Grant) -> bool:
        """Write the grant; False (nothing written) when its source has one already."""
        made = await self._conn.execute(
            upsert(self._conn, credit_grants)
            .values(
                grant_id=grant.grant_id,
                org_id=grant.org_id,
                currency=grant.currency,
                amount=grant.amount,
                remaining=grant.remaining,
                source=grant.source,
                source_id=grant.source_id,
                created_at=grant.created_at,
            )
            .on_conflict_do_nothing(
                index_elements=[credit_grants.c.org_id, credit_grants.c.source_id]
            )
        )
        return bool(made.rowcount == 1)

    async def grant_of(self, source_id: str) -> Grant | None:
        row = (
            await self._conn.execute(
                select(credit_grants).where(credit_grants.c.source_id == source_id)
            )
        ).one_or_none()
        return None if row is None else _grant(row)

    async def grants(self, org_id: str | None = None, currency: str | None = None) -> list[Grant]:
        """Grants (of one org, in one currency), oldest first."""
        query = select(credit_grants)
        if org_id is not None:
            query = query.where(credit_grants.c.org_id == org_id)
        if currency is not None:
            query = query.where(credit_grants.c.currency == currency)
        rows = await self._conn.execute(
            query.order_by(credit_grants.c.created_at, credit_grants.c.grant_id)
        )
        return [_grant(row) for row in rows]

    async def take(self, grant_id: str, seen: Decimal, amount: Decimal) -> bool:
        """Take `amount` from the grant's money left, from `seen`; False (nothing written)
        when it moved meanwhile."""
        g = credit_grants.c
        moved = await self._conn.execute(
            update(credit_grants)
            .where(g.grant_id == grant_id, g.remaining == seen)
            .values(remaining=seen - amount)
        )
        return bool(moved.rowcount == 1)

    async def give_back(self, grant_id: str, amount: Decimal) -> None:
        g = credit_grants.c
        await self._conn.execute(
            update(credit_grants)
            .where(g.grant_id == grant_id)
            .values(remaining=g.remaining + amount)
        )

    async def add_burn(self, burn: Burn) -> None:
        await self._conn.execute(
            credit_burns.insert().values(
                grant_id=burn.grant_id,
                invoice_id=burn.invoice_id,
                org_id=burn.org_id,
                amount=burn.amount,
                created_at=burn.created_at,
                released_at=burn.released_at,
            )
        )

    async def burns(self, invoice_ids: Sequence[str] | None = None) -> list[Burn]:
        """Burns (of some invoices), in the order made."""
        query = select(credit_burns)
        if invoice_ids is not None:
            query = query.where(credit_burns.c.invoice_id.in_(list(invoice_ids)))
        rows = await self._conn.execute(
            query.order_by(credit_burns.c.created_at, credit_burns.c.grant_id)
        )
        return [_burn(row) for row in rows]

    async def release(self, invoice_id: str, now: datetime) -> list[Burn]:
        """Mark the invoice's burns given back; the burns it had."""
        held = [b for b in await self.burns([invoice_id]) if b.released_at is None]
        if held:
            await self._conn.execute(
                update(credit_burns)
                .where(
                    credit_burns.c.invoice_id == invoice_id, credit_burns.c.released_at.is_(None)
                )
                .values(released_at=now)
            )
        return held

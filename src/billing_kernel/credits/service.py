"""Credit balances: money an org holds (today: credit notes on invoices paid outside
Stripe), drawn by its next invoices when they are made, in the invoice's own transaction,
and given back when such an invoice is voided (its correction draws again)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from billing_kernel.credits.repository import CreditRepository
from billing_kernel.credits.rules import Burn, Grant, draw, ledger_disagreements
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork


class CreditService:
    def __init__(self, transactions: Transactions, clock: Callable[[], datetime]) -> None:
        self._tx = transactions
        self._clock = clock

    async def grant(
        self,
        org_id: str,
        currency: str,
        amount: Decimal,
        *,
        source: str,
        source_id: str,
        uow: UnitOfWork,
    ) -> Grant:
        """Money for the org's next invoices, from `source_id` (once: the same source again
        is the same grant)."""
        repo = CreditRepository(uow)
        made = Grant(
            grant_id="cg_" + secrets.token_hex(12),
            org_id=org_id,
            currency=currency,
            amount=amount,
            remaining=amount,
            source=source,
            source_id=source_id,
            created_at=self._clock(),
        )
        await repo.add_grant(made)
        found = await repo.grant_of(source_id)
        assert found is not None
        return found

    async def grant_of(self, source_id: str, uow: UnitOfWork | None = None) -> Grant | None:
        async with self._tx.read(uow) as unit:
            return await CreditRepository(unit).grant_of(source_id)

    async def balance(self, org_id: str, uow: UnitOfWork | None = None) -> dict[str, Decimal]:
        """What the org holds, by currency (currencies with nothing left left out)."""
        async with self._tx.read(uow) as unit:
            grants = await CreditRepository(unit).grants(org_id)
        held: dict[str, Decimal] = {}
        for grant in grants:
            if grant.remaining > 0:
                held[grant.currency] = held.get(grant.currency, Decimal(0)) + grant.remaining
        return held

    async def to_draw(
        self, org_id: str, currency: str, due: Decimal, uow: UnitOfWork
    ) -> tuple[list[tuple[str, Decimal]], Decimal]:
        """What an invoice of the org coming to `due` would draw from its grants in its
        currency (`rules.draw`), and the balance held: read in the invoice's transaction,
        to be taken (`take`) once the invoice is written."""
        grants = await CreditRepository(uow).grants(org_id, currency)
        held = sum((g.remaining for g in grants), Decimal(0))
        return draw(grants, due), held

    async def take(
        self, org_id: str, invoice_id: str, drawn: list[tuple[str, Decimal]], uow: UnitOfWork
    ) -> list[Burn]:
        """Take what `to_draw` said from each grant, for the invoice, each grant's money
        left moved from what it was read to be (the caller holds the org's close lock, so
        no other invoice of the org draws at once: a conflict is a fault, and raises)."""
        repo = CreditRepository(uow)
        grants = {g.grant_id: g for g in await repo.grants(org_id)}
        burns: list[Burn] = []
        now = self._clock()
        for grant_id, amount in drawn:
            if not await repo.take(grant_id, grants[grant_id].remaining, amount):
                raise RuntimeError(f"grant {grant_id} moved while {invoice_id} drew on it")
            burn = Burn(grant_id, invoice_id, org_id, amount, now)
            await repo.add_burn(burn)
            burns.append(burn)
        return burns

    async def release(self, invoice_id: str, uow: UnitOfWork) -> list[Burn]:
        """Give back what a voided invoice drew (its correction draws again)."""
        repo = CreditRepository(uow)
        released = await repo.release(invoice_id, self._clock())
        for burn in released:
            await repo.give_back(burn.grant_id, burn.amount)
        return released

    async def burns(self, invoice_ids: list[str], uow: UnitOfWork | None = None) -> list[Burn]:
        async with self._tx.read(uow) as unit:
            return await CreditRepository(unit).burns(invoice_ids)

    async def verify(self, uow: UnitOfWork | None = None) -> list[str]:
        """Check every grant's money left against what invoices drew from it."""
        async with self._tx.read(uow) as unit:
            repo = CreditRepository(unit)
            return ledger_disagreements(await repo.grants(), await repo.burns())

"""Gap-free numbers (invoices, credit notes): each sequence is a row of `invoice_numbers`,
taken in the transaction that makes the document."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing_kernel.db.tables import invoice_numbers


async def take_number(conn: AsyncConnection, counter: str) -> int:
    """The next figure of the sequence `counter`, taken in this transaction: its row's lock
    orders every taker, and a rollback gives the figure back, so numbers have no gaps."""
    n = invoice_numbers.c
    result = await conn.execute(
        update(invoice_numbers)
        .where(n.counter == counter)
        .values(last_number=n.last_number + 1)
        .returning(n.last_number)
    )
    return int(result.scalar_one())

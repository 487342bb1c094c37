"""Credit balances' pure rules: what an invoice draws from an org's grants (oldest first,
never more than it comes to, never more than a grant has left), and what the records must
say of each other (`credits verify`). Standard library and pure rules only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing_kernel.common.money import money_text

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Grant:
    """Money an org holds, in one currency, from one source: what it was and what is left."""

    grant_id: str
    org_id: str
    currency: str
    amount: Decimal
    remaining: Decimal
    source: str
    """Where it came from: `credit_note` (money given back for an invoice paid outside
    Stripe)."""
    source_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Burn:
    """What one invoice drew from one grant; released when the invoice was voided (its
    correction draws again)."""

    grant_id: str
    invoice_id: str
    org_id: str
    amount: Decimal
    created_at: datetime
    released_at: datetime | None = None


def draw(grants: Sequence[Grant], due: Decimal) -> list[tuple[str, Decimal]]:
    """What an invoice coming to `due` draws: from each grant with money left, oldest
    first (then by id), as much as it has until `due` is covered; nothing for an invoice
    of zero or less."""
    taken: list[tuple[str, Decimal]] = []
    left = due
    for grant in sorted(grants, key=lambda g: (g.created_at, g.grant_id)):
        if left <= 0:
            break
        if grant.remaining <= 0:
            continue
        amount = min(grant.remaining, left)
        taken.append((grant.grant_id, amount))
        left -= amount
    return taken


def ledger_disagreements(grants: Sequence[Grant], burns: Sequence[Burn]) -> list[str]:
    """What the grants and the burns say that cannot both be true: a grant whose money left
    is not what it was less what invoices drew (and have not given back), or is below zero
    or above what it was; a burn of a grant that does not exist."""
    found: list[str] = []
    drawn: dict[str, Decimal] = {}
    for burn in burns:
        if burn.released_at is None:
            drawn[burn.grant_id] = drawn.get(burn.grant_id, ZERO) + burn.amount
    known = {grant.grant_id for grant in grants}
    for grant_id in sorted(set(drawn) - known):
        found.append(f"invoices drew on grant {grant_id}, which does not exist")
    for grant in grants:
        expected = grant.amount - drawn.get(grant.grant_id, ZERO)
        if grant.remaining != expected:
            found.append(
                f"grant {grant.grant_id} ({grant.org_id}) has {money_text(grant.remaining)} "
                f"left; {money_text(grant.amount)} less what invoices drew is "
                f"{money_text(expected)}"
            )
        if not ZERO <= grant.remaining <= grant.amount:
            found.append(
                f"grant {grant.grant_id} ({grant.org_id}) has {money_text(grant.remaining)} "
                f"left of {money_text(grant.amount)}"
            )
    return found

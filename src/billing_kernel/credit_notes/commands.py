"""`billing-kernel credit-notes ...`: paid invoices corrected, money given back."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.common.money import money_text
from billing_kernel.credit_notes.rules import CreditNote, RefundStatus

credit_notes_app = typer.Typer(
    help="Credit notes: paid invoices corrected, the money given back.", no_args_is_help=True
)


@credit_notes_app.command("issue")
def credit_notes_issue(
    invoice: Annotated[str, typer.Argument(help="The paid invoice's number or id.")],
    reason: Annotated[str, typer.Option(help="Why, for the org and the books.")],
    line: Annotated[
        list[str] | None,
        typer.Option(
            help="A line to credit: its number, or NUMBER=AMOUNT for part of it (repeat for "
            "several; none: all that is left of the invoice)."
        ),
    ] = None,
) -> None:
    """Correct a paid invoice: a credit note, refunded through Stripe by the worker to the
    payment that paid it."""
    lines: list[tuple[int, Decimal | None]] | None = None
    if line:
        lines = []
        for asked in line:
            number, _, amount = asked.partition("=")
            try:
                lines.append((int(number), Decimal(amount) if amount else None))
            except (ValueError, InvalidOperation):
                fail(f"--line is NUMBER or NUMBER=AMOUNT, not {asked!r}")
    note = with_kernel(lambda kernel: kernel.credit_notes.issue(invoice, reason, lines))
    typer.echo(note_line(note))
    for credited in note.lines:
        typer.echo(
            f"  line {credited.number:<3} {money_text(credited.amount):>12}  {credited.description}"
        )


@credit_notes_app.command("list")
def credit_notes_list(
    org: Annotated[str | None, typer.Option(help="Only this org's (default: every org's).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
) -> None:
    """Credit notes, newest first: number, org, invoice, amount, refund."""
    found = with_kernel(lambda kernel: kernel.credit_notes.latest(org, limit))
    echo_each(note_line(note) for note in found)


@credit_notes_app.command("verify")
def credit_notes_verify() -> None:
    """Check every credit note against the invoice it credits and the payment it refunds
    (exit 1 on any disagreement)."""
    found = with_kernel(lambda kernel: kernel.credit_notes.verify())
    for disagreement in found:
        typer.echo(disagreement)
    if found:
        fail(f"{len(found)} disagreement(s)")
    typer.echo("every credit note agrees with its invoice")


def note_line(note: CreditNote) -> str:
    """One credit note on one line."""
    why = f"  {note.failure_message}" if note.failure_message else ""
    settled = (
        "kept as balance" if note.status is RefundStatus.BALANCE else f"refund {note.status.value}"
    )
    return (
        f"{note.number}  {note.created_at:%Y-%m-%d %H:%M}  {note.org_id:<24} {note.invoice_id:<28} "
        f"{note.currency} {money_text(note.amount):>12}  {settled}  "
        f"{note.reason}{why}"
    )

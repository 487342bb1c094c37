"""`billing-kernel payments ...`: the attempts to collect invoices through Stripe."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.common.money import money_text
from billing_kernel.payments.checks import Difference
from billing_kernel.payments.rules import Payment

if TYPE_CHECKING:
    from billing_kernel.kernel import Kernel

payments_app = typer.Typer(help="Payments through Stripe.", no_args_is_help=True)


@payments_app.command("list")
def payments_list(
    org: Annotated[str | None, typer.Option(help="Only this org's (default: every org's).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
) -> None:
    """Attempts to collect invoices, newest first: when, org, invoice, attempt, status,
    amount, and why a failed one failed."""
    found = with_kernel(lambda kernel: kernel.payments.latest(org, limit))
    echo_each(attempt_line(payment, with_org=True) for payment in found)


@payments_app.command("verify")
def payments_verify() -> None:
    """Check every payment against the invoice it collected and the invoices they pay, from
    the kernel's own records (exit 1 on any disagreement); `reconcile` asks Stripe."""
    found = with_kernel(lambda kernel: kernel.payments.verify())
    for disagreement in found:
        typer.echo(disagreement)
    if found:
        fail(f"{len(found)} disagreement(s)")
    typer.echo("every payment agrees with its invoice")


@payments_app.command("reconcile")
def payments_reconcile(
    since: Annotated[
        str | None,
        typer.Option(help="Attempts made since this day, YYYY-MM-DD (default: 35 days ago)."),
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Apply what a missed webhook would have.")
    ] = False,
) -> None:
    """Compare the kernel's payments and credit notes' refunds with Stripe's records: each
    difference with what to do (exit 1 while any is left); --repair mends what is safe (a
    missed webhook's effect)."""
    try:
        start = (
            datetime.now(UTC) - timedelta(days=35)
            if since is None
            else datetime.combine(date.fromisoformat(since), time(), UTC)
        )
    except ValueError:
        fail(f"--since is a day, YYYY-MM-DD, not {since!r}")

    async def both(kernel: Kernel) -> tuple[list[Difference], list[Difference]]:
        left, repaired = await kernel.payments.reconcile(start, repair=repair)
        notes_left, notes_repaired = await kernel.credit_notes.reconcile(start, repair=repair)
        return [*left, *notes_left], [*repaired, *notes_repaired]

    left, repaired = with_kernel(both)
    for difference in repaired:
        typer.echo(f"repaired  {difference.subject}: {difference.said}")
    for difference in left:
        typer.echo(f"differs   {difference.subject}: {difference.said}; {difference.to_do}")
    if left:
        fail(f"{len(left)} difference(s)")
    typer.echo(f"the kernel's payments since {start:%Y-%m-%d} agree with Stripe's")


def attempt_line(payment: Payment, *, with_org: bool = False) -> str:
    """One attempt on one line."""
    org = f"{payment.org_id:<24} {payment.invoice_id:<28} " if with_org else ""
    why = f"  {payment.failure_message}" if payment.failure_message else ""
    via = "  paid now on Stripe's page" if payment.paid_now else ""
    return (
        f"{payment.updated_at:%Y-%m-%d %H:%M}  {org}#{payment.attempt} "
        f"{payment.status.value:<10} {payment.currency} {money_text(payment.amount):>12}"
        f"{why}{via}"
    )

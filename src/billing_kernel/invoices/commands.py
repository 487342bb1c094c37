"""`billing-kernel invoices ...`: an org's invoices, line by line with how each amount was
reached; closing periods, paying, voiding, verifying."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.common.money import money_text
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.invoices.rules import InvoiceDraft, StoredInvoice, formula_for_people
from billing_kernel.payments.commands import attempt_line
from billing_kernel.payments.rules import Payment

if TYPE_CHECKING:
    from billing_kernel.kernel import Kernel

invoices_app = typer.Typer(help="Invoices.", no_args_is_help=True)


EXACT = typer.Option(
    "--exact", help="Formulas with their unrounded intermediate figures, as stored."
)


@invoices_app.command("upcoming")
def invoices_upcoming(org_id: str, exact: Annotated[bool, EXACT] = False) -> None:
    """The org's invoice for this month as it stands now (a draft), line by line."""
    draft = with_kernel(lambda kernel: kernel.invoices.upcoming(org_id))
    typer.echo(render_draft(draft, exact=exact))


@invoices_app.command("list")
def invoices_list(
    org: Annotated[str | None, typer.Option(help="Only this org's (default: every org's).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
) -> None:
    """Finalized invoices, newest first: number, org, period, status, total."""
    found = with_kernel(lambda kernel: kernel.invoices.list_invoices(org, limit=limit))
    echo_each(
        f"{invoice.number:<14} {invoice.org_id:<24} {invoice.period_start:%Y-%m}  "
        f"{invoice.status:<5} {invoice.currency} {money_text(invoice.total):>12}"
        for invoice in found
    )


@invoices_app.command("show")
def invoices_show(number: str, exact: Annotated[bool, EXACT] = False) -> None:
    """A finalized invoice (by number or id), line by line, then each attempt to collect it
    through Stripe."""

    async def read(kernel: Kernel) -> tuple[StoredInvoice, list[Payment]]:
        invoice = await kernel.invoices.by_number(number)
        return invoice, await kernel.payments.attempts(invoice.invoice_id)

    invoice, attempts = with_kernel(read)
    typer.echo(render_stored(invoice, exact=exact))
    if attempts:
        typer.echo("")
        for payment in attempts:
            typer.echo(f"payment    {attempt_line(payment)}")


@invoices_app.command("close")
def invoices_close(
    org: Annotated[str | None, typer.Option(help="Only this org (with --period).")] = None,
    period: Annotated[str | None, typer.Option(help="The month to close, YYYY-MM.")] = None,
) -> None:
    """Finalize the invoices that are due (every org, every period that has closed); or,
    with --org and --period, that org's invoice for that month (and any earlier it lacks).
    Safe to run again, and from several places at once."""
    if (org is None) != (period is None):
        fail("--org and --period go together")
    if org is not None and period is not None:
        try:
            month = BillingPeriod.parse(period)
        except ValueError as exc:
            fail(str(exc))
        made = with_kernel(lambda kernel: kernel.invoices.close(org, month))
        typer.echo("nothing to invoice" if made is None else _summary_line(made))
        return
    report = with_kernel(lambda kernel: kernel.invoices.close_due())
    for invoice in report.closed:
        typer.echo(_summary_line(invoice))
    typer.echo(f"{len(report.closed)} invoice(s) finalized")
    for failure in report.failed:
        typer.echo(f"not invoiced: {failure.org_id} {failure.period.label}: {failure.reason}")
    if report.failed:
        fail(f"{len(report.failed)} org(s) could not be invoiced")


@invoices_app.command("void")
def invoices_void(
    number: str, reason: Annotated[str, typer.Option(help="Why (kept with the invoice).")]
) -> None:
    """Void an open invoice and make the corrected one that replaces it."""
    correction = with_kernel(lambda kernel: kernel.invoices.void(number, reason))
    typer.echo(f"{number} void; replaced by {_summary_line(correction)}")


@invoices_app.command("mark-paid")
def invoices_mark_paid(number: str) -> None:
    """Record that an invoice was paid."""
    typer.echo(_summary_line(with_kernel(lambda kernel: kernel.invoices.mark_paid(number))))


@invoices_app.command("verify")
def invoices_verify() -> None:
    """Recompute every invoice from what it billed, check its credit notes, and report any
    difference (exit 1)."""

    async def both(kernel: Kernel) -> list[str]:
        return [*await kernel.invoices.verify(), *await kernel.credit_notes.verify()]

    differences = with_kernel(both)
    for difference in differences:
        typer.echo(difference)
    if differences:
        fail(f"{len(differences)} difference(s)")
    typer.echo(
        "every invoice is as recomputed, and its credit notes agree; the numbers have no gaps"
    )


def _summary_line(invoice: StoredInvoice) -> str:
    return (
        f"{invoice.number} {invoice.org_id} {invoice.period_start:%Y-%m} {invoice.status} "
        f"{invoice.currency} {money_text(invoice.total)}"
    )


def render_draft(invoice: InvoiceDraft, *, exact: bool = False) -> str:
    """The upcoming invoice as text."""
    head = f"invoice    {invoice.org_id}, {invoice.period.label} (draft: as it stands now)"
    lines = [(line.description, line.amount, line.formula) for line in invoice.lines]
    return _render([head], lines, invoice.currency, invoice.total, "nothing to bill so far", exact)


def render_stored(invoice: StoredInvoice, *, exact: bool = False) -> str:
    """A finalized invoice as text."""
    head = [
        f"invoice    {invoice.number}, {invoice.org_id}, {invoice.period_start:%Y-%m} "
        f"({invoice.status})",
        f"issued     {invoice.issued_at:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if invoice.void_reason:
        head.append(f"void       {invoice.void_reason}")
    lines = [(line.description, line.amount, line.formula) for line in invoice.lines]
    return _render(head, lines, invoice.currency, invoice.total, "nothing billed", exact)


def _render(
    head: list[str],
    lines: Sequence[tuple[str, Decimal, str]],
    currency: str,
    total: Decimal,
    empty: str,
    exact: bool,
) -> str:
    """Each line with its amount and, beneath, its formula (rounded for people unless
    `exact`: `formula_for_people`); then the total."""
    out = [*head, f"currency   {currency}", ""]
    if not lines:
        out.append(empty)
    for number, (description, amount, formula) in enumerate(lines, 1):
        out.append(f"{number:>3}  {description:<62} {money_text(amount):>12}")
        out.append(f"     {formula if exact else formula_for_people(formula)}")
    out += ["", f"{'total ' + currency:>67} {money_text(total):>12}"]
    return "\n".join(out)

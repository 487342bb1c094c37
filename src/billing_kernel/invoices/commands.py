"""`billing-kernel invoices ...`: an org's invoices, line by line, with how each amount was
reached."""

from __future__ import annotations

import typer

from billing_kernel.commands import with_kernel
from billing_kernel.common.money import money_text
from billing_kernel.invoices.rules import InvoiceDraft

invoices_app = typer.Typer(help="Invoices.", no_args_is_help=True)


@invoices_app.command("upcoming")
def invoices_upcoming(org_id: str) -> None:
    """The org's invoice for this month as it stands now (a draft), line by line."""
    typer.echo(render_invoice(with_kernel(lambda kernel: kernel.invoices.upcoming(org_id))))


def render_invoice(invoice: InvoiceDraft) -> str:
    """The invoice as text: each line with its amount and, beneath, its formula."""
    out = [
        f"invoice    {invoice.org_id}, {invoice.period.label} (draft: as it stands now)",
        f"currency   {invoice.currency}",
        "",
    ]
    if not invoice.lines:
        out.append("nothing to bill so far")
    for number, line in enumerate(invoice.lines, 1):
        out.append(f"{number:>3}  {line.description:<62} {money_text(line.amount):>12}")
        out.append(f"     {line.formula}")
    out += ["", f"{'total ' + invoice.currency:>67} {money_text(invoice.total):>12}"]
    return "\n".join(out)

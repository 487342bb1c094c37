"""`billing-kernel summary`: an org's billing summary as a plain-text table."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.commands import fail, with_kernel
from billing_kernel.common.money import money_text
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.invoices.rules import Estimate
from billing_kernel.plans.rules import Enforcement
from billing_kernel.summary.rules import OrgBillingSummary


def summary(
    org_id: str,
    period: Annotated[
        str | None, typer.Option(help="A past month, YYYY-MM (default: this month).")
    ] = None,
) -> None:
    """Show an org's plan, billing state and usage this month (or in a past month)."""
    try:
        month = None if period is None else BillingPeriod.parse(period)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(render_summary(*with_kernel(lambda kernel: kernel.invoices.estimate(org_id, month))))


def render_summary(summary: OrgBillingSummary, estimate: Estimate) -> str:
    """A plain-text table of an org's billing summary, and what its month comes to."""
    plan, state, period = summary.plan, summary.state, summary.period
    lines = [
        f"org        {summary.org_id}",
        f"plan       {plan.name} ({plan.slug}), {plan.currency} {money_text(plan.monthly_price)}"
        "/month",
        f"status     {state.status.value}"
        + (
            f", {summary.trial_days_left} day(s) of trial left"
            if summary.trial_days_left is not None
            else ""
        ),
        f"period     {period.start:%Y-%m-%d} to {period.last_day:%Y-%m-%d} "
        f"({period.days_left(summary.generated_at)} day(s) left)",
        "",
        f"{'metric':<16}{'used':>14}{'included':>14}{'used %':>9}  note",
    ]
    for line in summary.usage:
        included = "unlimited" if line.limit is None else f"{line.limit:,}"
        percent = "-" if line.percent_used is None else f"{line.percent_used}%"
        notes = []
        if line.soft_limit_exceeded:
            notes.append(
                f"over limit by {line.overage_quantity:,}, est. "
                f"{plan.currency} {money_text(line.overage_amount)}"
            )
        if line.peak is not None:
            notes.append(f"peak {line.peak:,}")
        if line.policy.mode is Enforcement.HARD and line.limit is not None:
            notes.append(f"{line.policy.describe()} limit")
        row = f"{line.metric.key:<16}{line.used:>14,}{included:>14}{percent:>9}  " + "; ".join(
            notes
        )
        lines.append(row.rstrip())
    lines.append("")
    if estimate.invoice is not None:
        lines.append(
            f"invoiced   {plan.currency} {money_text(estimate.total)}: {estimate.invoice.number}"
        )
    else:
        lines.append(
            f"estimated  {plan.currency} {money_text(estimate.total)}: the upcoming invoice so "
            "far, before tax"
            if summary.period.key == BillingPeriod.containing(summary.generated_at).key
            else f"estimated  {plan.currency} {money_text(estimate.total)}, before tax"
        )
        lines += [f"           ({note})" for note in estimate.notes]
    lines.append("over a limit" if summary.any_soft_limit_exceeded else "within all limits")
    return "\n".join(lines)

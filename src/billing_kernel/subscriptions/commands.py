"""`billing-kernel subscriptions ...`: an org's plan changes, previewed to the cent, made
(an upgrade at once, a downgrade at the month's end), and a scheduled one canceled."""

from __future__ import annotations

import typer

from billing_kernel.commands import echo_each, with_kernel
from billing_kernel.common.money import money_text
from billing_kernel.subscriptions.service.changes import PlanChange

subscriptions_app = typer.Typer(help="An org's plan changes.", no_args_is_help=True)


def change_lines(change: PlanChange, *, made: bool) -> list[str]:
    """What a change does: when, the lines it adds, and the upcoming invoice before and
    after, in the plan's currency."""
    currency = change.upcoming_after.currency
    to = f"{change.plan.name} ({change.plan.slug} v{change.plan.version})"
    when = (
        f"on {change.effective_at:%Y-%m-%d %H:%M} UTC (scheduled)"
        if change.scheduled
        else "at once"
    )
    verb = "moves" if made else "would move"
    lines = [
        f"{change.state.org_id} {verb} from {change.current.name} to {to} {when}: {change.kind}"
    ]
    lines += [
        f"  {line.description:<64} {currency} {money_text(line.amount):>10}"
        for line in change.lines
    ]
    lines.append(
        f"upcoming invoice {currency} {money_text(change.upcoming_before.total)} before, "
        f"{money_text(change.upcoming_after.total)} after"
    )
    return lines


@subscriptions_app.command("preview")
def subscriptions_preview(org_id: str, plan: str) -> None:
    """What moving ORG_ID to PLAN would do, to the cent; nothing is changed."""
    echo_each(
        change_lines(
            with_kernel(lambda kernel: kernel.plan_changes.preview(org_id, plan)), made=False
        )
    )


@subscriptions_app.command("change")
def subscriptions_change(org_id: str, plan: str) -> None:
    """Move ORG_ID to PLAN: an upgrade (or the same price) at once, prorated; a downgrade at
    the month's end (BILLING_DOWNGRADE), which `cancel-scheduled` drops."""
    echo_each(
        change_lines(
            with_kernel(lambda kernel: kernel.plan_changes.change(org_id, plan)), made=True
        )
    )


@subscriptions_app.command("cancel-scheduled")
def subscriptions_cancel_scheduled(org_id: str) -> None:
    """Drop ORG_ID's scheduled plan change, if it has one."""
    canceled = with_kernel(lambda kernel: kernel.subscriptions.cancel_scheduled(org_id))
    typer.echo(f"{org_id}: scheduled change canceled" if canceled else f"{org_id}: none scheduled")

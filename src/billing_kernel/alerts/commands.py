"""`billing-kernel alerts ...`: an org's alerts this month (or another), and what it alerts
at."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.alerts.rules import Threshold, parse_threshold
from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.errors import InvalidInput
from billing_kernel.events.rules import EventType
from billing_kernel.kernel import Kernel

alerts_app = typer.Typer(help="Usage alerts and their thresholds.", no_args_is_help=True)


@alerts_app.command("list")
def alerts_list(
    org_id: str,
    period: Annotated[
        str | None, typer.Option(help="A month, YYYY-MM (default: this month).")
    ] = None,
) -> None:
    """ORG_ID's alerts in a month: each threshold crossed (or block), how often, where usage
    stood, and whether it is resolved."""
    try:
        month = None if period is None else BillingPeriod.parse(period)
    except ValueError as exc:
        fail(str(exc))

    async def work(kernel: Kernel) -> list[str]:
        chosen = month or BillingPeriod.containing(kernel.now())
        return [
            f"{a.metric:<20} {a.threshold:<10} {a.status:<9} x{a.crossings}  "
            f"{a.used:,} of {'unlimited' if a.limit is None else f'{a.limit:,}'}  "
            f"since {a.crossed_at:%Y-%m-%d %H:%M} UTC"
            for a in await kernel.alerts.states(org_id, chosen)
        ]

    echo_each(with_kernel(work))


@alerts_app.command("thresholds")
def alerts_thresholds(
    org_id: str,
    metric: Annotated[str | None, typer.Argument(help="Set this metric's thresholds.")] = None,
    thresholds: Annotated[
        list[str] | None,
        typer.Argument(help="80% (of the limit) or 5000 (units), each; `none`: no alert."),
    ] = None,
) -> None:
    """What ORG_ID alerts at, per metric (its own, or its plan's); with METRIC and
    THRESHOLDS, set the org's own for it (replacing its plan's)."""
    if not thresholds:
        shown = with_kernel(lambda kernel: kernel.alerts.thresholds(org_id))
        echo_each(
            f"{key:<20} {','.join(t.key for t in each) or 'none':<20} "
            f"{'its own' if own else 'its plan'}"
            for key, (each, _limit, own) in shown.items()
            if metric in (None, key)
        )
        return
    assert metric is not None  # typer fills arguments in order
    try:
        wanted: list[Threshold] = [
            parse_threshold(text) for text in thresholds if thresholds != ["none"]
        ]
    except InvalidInput as exc:
        fail(exc.message)
    events = with_kernel(lambda kernel: kernel.alerts.set_thresholds(org_id, metric, wanted))
    crossed = sum(e.event_type is EventType.THRESHOLD_CROSSED for e in events)
    now = [f"{crossed} crossed"] if crossed else []
    now += [f"{len(events) - crossed} back under"] if len(events) > crossed else []
    typer.echo(
        f"{org_id} {metric}: alerts at {','.join(t.key for t in wanted) or 'none'}"
        + (f" ({', '.join(now)} at once)" if now else "")
    )

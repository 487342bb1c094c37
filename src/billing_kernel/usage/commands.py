"""`billing-kernel usage ...`: recording usage from the command line, and where event
retention stands."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated

import typer

from billing_kernel.commands import with_kernel
from billing_kernel.kernel import Kernel
from billing_kernel.usage.service.retention import Review

usage_app = typer.Typer(help="Usage.", no_args_is_help=True)


@usage_app.command("record")
def usage_record(
    org_id: str,
    metric: str,
    quantity: int,
    key: Annotated[str | None, typer.Option(help="Idempotency key (default: a new one).")] = None,
    at: Annotated[
        datetime | None, typer.Option(help="Event time, ISO 8601 with offset (default: now).")
    ] = None,
) -> None:
    """Record usage for an org, exactly once per idempotency key."""
    idempotency_key = key or uuid.uuid4().hex
    result = with_kernel(
        lambda kernel: kernel.usage.record(
            org_id, metric, quantity, idempotency_key=idempotency_key, occurred_at=at
        )
    )
    typer.echo(
        f"{result.status.value}: {quantity:,} {metric} for {org_id} "
        f"in {result.event.period.key:%B %Y} (key {idempotency_key})"
    )
    if result.created_org:
        typer.echo(
            f"created org {org_id}: it was not known (if you meant an existing org, check "
            "the id; `billing-kernel orgs create` names new ones on purpose)"
        )


def _months(months: Sequence[date]) -> str:
    return ", ".join(f"{month:%Y-%m}" for month in months) or "none"


@usage_app.command("retention")
def usage_retention(
    forget: Annotated[
        bool, typer.Option("--forget", help="Forget the months due now, as the worker would.")
    ] = False,
) -> None:
    """Where event retention stands (BILLING_EVENT_RETENTION_MONTHS): the months whose events
    are forgotten, those due, and those that wait for an invoice; with --forget, forget the
    due ones now rather than at the worker's next round."""

    async def work(kernel: Kernel) -> tuple[int | None, list[date], Review]:
        forgot = await kernel.retention.forget_due() if forget else []
        return kernel.retention.months, forgot, await kernel.retention.review()

    months, forgot, review = with_kernel(work)
    if months is None:
        typer.echo("BILLING_EVENT_RETENTION_MONTHS is unset: every event is kept")
    else:
        typer.echo(f"events are kept {months} whole month(s) past their month")
    typer.echo(f"forgotten: {_months(review.forgotten)}")
    if forget:
        typer.echo(f"forgot now: {_months(forgot)}")
    typer.echo(f"due: {_months(review.due)}")
    typer.echo(f"kept until all of the month is invoiced: {_months(review.waiting)}")

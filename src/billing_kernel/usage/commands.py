"""`billing-kernel usage ...`: recording usage from the command line."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import typer

from billing_kernel.commands import with_kernel

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

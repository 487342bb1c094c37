"""`billing-kernel check`: a quota decision, and with `--consume` the atomic consume."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.commands import with_kernel


def check(
    org_id: str,
    metric: str,
    amount: Annotated[int, typer.Argument(help="How much more the org would use.")] = 1,
    consume: Annotated[
        str | None,
        typer.Option(
            metavar="IDEMPOTENCY_KEY",
            help="Also record the amount as usage if allowed, in one atomic step, under this "
            "idempotency key (a retry with it is answered with the first decision).",
        ),
    ] = None,
) -> None:
    """Ask for a quota decision: may the org use `amount` more of `metric` now? Exits 2
    when refused."""
    if consume is None:
        decision = with_kernel(lambda kernel: kernel.quota.check(org_id, metric, amount))
        recorded = ""
    else:
        consumption = with_kernel(
            lambda kernel: kernel.quota.consume(org_id, metric, amount, idempotency_key=consume)
        )
        decision = consumption.decision
        recorded = " [recorded]" if decision.allowed else ""
        if consumption.replayed:
            recorded += " [answered before under this key]"
    verdict = "allowed" if decision.allowed else "refused"
    typer.echo(f"{verdict} ({decision.reason.value}): {decision.message}{recorded}")
    if not decision.allowed:
        raise typer.Exit(code=2)

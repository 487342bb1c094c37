"""`billing-kernel check`: a quota decision, and with `--consume` the atomic consume;
`billing-kernel limits ...`: an org's own limits."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.quota.rules import Terms


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


limits_app = typer.Typer(help="An org's own limits, over its plan's.", no_args_is_help=True)


def terms_text(metric: str, terms: Terms) -> str:
    limit = "unlimited" if terms.limit is None else f"{terms.limit:,}"
    return f"{metric:<20} {limit:>14}  {terms.policy.describe()}"


@limits_app.command("show")
def limits_show(org_id: str) -> None:
    """Every metric's terms for ORG_ID: its limit and how it is enforced (its plan's, after
    the org's own)."""
    terms = with_kernel(lambda kernel: kernel.quota.terms(org_id))
    echo_each(terms_text(metric, each) for metric, each in terms.items())


@limits_app.command("set")
def limits_set(
    org_id: str,
    metric: str,
    limit: Annotated[str, typer.Argument(help="A whole number, or `unlimited`.")],
) -> None:
    """Give ORG_ID a limit of its own for METRIC, replacing its plan's (the plan's policy
    still applies)."""
    if limit == "unlimited":
        quantity: int | None = None
    elif limit.isdigit():
        quantity = int(limit)
    else:
        fail(f"limit must be a whole number from 0 or `unlimited`, got {limit!r}")
    terms = with_kernel(lambda kernel: kernel.quota.set_override(org_id, metric, quantity))
    typer.echo(f"{org_id} {terms_text(metric, terms)} (its own)")


@limits_app.command("clear")
def limits_clear(org_id: str, metric: str) -> None:
    """Return ORG_ID to its plan's terms for METRIC."""
    terms = with_kernel(lambda kernel: kernel.quota.clear_override(org_id, metric))
    typer.echo(f"{org_id} {terms_text(metric, terms)} (its plan's)")

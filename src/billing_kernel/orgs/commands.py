"""`billing-kernel orgs ...`: creating orgs, their billing status and their aliases."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.commands import with_kernel
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus, OrgOrigin

orgs_app = typer.Typer(help="Organizations.", no_args_is_help=True)


@orgs_app.command("create")
def orgs_create(
    org_id: str,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    plan: Annotated[str | None, typer.Option(help="Plan slug (default: the default plan).")] = None,
) -> None:
    """Create an org and seed its billing state (trial on the default plan)."""
    state = with_kernel(
        lambda kernel: kernel.orgs.create(
            org_id, name=name, plan_slug=plan, created_via=OrgOrigin.CLI
        )
    )
    typer.echo(
        f"org {state.org_id}: plan {state.plan_slug}, status {state.status.value}, "
        f"trial ends {state.trial_ends_at:%Y-%m-%d}"
        if state.trial_ends_at
        else ""
    )


@orgs_app.command("set-status")
def orgs_set_status(org_id: str, status: BillingStatus) -> None:
    """Put an org in a billing status (as its payments say)."""
    state = with_kernel(lambda kernel: kernel.subscriptions.set_status(org_id, status))
    since = f"{state.status_since:%Y-%m-%d %H:%M} UTC"
    typer.echo(f"org {state.org_id}: status {state.status.value} since {since}")


@orgs_app.command("aliases")
def orgs_aliases(
    org_id: str,
    aliases: Annotated[
        list[str] | None,
        typer.Argument(help="Set exactly these (another billing system's customer ids)."),
    ] = None,
    clear: Annotated[bool, typer.Option(help="Remove every alias of the org.")] = False,
) -> None:
    """Show an org's aliases, or set them: the ids the compatible protocols (Lago,
    OpenMeter, Stripe, Polar) may name the org by."""

    async def aliased(kernel: Kernel) -> list[str]:
        if aliases or clear:
            return await kernel.orgs.set_aliases(org_id, aliases or [])
        return await kernel.orgs.aliases(org_id)

    found = with_kernel(aliased)
    typer.echo(f"org {org_id}: " + (", ".join(found) if found else "no aliases"))

"""`billing-kernel orgs ...`: creating orgs, their billing status and their aliases."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.commands import echo_each, with_kernel
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus, Org, OrgOrigin

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


@orgs_app.command("list")
def orgs_list(
    plan: Annotated[str | None, typer.Option(help="Only the orgs on this plan.")] = None,
    status: Annotated[BillingStatus | None, typer.Option(help="Only in this status.")] = None,
    after: Annotated[str | None, typer.Option(help="Start after this org id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, by id.")] = 100,
) -> None:
    """Orgs in id order: id, name, plan and version, status."""
    found = with_kernel(
        lambda kernel: kernel.orgs.list_orgs(
            after=after, limit=limit, plan_slug=plan, status=status
        )
    )
    echo_each(
        f"{org.org_id:<24} {org.name or '-':<24} {org.state.plan_slug} v{org.state.plan_version}"
        f"  {org.state.status.value}"
        for org in found
    )


@orgs_app.command("show")
def orgs_show(org_id: str) -> None:
    """One org: its name, plan, status, trial, when and how it was created, its aliases and
    members."""

    async def read(kernel: Kernel) -> tuple[Org, list[str], int]:
        org = await kernel.orgs.get(org_id)
        return org, await kernel.orgs.aliases(org_id), len(await kernel.members.of_org(org_id))

    org, aliases, members = with_kernel(read)
    state = org.state
    in_trial = state.status is BillingStatus.TRIAL and state.trial_ends_at is not None
    trial = f", trial ends {state.trial_ends_at:%Y-%m-%d}" if in_trial else ""
    for label, value in (
        ("org", org.org_id),
        ("name", org.name or "-"),
        ("plan", f"{state.plan_slug} v{state.plan_version}"),
        ("status", f"{state.status.value} since {state.status_since:%Y-%m-%d %H:%M} UTC{trial}"),
        ("created", f"{org.created_at:%Y-%m-%d %H:%M} UTC ({org.created_via.value})"),
        ("aliases", ", ".join(aliases) or "none"),
        ("members", f"{members}"),
    ):
        typer.echo(f"{label:<8} {value}")


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

"""`billing-kernel members ...`: who belongs to an org, with which role (its seats)."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.commands import echo_each, with_kernel
from billing_kernel.members.rules import MemberRole

members_app = typer.Typer(help="Organization members (seats).", no_args_is_help=True)


@members_app.command("add")
def members_add(
    org_id: str,
    user_id: str,
    role: Annotated[MemberRole, typer.Option(help="Role in the org.")] = MemberRole.MEMBER,
    email: Annotated[str | None, typer.Option(help="The user's email.")] = None,
) -> None:
    """Add a user to an org (or change their role)."""
    seats = with_kernel(lambda kernel: kernel.members.add(org_id, user_id, role, email=email))
    typer.echo(f"{user_id} is {role.value} of {org_id}; {seats} seat(s)")


@members_app.command("remove")
def members_remove(org_id: str, user_id: str) -> None:
    """Remove a user from an org."""
    seats = with_kernel(lambda kernel: kernel.members.remove(org_id, user_id))
    typer.echo(f"{user_id} removed from {org_id}; {seats} seat(s)")


@members_app.command("list")
def members_list(org_id: str) -> None:
    """An org's members and their roles, by user id."""
    found = with_kernel(lambda kernel: kernel.members.of_org(org_id))
    echo_each(f"{user_id:<32} {role.value}" for user_id, role in found)

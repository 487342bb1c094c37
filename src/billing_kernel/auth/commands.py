"""`billing-kernel api-keys ...` (service keys) and `billing-kernel token` (a user JWT for
trying the API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from billing_kernel.auth.rules import parse_scopes
from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.commands import settings as configured_settings
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.rules import OrgOrigin

keys_app = typer.Typer(help="Service API keys.", no_args_is_help=True)


def token(
    user: Annotated[str, typer.Option(help="The user id (`sub`).")],
    org: Annotated[
        str | None,
        typer.Option(help="Also make the user a member of this org, creating what is missing."),
    ] = None,
    role: Annotated[MemberRole, typer.Option(help="Role in --org.")] = MemberRole.MEMBER,
    hours: Annotated[int, typer.Option(help="Validity.")] = 24,
) -> None:
    """Print a user JWT signed with the configured secret, for trying the API."""
    settings = configured_settings()
    secret = settings.signing_secret()
    if not secret:
        fail("set BILLING_JWT_SECRET (or BILLING_DEV_MODE=true)")
    if org is not None:

        async def join(kernel: Kernel) -> None:
            await kernel.orgs.create(org, created_via=OrgOrigin.CLI)
            await kernel.members.add(org, user, role)

        with_kernel(join)
    from billing_kernel.auth.tokens import issue_token  # PyJWT: only to sign

    typer.echo(issue_token(secret, user, datetime.now(UTC), timedelta(hours=hours)))


@keys_app.command("create")
def api_keys_create(
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: usage:write, quota:check, billing:admin.")
    ],
    org: Annotated[str | None, typer.Option(help="Restrict the key to one org.")] = None,
    name: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
) -> None:
    """Create a service API key. The key is printed once and never stored in clear."""
    try:
        granted = parse_scopes(s for s in scopes.split(",") if s.strip())
    except ValueError as exc:
        fail(str(exc))
    key, plaintext = with_kernel(
        lambda kernel: kernel.api_keys.create(granted, org_id=org, name=name)
    )
    typer.echo(plaintext)
    typer.secho(
        f"key id {key.key_id}; scopes {' '.join(sorted(key.scopes))}; "
        f"{'org ' + key.org_id if key.org_id else 'every org'}. Store it now: it is "
        "not shown again.",
        err=True,
    )


@keys_app.command("list")
def api_keys_list() -> None:
    """List API keys (never their secrets)."""
    keys = with_kernel(lambda kernel: kernel.api_keys.list_all())
    echo_each(
        (
            f"{key.key_id}  {_key_state(key.revoked_at):<18} {' '.join(sorted(key.scopes)):<40} "
            f"{key.org_id or '(every org)'}  {key.name or ''}".rstrip()
        )
        for key in keys
    )


def _key_state(revoked_at: datetime | None) -> str:
    return f"revoked {revoked_at:%Y-%m-%d}" if revoked_at else "active"


@keys_app.command("revoke")
def api_keys_revoke(key_id: str) -> None:
    """Revoke an API key at once."""
    with_kernel(lambda kernel: kernel.api_keys.revoke(key_id))
    typer.echo(f"revoked {key_id}")

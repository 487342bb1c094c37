"""The `billing-kernel` command line: each capability's commands (its `commands.py`),
mounted here, and the deployment's own: migrate, serve, demo."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from billing_kernel.alerts.commands import alerts_app
from billing_kernel.auth.commands import keys_app, token
from billing_kernel.commands import database_url, fail, options, schema, with_kernel
from billing_kernel.commands import settings as configured_settings
from billing_kernel.credit_notes.commands import credit_notes_app
from billing_kernel.db import migrate as migrations
from billing_kernel.demo import DEMO_ORG, DEMO_OWNER, seed_catalogue, seed_demo
from billing_kernel.discounts.commands import coupons_app
from billing_kernel.features.commands import features_app
from billing_kernel.invoices.commands import invoices_app
from billing_kernel.invoices.rules import Estimate
from billing_kernel.kernel import Kernel
from billing_kernel.members.commands import members_app
from billing_kernel.metrics.commands import metrics_app
from billing_kernel.notifications.commands import webhooks_app, worker
from billing_kernel.orgs.commands import orgs_app
from billing_kernel.payments.commands import payments_app
from billing_kernel.plans.commands import plans_app
from billing_kernel.quota.commands import check, limits_app
from billing_kernel.sandbox.commands import clock_app
from billing_kernel.subscriptions.commands import subscriptions_app
from billing_kernel.summary.commands import render_summary, summary
from billing_kernel.summary.rules import OrgBillingSummary
from billing_kernel.usage.commands import usage_app

app = typer.Typer(
    help="billing-kernel: plans, org billing state and monthly usage.", no_args_is_help=True
)
app.add_typer(keys_app, name="api-keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(invoices_app, name="invoices")
app.add_typer(metrics_app, name="metrics")
app.command()(worker)
app.add_typer(plans_app, name="plans")
app.add_typer(orgs_app, name="orgs")
app.add_typer(members_app, name="members")
app.add_typer(usage_app, name="usage")
app.add_typer(clock_app, name="clock")
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(limits_app, name="limits")
app.add_typer(features_app, name="features")
app.add_typer(coupons_app, name="coupons")
app.add_typer(alerts_app, name="alerts")
app.add_typer(payments_app, name="payments")
app.add_typer(credit_notes_app, name="credit-notes")


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say which database each command uses.")
    ] = False,
) -> None:
    """The database is BILLING_DATABASE_URL (default: ./billing.db in the current directory)."""
    options.verbose = verbose


@app.command()
def migrate(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="REVISION",
            help="Stop at this revision instead of the newest (a migration taken in steps "
            "while kernels of an earlier version run: see docs/operations.md).",
        ),
    ] = None,
) -> None:
    """Create or upgrade the schema on BILLING_DATABASE_URL, or BILLING_DATABASE_DIRECT_URL
    when set (it offers no plan: `demo` seeds the demo's, `plans create --default` the first
    of your own)."""
    url = configured_settings().database_direct_url or database_url()
    before = asyncio.run(schema(url))
    if before.unreachable is not None:
        fail(before.problem or before.unreachable)
    target = before.head if to is None else to
    chain = migrations.revisions()
    if target not in chain:
        fail(f"--to {to}: no such schema revision (they run from {chain[0]} to {chain[-1]})")
    if (
        to is not None
        and before.current in chain
        and chain.index(to) <= chain.index(before.current)
    ):
        fail(f"--to {to}: {before.url} is already at schema revision {before.current}")
    try:
        migrations.upgrade(url, target or "head")
    except migrations.MigrationFailed as exc:
        fail(str(exc))
    if before.current is None:
        typer.echo(
            f"created the billing-kernel schema (revision {target}) in {before.url}; "
            "it offers no plan yet: `billing-kernel plans create --default PLAN.json` "
            "(or `billing-kernel demo` to try the kernel out)"
        )
    elif before.current != target:
        typer.echo(f"upgraded {before.url} from schema revision {before.current} to {target}")
    else:
        typer.echo(f"{before.url} is up to date (schema revision {target})")
    if not migrations.runs_on(target, before.head):
        typer.echo(
            f"this version runs on schema revision {before.head}: "
            "`billing-kernel migrate` takes the rest"
        )


app.command()(check)
app.command()(summary)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes, each accepting on its own socket.")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (uvicorn). Refuses to start with unsafe settings."""
    settings = configured_settings()
    problems = settings.problems_for_serving()
    if problems:
        fail("refusing to start: " + "; ".join(problems))
    state = asyncio.run(schema(database_url()))
    if state.problem is not None:
        fail(state.problem)
    base = f"http://{host}:{port}"
    typer.echo(f"API:       {base}/api/v1   (OpenAPI docs: {base}/docs)")
    typer.echo(f"Dashboard: {base}/app/billing")
    from billing_kernel import server  # uvicorn: only for serving

    try:
        server.serve(host, port, workers, log_level)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")


app.command()(token)


@app.command()
def openapi() -> None:
    """Print the API's OpenAPI document (JSON), as the kernel serves it at /openapi.json: to
    generate a client (the TypeScript SDK's types are generated from it)."""
    import json

    from billing_kernel.api.app import openapi_document  # FastAPI: only for this command

    typer.echo(json.dumps(openapi_document(), indent=2, ensure_ascii=False))


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="The port `serve` will use, for the links.")] = 8000,
    plans_only: Annotated[
        bool, typer.Option("--plans-only", help="Seed only the demo's metrics and plans.")
    ] = False,
) -> None:
    """Seed the demo's metrics and plans (internal-dev the default), and a demo org with
    members and usage, and show its summary; in dev mode, also print a token for its owner.
    Idempotent. For trying the kernel out: a deployment offers only the plans its operator
    creates."""
    if plans_only:
        default = with_kernel(seed_catalogue)
        typer.echo(f"the demo's metrics and plans are there; new orgs start on {default}")
        return

    async def seeded(kernel: Kernel) -> tuple[OrgBillingSummary, Estimate]:
        await seed_demo(kernel, datetime.now(UTC))
        return await kernel.invoices.estimate(DEMO_ORG)

    typer.echo(render_summary(*with_kernel(seeded)))
    settings = configured_settings()
    if settings.dev_mode:
        from billing_kernel.auth.tokens import issue_token  # PyJWT: only to sign

        owner_token = issue_token(
            settings.signing_secret(), DEMO_OWNER, datetime.now(UTC), timedelta(days=7)
        )
        typer.echo(
            f"\nThe billing page of {DEMO_ORG}, signed in as its owner (dev mode):\n"
            f"  http://127.0.0.1:{port}/app/login?token={owner_token}\n"
            f"\nA dev token for {DEMO_OWNER}, valid 7 days:\n"
            f"  export TOKEN={owner_token}\n"
            '  curl -H "Authorization: Bearer $TOKEN" '
            f"http://127.0.0.1:{port}/api/v1/billing/org/summary"
        )

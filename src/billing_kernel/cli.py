"""The `billing-kernel` command line: thin commands over the kernel's services."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn, TypeVar

import typer

from billing_kernel import server
from billing_kernel.alerts.rules import EventType
from billing_kernel.auth.rules import parse_scopes
from billing_kernel.auth.tokens import issue_token
from billing_kernel.common.money import money_text
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import get_settings
from billing_kernel.db import migrate as migrations
from billing_kernel.db.database import Database
from billing_kernel.demo import DEMO_ORG, DEMO_OWNER, seed_demo
from billing_kernel.errors import BillingError
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.notifications.listener import listen
from billing_kernel.notifications.rules import DeliveryStatus
from billing_kernel.notifications.worker import DeliveryWorker
from billing_kernel.orgs.rules import BillingStatus, OrgOrigin
from billing_kernel.plans.rules import Enforcement, Policy
from billing_kernel.summary.rules import OrgBillingSummary

app = typer.Typer(
    help="billing-kernel: plans, org billing state and monthly usage.", no_args_is_help=True
)
plans_app = typer.Typer(help="Plans.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations.", no_args_is_help=True)
members_app = typer.Typer(help="Organization members (seats).", no_args_is_help=True)
usage_app = typer.Typer(help="Usage.", no_args_is_help=True)
keys_app = typer.Typer(help="Service API keys.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhook endpoints and the delivery log.", no_args_is_help=True)
app.add_typer(keys_app, name="api-keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(plans_app, name="plans")
app.add_typer(orgs_app, name="orgs")
app.add_typer(members_app, name="members")
app.add_typer(usage_app, name="usage")

T = TypeVar("T")

_verbose = False


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say which database each command uses.")
    ] = False,
) -> None:
    """The database is BILLING_DATABASE_URL (default: ./billing.db in the current directory)."""
    global _verbose
    _verbose = verbose


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit code 1: how every expected failure ends."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


def _database_url() -> str:
    url = get_settings().database_url
    if _verbose:
        typer.secho(f"database: {migrations.display_url(url)}", err=True)
    return url


class _SchemaNotReady(Exception):
    pass


async def _schema(database_url: str) -> migrations.SchemaState:
    database = Database(database_url)
    try:
        return await migrations.schema_state(database, database_url)
    finally:
        await database.dispose()


def _with_kernel(work: Callable[[Kernel], Awaitable[T]]) -> T:
    """Run `work` against the configured database, once it is there and migrated; a
    BillingError, or a database that is missing, unmigrated or unreachable, is one line on
    stderr and exit code 1."""
    settings = get_settings()
    url = _database_url()

    async def main() -> T:
        state = await _schema(url)
        if state.problem is not None:
            raise _SchemaNotReady(state.problem)
        kernel = Kernel.open(settings)
        try:
            return await work(kernel)
        finally:
            await kernel.aclose()

    try:
        return asyncio.run(main())
    except _SchemaNotReady as exc:
        _fail(str(exc))
    except BillingError as exc:
        _fail(exc.message)


@app.command()
def migrate() -> None:
    """Create or upgrade the schema (and seed the default plans) on BILLING_DATABASE_URL."""
    url = _database_url()
    before = asyncio.run(_schema(url))
    if before.unreachable is not None:
        _fail(before.problem or before.unreachable)
    try:
        migrations.upgrade(url)
    except migrations.MigrationFailed as exc:
        _fail(str(exc))
    if before.current is None:
        typer.echo(
            f"created the billing-kernel schema (revision {before.head}) and the default "
            f"plans in {before.url}"
        )
    elif before.current != before.head:
        typer.echo(f"upgraded {before.url} from schema revision {before.current} to {before.head}")
    else:
        typer.echo(f"{before.url} is up to date (schema revision {before.head})")


@plans_app.command("list")
def plans_list() -> None:
    """List the active plans with what each includes."""
    plans = _with_kernel(lambda kernel: kernel.plans.list_active())
    for plan in plans:
        typer.echo(f"{plan.slug:<14} {plan.name:<16} {plan.currency} {plan.monthly_price:>8}/month")
        for term in plan.metrics.values():
            included = (
                "unlimited" if term.included_quantity is None else (f"{term.included_quantity:,}")
            )
            per = "" if term.overage_unit_size == 1 else f" per {term.overage_unit_size:,}"
            typer.echo(
                f"    {term.metric:<14} {included:>12} included, then "
                f"{term.overage_unit_price.normalize():f}{per}; {term.policy.describe()} limit"
            )


@plans_app.command("set-policy")
def plans_set_policy(
    plan: str,
    metric: str,
    mode: Annotated[Enforcement, typer.Option(help="soft: never refuse; hard: refuse.")],
    grace_percent: Annotated[
        int, typer.Option(help="Hard: allow this many percent beyond the limit.")
    ] = 0,
    grace_period_hours: Annotated[
        int | None,
        typer.Option(help="Hard: for this many hours after usage first goes beyond the limit."),
    ] = None,
) -> None:
    """Set how a plan enforces a metric's limit, for every org on it."""
    period = None if grace_period_hours is None else timedelta(hours=grace_period_hours)
    policy = Policy(mode, grace_percent, period)
    updated = _with_kernel(lambda kernel: kernel.plans.set_policy(plan, metric, policy))
    term = updated.metrics[metric]
    included = "unlimited" if term.included_quantity is None else f"{term.included_quantity:,}"
    typer.echo(f"{updated.slug} {metric}: {included} included, {term.policy.describe()} limit")


@orgs_app.command("create")
def orgs_create(
    org_id: str,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    plan: Annotated[str | None, typer.Option(help="Plan slug (default: the default plan).")] = None,
) -> None:
    """Create an org and seed its billing state (trial on the default plan)."""
    state = _with_kernel(
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
    state = _with_kernel(lambda kernel: kernel.orgs.set_status(org_id, status))
    since = f"{state.status_since:%Y-%m-%d %H:%M} UTC"
    typer.echo(f"org {state.org_id}: status {state.status.value} since {since}")


@app.command()
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
        decision = _with_kernel(lambda kernel: kernel.quota.check(org_id, metric, amount))
        recorded = ""
    else:
        consumption = _with_kernel(
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


@members_app.command("add")
def members_add(
    org_id: str,
    user_id: str,
    role: Annotated[MemberRole, typer.Option(help="Role in the org.")] = MemberRole.MEMBER,
    email: Annotated[str | None, typer.Option(help="The user's email.")] = None,
) -> None:
    """Add a user to an org (or change their role)."""
    seats = _with_kernel(lambda kernel: kernel.members.add(org_id, user_id, role, email=email))
    typer.echo(f"{user_id} is {role.value} of {org_id}; {seats} seat(s)")


@members_app.command("remove")
def members_remove(org_id: str, user_id: str) -> None:
    """Remove a user from an org."""
    seats = _with_kernel(lambda kernel: kernel.members.remove(org_id, user_id))
    typer.echo(f"{user_id} removed from {org_id}; {seats} seat(s)")


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
    result = _with_kernel(
        lambda kernel: kernel.usage.record(
            org_id, metric, quantity, idempotency_key=idempotency_key, occurred_at=at
        )
    )
    typer.echo(
        f"{result.status.value}: {quantity:,} {metric} for {org_id} "
        f"in {result.event.period.key:%B %Y} (key {idempotency_key})"
    )


@app.command()
def summary(
    org_id: str,
    period: Annotated[
        str | None, typer.Option(help="A past month, YYYY-MM (default: this month).")
    ] = None,
) -> None:
    """Show an org's plan, billing state and usage this month (or in a past month)."""
    try:
        month = None if period is None else BillingPeriod.parse(period)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(
        render_summary(_with_kernel(lambda kernel: kernel.summary.summary(org_id, period=month)))
    )


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
    settings = get_settings()
    problems = settings.problems_for_serving()
    if problems:
        _fail("refusing to start: " + "; ".join(problems))
    state = asyncio.run(_schema(_database_url()))
    if state.problem is not None:
        _fail(state.problem)
    base = f"http://{host}:{port}"
    typer.echo(f"API:       {base}/api/v1   (OpenAPI docs: {base}/docs)")
    typer.echo(f"Dashboard: {base}/app/billing")
    try:
        server.serve(host, port, workers, log_level)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")


@app.command()
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
    settings = get_settings()
    secret = settings.signing_secret()
    if not secret:
        _fail("set BILLING_JWT_SECRET (or BILLING_DEV_MODE=true)")
    if org is not None:

        async def join(kernel: Kernel) -> None:
            await kernel.orgs.create(org, created_via=OrgOrigin.CLI)
            await kernel.members.add(org, user, role)

        _with_kernel(join)
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
        _fail(str(exc))
    key, plaintext = _with_kernel(
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
    for key in _with_kernel(lambda kernel: kernel.api_keys.list_all()):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        typer.echo(
            f"{key.key_id}  {state:<18} {' '.join(sorted(key.scopes)):<40} "
            f"{key.org_id or '(every org)'}  {key.name or ''}".rstrip()
        )


@keys_app.command("revoke")
def api_keys_revoke(key_id: str) -> None:
    """Revoke an API key at once."""
    _with_kernel(lambda kernel: kernel.api_keys.revoke(key_id))
    typer.echo(f"revoked {key_id}")


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="The port `serve` will use, for the links.")] = 8000,
) -> None:
    """Seed a demo org with members and usage (idempotent) and show its summary; in dev mode,
    also print a token for its owner."""

    typer.echo(render_summary(_with_kernel(lambda kernel: seed_demo(kernel, datetime.now(UTC)))))
    settings = get_settings()
    if settings.dev_mode:
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


@app.command()
def worker(
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Deliver events (webhooks, email, Slack) until stopped (Ctrl-C or SIGTERM). On
    PostgreSQL, run as many as you like side by side."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")

    async def run(kernel: Kernel) -> None:
        delivery = DeliveryWorker(kernel)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, delivery.stop)
        typer.echo(f"delivering events from {migrations.display_url(kernel.settings.database_url)}")
        await delivery.run()

    _with_kernel(run)


@webhooks_app.command("add")
def webhooks_add(
    url: str,
    org: Annotated[str | None, typer.Option(help="Only this org's events (default: all).")] = None,
    event: Annotated[
        list[EventType] | None, typer.Option(help="An event type it wants (repeat; default: all).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
) -> None:
    """Register a webhook endpoint; prints its id and signing secret (shown only now)."""
    endpoint = _with_kernel(
        lambda kernel: kernel.notifications.add_endpoint(
            url, event_types=[str(e) for e in event or []], org_id=org, description=description
        )
    )
    typer.echo(f"{endpoint.endpoint_id}  {endpoint.url}")
    typer.echo(f"secret: {endpoint.secret}")


@webhooks_app.command("list")
def webhooks_list(org: Annotated[str | None, typer.Option(help="Only this org's.")] = None) -> None:
    """The endpoints, without their secrets."""
    found = _with_kernel(lambda kernel: kernel.notifications.endpoints(org_id=org, limit=1000))
    for e in found:
        types = ",".join(e.event_types) or "all events"
        typer.echo(f"{e.endpoint_id}  {e.url}  {e.org_id or 'every org'}  {types}")


@webhooks_app.command("remove")
def webhooks_remove(endpoint_id: str) -> None:
    """Stop sending to an endpoint."""
    _with_kernel(lambda kernel: kernel.notifications.remove_endpoint(endpoint_id))
    typer.echo(f"removed {endpoint_id}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate(endpoint_id: str) -> None:
    """A new signing secret; the old one signs too until the overlap ends."""
    endpoint = _with_kernel(lambda kernel: kernel.notifications.rotate_secret(endpoint_id))
    typer.echo(f"secret: {endpoint.secret}")
    typer.echo(f"the previous secret also signs until {endpoint.previous_until:%Y-%m-%d %H:%M} UTC")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    status: Annotated[DeliveryStatus | None, typer.Option(help="Only in this status.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """The latest deliveries, newest first, with their last attempt."""
    found = _with_kernel(
        lambda kernel: kernel.notifications.deliveries(
            org_id=None, endpoint_id=endpoint, status=status, limit=limit
        )
    )
    for delivery, attempts in found:
        last = attempts[-1] if attempts else None
        answer = "" if last is None else f"  {last.status_code or '-'} {last.error or ''}".rstrip()
        typer.echo(
            f"{delivery.delivery_id}  {delivery.event_id}  {delivery.channel.value}:"
            f"{delivery.target}  {delivery.status.value}  {len(attempts)} attempt(s){answer}"
        )


@webhooks_app.command("replay")
def webhooks_replay(delivery_id: str) -> None:
    """Send a delivery again (same webhook-id), from the start of the retry schedule."""
    delivery, _ = _with_kernel(lambda kernel: kernel.notifications.replay(delivery_id))
    typer.echo(f"{delivery.delivery_id}: {delivery.status.value}")


@webhooks_app.command("listen")
def webhooks_listen(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 9000,
    secret: Annotated[
        str | None, typer.Option(help="The endpoint's whsec_ secret: verify each signature.")
    ] = None,
) -> None:
    """A webhook receiver for trying things out: prints each event it gets (and whether its
    signature verifies), answers 204."""
    listen(port, secret, typer.echo)


def render_summary(summary: OrgBillingSummary) -> str:
    """A plain-text table of an org's billing summary."""
    plan, state, period = summary.plan, summary.state, summary.period
    lines = [
        f"org        {summary.org_id}",
        f"plan       {plan.name} ({plan.slug}), {plan.currency} {money_text(plan.monthly_price)}"
        "/month",
        f"status     {state.status.value}"
        + (
            f", {summary.trial_days_left} day(s) of trial left"
            if summary.trial_days_left is not None
            else ""
        ),
        f"period     {period.start:%Y-%m-%d} to {period.last_day:%Y-%m-%d} "
        f"({period.days_left(summary.generated_at)} day(s) left)",
        "",
        f"{'metric':<16}{'used':>14}{'included':>14}{'used %':>9}  note",
    ]
    for line in summary.usage:
        included = "unlimited" if line.limit is None else f"{line.limit:,}"
        percent = "-" if line.percent_used is None else f"{line.percent_used}%"
        notes = []
        if line.soft_limit_exceeded:
            notes.append(
                f"over limit by {line.overage_quantity:,}, est. "
                f"{plan.currency} {money_text(line.overage_amount)}"
            )
        if line.peak is not None:
            notes.append(f"peak {line.peak:,}")
        if line.policy.mode is Enforcement.HARD and line.limit is not None:
            notes.append(f"{line.policy.describe()} limit")
        row = f"{line.metric.key:<16}{line.used:>14,}{included:>14}{percent:>9}  " + "; ".join(
            notes
        )
        lines.append(row.rstrip())
    lines.append("")
    lines.append(
        f"estimated  {plan.currency} {money_text(summary.estimated_total)}: "
        f"{money_text(plan.monthly_price)} plan + {money_text(summary.estimated_overage)} "
        "overage so far, before tax"
    )
    lines.append("over a limit" if summary.any_soft_limit_exceeded else "within all limits")
    return "\n".join(lines)

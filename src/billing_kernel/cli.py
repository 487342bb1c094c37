"""The `billing-kernel` command line: thin commands over the kernel's services."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from pydantic import ValidationError

from billing_kernel import server
from billing_kernel.auth.rules import parse_scopes
from billing_kernel.auth.tokens import issue_token
from billing_kernel.commands import database_url, fail, options, schema, with_kernel
from billing_kernel.commands import settings as configured_settings
from billing_kernel.common.money import money_text
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db import migrate as migrations
from billing_kernel.demo import DEMO_ORG, DEMO_OWNER, seed_demo
from billing_kernel.errors import BillingError
from billing_kernel.invoices.commands import invoices_app
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.metrics.commands import metrics_app
from billing_kernel.notifications.commands import webhooks_app, worker
from billing_kernel.orgs.rules import BillingStatus, OrgOrigin
from billing_kernel.plans.rules import Enforcement, Plan, Policy
from billing_kernel.plans.schemas import PlanIn
from billing_kernel.summary.rules import OrgBillingSummary

app = typer.Typer(
    help="billing-kernel: plans, org billing state and monthly usage.", no_args_is_help=True
)
plans_app = typer.Typer(help="Plans.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations.", no_args_is_help=True)
members_app = typer.Typer(help="Organization members (seats).", no_args_is_help=True)
usage_app = typer.Typer(help="Usage.", no_args_is_help=True)
keys_app = typer.Typer(help="Service API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="api-keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(invoices_app, name="invoices")
app.add_typer(metrics_app, name="metrics")
app.command()(worker)
app.add_typer(plans_app, name="plans")
app.add_typer(orgs_app, name="orgs")
app.add_typer(members_app, name="members")
app.add_typer(usage_app, name="usage")


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say which database each command uses.")
    ] = False,
) -> None:
    """The database is BILLING_DATABASE_URL (default: ./billing.db in the current directory)."""
    options.verbose = verbose


@app.command()
def migrate() -> None:
    """Create or upgrade the schema (and seed the default plans) on BILLING_DATABASE_URL."""
    url = database_url()
    before = asyncio.run(schema(url))
    if before.unreachable is not None:
        fail(before.problem or before.unreachable)
    try:
        migrations.upgrade(url)
    except migrations.MigrationFailed as exc:
        fail(str(exc))
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
    plans = with_kernel(lambda kernel: kernel.plans.list_active())
    for plan in plans:
        typer.echo(
            f"{plan.slug:<14} {plan.name:<16} {plan.currency} {plan.monthly_price:>8}/month"
            f"  v{plan.version}"
        )
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
    updated = with_kernel(lambda kernel: kernel.plans.set_policy(plan, metric, policy))
    term = updated.metrics[metric]
    included = "unlimited" if term.included_quantity is None else f"{term.included_quantity:,}"
    typer.echo(f"{updated.slug} {metric}: {included} included, {term.policy.describe()} limit")


PlanFile = Annotated[
    typer.FileText,
    typer.Argument(help="The plan as JSON, as `POST /api/v1/billing/plans` takes it."),
]


def _plan_from(file: typer.FileText) -> Plan:
    try:
        return PlanIn.model_validate_json(file.read()).plan()
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc']) or 'plan'}: {first['msg']}")
    except BillingError as exc:
        fail(exc.message)


def _plan_line(plan: Plan) -> str:
    return (
        f"{plan.slug} v{plan.version}: {plan.name}, {plan.currency} "
        f"{money_text(plan.monthly_price)}/month, {len(plan.metrics)} metric(s)"
    )


@plans_app.command("create")
def plans_create(file: PlanFile) -> None:
    """Offer a new plan: its price and, per metric, what it includes and charges beyond."""
    plan = _plan_from(file)
    typer.echo(_plan_line(with_kernel(lambda kernel: kernel.plans.create(plan))))


@plans_app.command("update")
def plans_update(file: PlanFile) -> None:
    """Change the plan the file names to read as the file does. A new price or new terms
    make a new version, for new subscribers; the orgs on the plan keep theirs."""
    plan = _plan_from(file)
    before = with_kernel(lambda kernel: kernel.plans.get(plan.slug))
    after = with_kernel(lambda kernel: kernel.plans.update(plan))
    typer.echo(_plan_line(after))
    if after.version != before.version:
        typer.echo(
            f"new version {after.version} for new subscribers; the orgs on version "
            f"{before.version} or earlier keep theirs until they change plan"
        )


@plans_app.command("deactivate")
def plans_deactivate(slug: str) -> None:
    """Stop offering a plan (the orgs on it keep it)."""
    plan = with_kernel(lambda kernel: kernel.plans.deactivate(slug))
    typer.echo(f"{plan.slug}: no longer offered")


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
    state = with_kernel(lambda kernel: kernel.orgs.set_status(org_id, status))
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
        fail(str(exc))
    typer.echo(
        render_summary(with_kernel(lambda kernel: kernel.summary.summary(org_id, period=month)))
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
    try:
        server.serve(host, port, workers, log_level)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")


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
    settings = configured_settings()
    secret = settings.signing_secret()
    if not secret:
        fail("set BILLING_JWT_SECRET (or BILLING_DEV_MODE=true)")
    if org is not None:

        async def join(kernel: Kernel) -> None:
            await kernel.orgs.create(org, created_via=OrgOrigin.CLI)
            await kernel.members.add(org, user, role)

        with_kernel(join)
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
    for key in with_kernel(lambda kernel: kernel.api_keys.list_all()):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        typer.echo(
            f"{key.key_id}  {state:<18} {' '.join(sorted(key.scopes)):<40} "
            f"{key.org_id or '(every org)'}  {key.name or ''}".rstrip()
        )


@keys_app.command("revoke")
def api_keys_revoke(key_id: str) -> None:
    """Revoke an API key at once."""
    with_kernel(lambda kernel: kernel.api_keys.revoke(key_id))
    typer.echo(f"revoked {key_id}")


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="The port `serve` will use, for the links.")] = 8000,
) -> None:
    """Seed a demo org with members and usage (idempotent) and show its summary; in dev mode,
    also print a token for its owner."""

    typer.echo(render_summary(with_kernel(lambda kernel: seed_demo(kernel, datetime.now(UTC)))))
    settings = configured_settings()
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

"""`billing-kernel plans ...`: the plans on offer, their terms and policies."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from pydantic import ValidationError

from billing_kernel.commands import fail, with_kernel
from billing_kernel.common.money import money_text
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.errors import BillingError
from billing_kernel.features.rules import describe
from billing_kernel.plans.rules import Enforcement, Plan, Policy
from billing_kernel.plans.schemas import PlanIn

plans_app = typer.Typer(help="Plans.", no_args_is_help=True)

NO_PLANS = (
    "none: this deployment offers no plan yet. Create the first with "
    "`billing-kernel plans create --default PLAN.json` (docs/operations.md, Going live)."
)


@plans_app.command("list")
def plans_list() -> None:
    """List the active plans with what each includes; the default is marked."""
    plans = with_kernel(lambda kernel: kernel.plans.list_active())
    if not plans:
        typer.echo(NO_PLANS)
    for plan in plans:
        typer.echo(
            f"{plan.slug:<14} {plan.name:<16} {plan.currency} "
            f"{money_text(plan.monthly_price):>8}/month"
            f"  v{plan.version}{'  (default: new orgs start on it)' if plan.is_default else ''}"
            f"{'' if plan.is_public else '  (private: assigned, never offered)'}"
        )
        for term in plan.metrics.values():
            included = (
                "unlimited" if term.included_quantity is None else (f"{term.included_quantity:,}")
            )
            typer.echo(
                f"    {term.metric:<14} {included:>12} included, then "
                f"{term.describe_price()}; {term.policy.describe()} limit"
            )
        if plan.features:
            granted = ", ".join(f"{k}: {describe(v)}" for k, v in sorted(plan.features.items()))
            typer.echo(f"    features: {granted}")


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


def _plan_in(file: typer.FileText) -> PlanIn:
    try:
        return PlanIn.model_validate_json(file.read())
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc']) or 'plan'}: {first['msg']}")


def _terms_of(body: PlanIn) -> Plan:
    try:
        return body.plan()
    except BillingError as exc:
        fail(exc.message)


def _plan_line(plan: Plan) -> str:
    return (
        f"{plan.slug} v{plan.version}: {plan.name}, {plan.currency} "
        f"{money_text(plan.monthly_price)}/month, {len(plan.metrics)} metric(s)"
    )


@plans_app.command("create")
def plans_create(
    file: PlanFile,
    default: Annotated[
        bool, typer.Option("--default", help="New orgs start on it from now on.")
    ] = False,
) -> None:
    """Offer a new plan: its price and, per metric, what it includes and charges beyond."""
    body = _plan_in(file)
    plan = _terms_of(body)
    made = with_kernel(lambda kernel: kernel.plans.create(plan, default=default or body.default))
    typer.echo(_plan_line(made))
    if made.is_default:
        typer.echo(f"{made.slug} is the default: new orgs start on it")


@plans_app.command("backtest")
def plans_backtest(
    file: PlanFile,
    period: Annotated[str, typer.Option("--period", help="A closed month, YYYY-MM.")],
    org: Annotated[
        list[str] | None,
        typer.Option("--org", help="Only this org's invoice (repeatable); left out: the plan's."),
    ] = None,
) -> None:
    """What a draft of a plan (a file as `create` takes it, its slug the plan's) would have
    invoiced for a closed month, beside what each org was invoiced. Nothing is written."""
    draft = _terms_of(_plan_in(file))
    try:
        month = BillingPeriod.parse(period)
    except ValueError:
        fail(f"--period {period!r}: a month is written YYYY-MM, such as 2026-11")
    found = with_kernel(lambda kernel: kernel.invoices.backtest(draft, month, org))
    if not found.rows:
        typer.echo(f"no invoice of {found.plan_slug} for {found.period.label} to compare")
        return
    for row in found.rows:
        typer.echo(
            f"{row.org_id} {row.invoice_number} (v{row.plan_version}): "
            f"{money_text(row.invoiced)} invoiced, {money_text(row.draft.total)} with the "
            f"draft ({row.difference:+})"
        )
    typer.echo(
        f"in all, {found.currency}: {money_text(found.invoiced)} invoiced, "
        f"{money_text(found.drafted)} with the draft ({found.difference:+})"
    )


@plans_app.command("set-default")
def plans_set_default(slug: str) -> None:
    """Make a plan the one new orgs start on (the orgs on the old default keep theirs)."""
    plan = with_kernel(lambda kernel: kernel.plans.set_default(slug))
    typer.echo(f"{plan.slug} is the default: new orgs start on it")


@plans_app.command("update")
def plans_update(file: PlanFile) -> None:
    """Change the plan the file names to read as the file does. A new price or new terms
    make a new version, for new subscribers; the orgs on the plan keep theirs."""
    body = _plan_in(file)
    plan = _terms_of(body)
    before = with_kernel(lambda kernel: kernel.plans.get(plan.slug))
    after = with_kernel(lambda kernel: kernel.plans.update(plan, keep_public=body.public is None))
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

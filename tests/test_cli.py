"""The command line, run as a user would: a real process on a real database."""

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.db.migrate import revisions
from billing_kernel.invoices.rules import formula_for_people
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from tests.commands import run_command
from tests.conftest import Clock, new_id

pytestmark = pytest.mark.long


@pytest.fixture(params=["sqlite", "postgres"])
def cli_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    return str(request.getfixturevalue("postgres_url"))


def run(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_command(*args, env={**os.environ, "BILLING_DATABASE_URL": url, **(env or {})})


def migrated(url: str) -> subprocess.CompletedProcess[str]:
    """`migrate`, then the demo's metrics and plans, which these tests use (a migrated
    database offers none)."""
    assert run(url, "migrate").returncode == 0
    return run(url, "demo", "--plans-only")


def test_migrate_create_record_and_summarize(cli_database_url: str) -> None:
    org_id = new_id()
    assert migrated(cli_database_url).returncode == 0
    created = run(cli_database_url, "orgs", "create", org_id, "--name", "Acme", "--plan", "starter")
    assert created.returncode == 0, created.stderr
    assert "status trial" in created.stdout
    first_alias, second_alias = new_id("cus_a"), new_id("cus_b")  # one database for all tests
    aliased = run(cli_database_url, "orgs", "aliases", org_id, second_alias, first_alias)
    assert aliased.stdout.strip() == f"org {org_id}: {first_alias}, {second_alias}"
    assert run(cli_database_url, "orgs", "aliases", org_id).stdout == aliased.stdout
    other = new_id()
    assert run(cli_database_url, "orgs", "create", other).returncode == 0
    taken = run(cli_database_url, "orgs", "aliases", other, first_alias)
    assert taken.returncode == 1
    assert f"alias '{first_alias}' already names another org" in taken.stderr
    cleared = run(cli_database_url, "orgs", "aliases", org_id, "--clear")
    assert cleared.stdout.strip() == f"org {org_id}: no aliases"
    assert (
        run(cli_database_url, "members", "add", org_id, "alice", "--role", "owner").returncode == 0
    )
    first = run(cli_database_url, "usage", "record", org_id, "tokens", "1234567", "--key", "e1")
    again = run(cli_database_url, "usage", "record", org_id, "tokens", "1234567", "--key", "e1")
    assert first.stdout.startswith("accepted"), first.stderr
    assert "created org" not in first.stdout  # made above, on purpose
    assert again.stdout.startswith("duplicate")
    typo = org_id + "x"
    new = run(cli_database_url, "usage", "record", typo, "tokens", "5", "--key", "t1")
    assert new.stdout.splitlines()[1] == (
        f"created org {typo}: it was not known (if you meant an existing org, check the id; "
        "`billing-kernel orgs create` names new ones on purpose)"
    )
    repeat = run(cli_database_url, "usage", "record", typo, "tokens", "5", "--key", "t2")
    assert len(repeat.stdout.splitlines()) == 1
    run(cli_database_url, "usage", "record", org_id, "playbook_runs", "3", "--key", "r1")

    summary = run(cli_database_url, "summary", org_id)
    assert summary.returncode == 0, summary.stderr
    out = summary.stdout
    assert "Starter (starter), USD 49.00/month" in out
    assert "trial, 30 day(s) of trial left" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[5:] if line.strip()}
    assert rows["tokens"][:3] == ["1,234,567", "1,000,000", "123.4%"]
    assert rows["playbook_runs"][:3] == ["3", "200", "1.5%"]
    assert rows["seats"][:3] == ["1", "3", "33.3%"]
    assert "over limit by 234,567, est. USD 4.69" in out
    # A trial is not billed: the upcoming invoice, not the plan's price plus overage.
    assert "estimated  USD 0.00: the upcoming invoice so far, before tax" in out
    assert "(not billed: the org has been in trial (or canceled) all month so far)" in out
    assert "over a limit" in out

    last_month = run(cli_database_url, "summary", org_id, "--period", "2020-01")
    assert "period     2020-01-01 to 2020-01-31 (0 day(s) left)" in last_month.stdout
    assert "(2020-01 is not invoiced: priced by the org's plan as it is now)" in last_month.stdout
    bad_month = run(cli_database_url, "summary", org_id, "--period", "2020-13")
    assert (bad_month.returncode, bad_month.stderr.strip()) == (
        1,
        "error: no such month: '2020-13'",
    )


def test_errors_are_one_clear_line_and_exit_1(cli_database_url: str) -> None:
    migrated(cli_database_url)
    bad = run(cli_database_url, "usage", "record", new_id(), "tokens", "--", "-5")
    assert (bad.returncode, bad.stderr.strip()) == (1, "error: quantity must not be negative")
    missing = run(cli_database_url, "summary", "no-such-org")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: no org 'no-such-org'")


def test_plans_list_shows_the_seeded_plans(cli_database_url: str) -> None:
    seeded = migrated(cli_database_url)
    assert (
        seeded.stdout == "the demo's metrics and plans are there; new orgs start on internal-dev\n"
    )
    listed = run(cli_database_url, "plans", "list")
    assert listed.returncode == 0
    for name in ("internal-dev", "starter", "growth", "enterprise"):
        assert name in listed.stdout
    assert "1,000,000 included, then 0.02 per 1,000" in listed.stdout
    assert "       3 included, then 15.00 each; soft limit" in listed.stdout  # two decimals
    assert "USD    49.00/month  v1" in listed.stdout


def test_an_empty_listing_says_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert run(url, "migrate").returncode == 0
    for listing in (
        ["metrics", "list"],
        ["invoices", "list"],
        ["webhooks", "list"],
        ["api-keys", "list"],
    ):
        listed = run(url, *listing)
        assert (listed.returncode, listed.stdout) == (0, "none\n"), listing
    assert run(url, "plans", "list").stdout.startswith("none: this deployment offers no plan")


def test_migrate_in_steps_stops_where_told_and_the_kernel_waits_for_the_rest(
    tmp_path: Path,
) -> None:
    """`--to` stops at an earlier revision (a migration taken in steps while kernels of an
    earlier version run: docs/operations.md) and says this version needs the rest; every
    other command then refuses in one line until `migrate` takes it. An unknown revision, or
    one already passed, is refused in one line, writing nothing."""
    url = f"sqlite:///{tmp_path / 'steps.db'}"
    head = revisions()[-1]
    refused = run(url, "migrate", "--to", "9999")
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        f"error: --to 9999: no such schema revision (they run from 0001 to {head})",
    )
    assert not (tmp_path / "steps.db").exists()
    first = run(url, "migrate", "--to", "0046")
    assert first.stdout.startswith("created the billing-kernel schema (revision 0046)")
    assert first.stdout.strip().endswith(
        f"this version runs on schema revision {head}: `billing-kernel migrate` takes the rest"
    )
    waiting = run(url, "orgs", "list")
    assert (waiting.returncode, waiting.stderr.strip()) == (
        1,
        f"error: the database sqlite:///{tmp_path / 'steps.db'} is at schema revision 0046, "
        f"this version needs {head}: run `billing-kernel migrate`",
    )
    rest = run(url, "migrate")
    assert (
        rest.stdout.strip()
        == f"upgraded sqlite:///{tmp_path / 'steps.db'} from schema revision 0046 to {head}"
    )
    assert run(url, "demo", "--plans-only").returncode == 0
    past = run(url, "migrate", "--to", "0046")
    assert past.returncode == 1
    assert past.stderr.strip().endswith(f"is already at schema revision {head}")


def test_token_creates_the_membership_and_signs_a_verifiable_jwt(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'token.db'}"
    secret = "a-secret-for-this-test-only-0123456789abcdef"
    migrated(url)
    printed = run(
        url,
        "token",
        "--user",
        "alice",
        "--org",
        "acme",
        "--role",
        "admin",
        env={"BILLING_JWT_SECRET": secret},
    )
    assert printed.returncode == 0, printed.stderr
    claims = jwt.decode(printed.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 24 * 3600
    summary = run(url, "summary", "acme")
    assert "seats                        1" in summary.stdout
    no_secret = run(url, "token", "--user", "alice", env={"BILLING_JWT_SECRET": ""})
    assert no_secret.returncode == 1
    assert "BILLING_JWT_SECRET" in no_secret.stderr


def test_api_keys_are_shown_once_listed_without_secrets_and_revoked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    migrated(url)
    created = run(
        url,
        "api-keys",
        "create",
        "--scopes",
        "usage:write,quota:check",
        "--org",
        "acme",
        "--name",
        "backend",
    )
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    assert plaintext.startswith("bk_")
    key_id = plaintext[3:19]
    listed = run(url, "api-keys", "list").stdout
    assert key_id in listed
    assert "quota:check usage:write" in listed
    assert plaintext[20:] not in listed
    assert run(url, "api-keys", "revoke", key_id).returncode == 0
    assert "revoked" in run(url, "api-keys", "list").stdout
    unknown_scope = run(url, "api-keys", "create", "--scopes", "everything")
    assert unknown_scope.returncode == 1
    assert "unknown scope 'everything'" in unknown_scope.stderr


def test_serve_refuses_to_start_without_a_real_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    refused = run(url, "serve", "--port", "9", env={"BILLING_JWT_SECRET": ""})
    assert refused.returncode == 1
    assert "refusing to start: BILLING_JWT_SECRET is not set" in refused.stderr


def test_a_command_on_an_unmigrated_database_says_so_in_one_line(tmp_path: Path) -> None:
    """Run from a directory with no database, a command names `migrate` and creates no
    empty file; `migrate` says what it created, and `-v` names the database."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BILLING_DATABASE_URL"}
    env["BILLING_DEV_MODE"] = "true"  # so that serve, too, gets as far as the database
    here = {"env": env, "cwd": elsewhere, "capture_output": True, "text": True, "timeout": 60}
    command = [sys.executable, "-m", "billing_kernel"]

    for args in (["plans", "list"], ["summary", "acme"], ["serve", "--port", "9"]):
        refused = subprocess.run([*command, *args], check=False, **here)  # type: ignore[call-overload]
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            f"error: the database sqlite:///{elsewhere / 'billing.db'} has no billing-kernel "
            "schema: run `billing-kernel migrate` (or set BILLING_DATABASE_URL to the right "
            "database)"
        ]
    assert list(elsewhere.iterdir()) == []

    created = subprocess.run([*command, "-v", "migrate"], check=True, **here)  # type: ignore[call-overload]
    assert created.stderr.strip() == f"database: sqlite:///{elsewhere / 'billing.db'}"
    assert created.stdout.startswith("created the billing-kernel schema (revision ")
    again = subprocess.run([*command, "migrate"], check=True, **here)  # type: ignore[call-overload]
    assert "is up to date" in again.stdout
    assert "it offers no plan yet" in created.stdout
    listed = subprocess.run([*command, "plans", "list"], check=True, **here)  # type: ignore[call-overload]
    assert listed.stdout.startswith("none: this deployment offers no plan yet")
    (elsewhere / "pro.json").write_text(
        json.dumps({"slug": "pro", "name": "Pro", "currency": "USD", "monthly_price": "30.00"})
    )
    create = [*command, "plans", "create", "--default", "pro.json"]
    made = subprocess.run(create, check=True, **here)  # type: ignore[call-overload]
    assert made.stdout.splitlines() == [
        "pro v1: Pro, USD 30.00/month, 0 metric(s)",
        "pro is the default: new orgs start on it",
    ]
    listed = subprocess.run([*command, "plans", "list"], check=True, **here)  # type: ignore[call-overload]
    assert "(default: new orgs start on it)" in listed.stdout.splitlines()[0]


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:9/billing"
    for args in (["migrate"], ["plans", "list"]):
        failed = run(url, *args)
        assert failed.returncode == 1
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(
            "error: cannot use the database postgresql://postgres@127.0.0.1:9/billing: "
        )


def test_a_hard_limit_with_grace_is_set_reached_and_explained(tmp_path: Path) -> None:
    """The README's walkthrough, on a database of its own (it changes a seeded plan)."""
    url = f"sqlite:///{tmp_path / 'hard.db'}"
    assert migrated(url).returncode == 0
    assert run(url, "orgs", "create", "acme", "--name", "Acme", "--plan", "starter").returncode == 0
    policy = run(
        url,
        "plans",
        "set-policy",
        "starter",
        "playbook_runs",
        "--mode",
        "hard",
        "--grace-percent",
        "10",
    )
    assert policy.stdout == "starter playbook_runs: 200 included, hard, 10 % grace limit\n"
    assert "hard, 10 % grace limit" in run(url, "plans", "list").stdout
    assert (
        run(url, "usage", "record", "acme", "playbook_runs", "210", "--key", "r1").returncode == 0
    )
    graced = run(url, "check", "acme", "playbook_runs", "10")
    assert (graced.returncode, graced.stdout.split(":")[0]) == (0, "allowed (in_grace)")
    refused = run(url, "check", "acme", "playbook_runs", "11")
    assert refused.returncode == 2
    assert refused.stdout.startswith("refused (limit_reached): Acme has 10 runs left in Starter")
    assert refused.stdout.rstrip().endswith("Growth includes 1,000 runs.")
    consumed = run(url, "check", "acme", "playbook_runs", "10", "--consume", "run-7")
    assert (consumed.returncode, consumed.stdout.split(":")[0]) == (0, "allowed (in_grace)")
    assert consumed.stdout.rstrip().endswith("[recorded]")
    again = run(url, "check", "acme", "playbook_runs", "10", "--consume", "run-7")
    assert again.stdout.rstrip().endswith("[recorded] [answered before under this key]")
    full = run(url, "check", "acme", "playbook_runs", "1", "--consume", "run-8")
    assert full.returncode == 2
    assert full.stdout.startswith("refused (limit_reached): Acme has used all 200 runs")
    summary = run(url, "summary", "acme").stdout
    assert "playbook_runs              220           200" in summary  # the consume, once
    assert "hard, 10 % grace limit" in summary
    canceled = run(url, "orgs", "set-status", "acme", "canceled")
    assert canceled.stdout.startswith("org acme: status canceled since ")
    blocked = run(url, "check", "acme", "tokens")
    assert (blocked.returncode, blocked.stdout.split(":")[0]) == (2, "refused (canceled)")
    bad = run(
        url,
        "plans",
        "set-policy",
        "starter",
        "tokens",
        "--mode",
        "hard",
        "--grace-period-hours",
        "0",
    )
    assert (bad.returncode, bad.stderr) == (
        1,
        "error: grace_period_hours must be a whole number from 1 to 744\n",
    )


def test_webhook_endpoints_are_added_listed_rotated_and_removed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    migrated(url)
    org_id = new_id()
    run(url, "orgs", "create", org_id)
    added = run(
        url,
        "webhooks",
        "add",
        "https://example.com/hook",
        "--org",
        org_id,
        "--event",
        "usage.threshold_crossed",
    )
    assert added.returncode == 0, added.stderr
    endpoint_id, shown_url = added.stdout.splitlines()[0].split()
    assert shown_url == "https://example.com/hook"
    assert added.stdout.splitlines()[1].startswith("secret: whsec_")
    listed = run(url, "webhooks", "list")
    assert listed.stdout.split() == [
        endpoint_id,
        "https://example.com/hook",
        org_id,
        "usage.threshold_crossed",
    ]
    assert "whsec_" not in listed.stdout
    rotated = run(url, "webhooks", "rotate-secret", endpoint_id)
    assert rotated.stdout.startswith("secret: whsec_"), rotated.stderr
    assert "the previous secret also signs until" in rotated.stdout
    assert run(url, "webhooks", "deliveries").stdout == "none\n"
    bad = run(url, "webhooks", "add", "ftp://example.com")
    assert (bad.returncode, bad.stderr.strip()) == (
        1,
        "error: url must be an http or https URL with a host",
    )
    assert run(url, "webhooks", "remove", endpoint_id).stdout.strip() == f"removed {endpoint_id}"
    gone = run(url, "webhooks", "replay", "dlv_0123")
    assert (gone.returncode, gone.stderr.strip()) == (1, "error: no delivery 'dlv_0123'")
    assert run(url, "webhooks", "list").stdout == "none\n"


def test_a_plan_is_created_from_json_updated_and_withdrawn(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    migrated(url)
    body = {
        "slug": "team",
        "name": "Team",
        "currency": "EUR",
        "monthly_price": "79.50",
        "metrics": [{"metric": "tokens", "included_quantity": 2000000}],
    }
    plan_file = tmp_path / "team.json"
    plan_file.write_text(json.dumps(body))
    created = run(url, "plans", "create", str(plan_file))
    assert created.stdout.strip() == "team v1: Team, EUR 79.50/month, 1 metric(s)", created.stderr
    assert "team" in run(url, "plans", "list").stdout
    run(url, "orgs", "create", "acme", "--plan", "team")
    plan_file.write_text(json.dumps({**body, "monthly_price": "89.00"}))
    updated = run(url, "plans", "update", str(plan_file))
    assert updated.stdout.splitlines() == [
        "team v2: Team, EUR 89.00/month, 1 metric(s)",
        "new version 2 for new subscribers; the orgs on version 1 or earlier keep theirs until "
        "they change plan",
    ], updated.stderr
    assert "EUR 79.50/month" in run(url, "summary", "acme").stdout
    plan_file.write_text(json.dumps(body))
    again = run(url, "plans", "create", str(plan_file))
    assert (again.returncode, again.stderr.strip()) == (
        1,
        "error: a plan with slug 'team' exists",
    )
    plan_file.write_text(json.dumps({**body, "slug": "other", "monthly_price": "1.001"}))
    bad = run(url, "plans", "create", str(plan_file))
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: monthly_price: String should match pattern")
    assert run(url, "plans", "deactivate", "team").stdout.strip() == "team: no longer offered"
    assert "team" not in run(url, "plans", "list").stdout


def test_the_upcoming_invoice_shows_each_line_with_its_formula(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'invoices.db'}"
    migrated(url)
    run(url, "orgs", "create", "acme", "--plan", "starter")
    trial = run(url, "invoices", "upcoming", "acme")
    assert "nothing to bill so far" in trial.stdout, trial.stderr
    run(url, "orgs", "set-status", "acme", "active")
    run(url, "usage", "record", "acme", "tokens", "1200000", "--key", "call-1")
    shown = run(url, "invoices", "upcoming", "acme").stdout.splitlines()
    assert shown[0].startswith("invoice    acme, ")
    assert shown[0].endswith("(draft: as it stands now)")
    assert shown[1] == "currency   USD"
    tokens = shown.index(next(line for line in shown if "LLM tokens" in line))
    assert shown[tokens].split()[-1] == "4.00"
    assert shown[tokens + 1].strip() == "(1,200,000 - 1,000,000) x 0.02 / 1,000 = 4 → 4.00"
    assert shown[-1].split()[:2] == ["total", "USD"]
    # The proration charge from today reads to four places; --exact shows it as stored.
    assert not re.search(r"[0-9]\.[0-9]{7,}", "\n".join(shown))
    exact = run(url, "invoices", "upcoming", "acme", "--exact").stdout.splitlines()
    assert [formula_for_people(line) for line in exact] == shown
    fee = next(line for line in exact if " s / " in line)
    assert re.fullmatch(r" +49\.00 x [0-9,]+ s / [0-9,]+ s = [0-9.]+ → [0-9.]+", fee)
    unknown = run(url, "invoices", "upcoming", "nobody")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: no org 'nobody'")


def test_periods_are_closed_and_invoices_listed_shown_paid_voided_and_verified(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'closing.db'}"
    migrated(url)
    # Two months back: closed whatever the day (the last one closes a day into this one).
    last_month = BillingPeriod.containing(datetime.now(UTC)).previous().previous()
    clock = Clock(last_month.start)

    async def arrange() -> None:
        database = Database(url)
        kernel = Kernel(database, Settings(database_url=url), clock=clock)  # type: ignore[arg-type]
        try:
            await kernel.orgs.create("acme", plan_slug="starter")
            await kernel.subscriptions.set_status("acme", BillingStatus.ACTIVE)
            clock.advance(days=2)
            await kernel.usage.record("acme", "tokens", 1_500_000, idempotency_key="big-call")
        finally:
            await database.dispose()

    asyncio.run(arrange())
    closed = run(url, "invoices", "close")
    assert closed.returncode == 0, closed.stderr
    # That month, and the last one too once it has closed (from a day into this month).
    made = [line.split() for line in closed.stdout.splitlines()[:-1]]
    assert closed.stdout.splitlines()[-1] == f"{len(made)} invoice(s) finalized"
    [number] = [fields[0] for fields in made if fields[2] == last_month.label]
    assert run(url, "invoices", "close").stdout.strip() == "0 invoice(s) finalized"  # once
    listed = run(url, "invoices", "list", "--org", "acme").stdout.splitlines()
    assert listed[-1].split() == [number, "acme", last_month.label, "open", "USD", "59.00"]
    shown = run(url, "invoices", "show", number).stdout
    assert "(1,500,000 - 1,000,000) x 0.02 / 1,000 = 10 → 10.00" in shown
    assert shown.splitlines()[-1].split()[-3:] == ["total", "USD", "59.00"]
    draft = tmp_path / "starter.json"
    tokens = {"metric": "tokens", "included_quantity": 1_000_000, "overage_unit_price": "0.01"}
    draft.write_text(
        json.dumps(
            {
                "slug": "starter",
                "name": "Starter",
                "currency": "USD",
                "monthly_price": "49.00",
                "metrics": [{**tokens, "overage_unit_size": 1000}],
            }
        )
    )
    backtest = run(url, "plans", "backtest", str(draft), "--period", last_month.label)
    assert backtest.stdout.splitlines() == [
        f"acme {number} (v1): 59.00 invoiced, 54.00 with the draft (-5.00)",
        "in all, USD: 59.00 invoiced, 54.00 with the draft (-5.00)",
    ], backtest.stderr
    bad_month = run(url, "plans", "backtest", str(draft), "--period", "May")
    assert bad_month.stderr.strip() == (
        "error: --period 'May': a month is written YYYY-MM, such as 2026-11"
    )
    assert run(url, "invoices", "mark-paid", number).stdout.split()[3] == "paid"
    refused = run(url, "invoices", "void", number, "--reason", "typo")
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        f"error: invoice {number} is paid: a paid invoice is not voided",
    )
    verified = run(url, "invoices", "verify")
    assert verified.stdout.strip() == (
        "every invoice is as recomputed, and its credit notes agree; the numbers have no gaps"
    )
    assert run(url, "invoices", "close", "--org", "acme").returncode == 1  # needs --period
    unknown = run(url, "invoices", "show", "INV-999999")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: no invoice 'INV-999999'")


def test_a_metric_is_defined_changed_listed_and_counts_named_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    migrated(url)
    defined = run(
        url,
        "metrics",
        "define",
        "gpt_tokens",
        "--name",
        "GPT tokens",
        "--unit",
        "tokens",
        "--event",
        "llm.completion",
        "--event",
        "llm.chat",
        "--value-property",
        "total_tokens",
        "--where",
        "model=gpt-5",
        "--where",
        "cached=false",
    )
    last_month = BillingPeriod.containing(datetime.now(UTC)).previous().label
    assert defined.stdout.splitlines() == [
        "defined: gpt_tokens           sum of total_tokens over events llm.completion, "
        'llm.chat where cached=false model="gpt-5" (tokens)',
        f"last month, {last_month}: no events of its names to try it on",
    ], defined.stderr
    changed = run(
        url, "metrics", "define", "gpt_tokens", "--name", "GPT", "--unit", "tokens", "--required"
    )
    assert changed.stdout.startswith(
        "changed: gpt_tokens           sum of value over events gpt_tokens (tokens, required)"
    )
    counted = run(
        url,
        "metrics",
        "define",
        "calls",
        "--name",
        "Calls",
        "--unit",
        "calls",
        "--aggregation",
        "count",
        "--event",
        "llm.completion",
    )
    assert counted.returncode == 0, counted.stderr
    listed = run(url, "metrics", "list").stdout.splitlines()
    assert [line.split()[0] for line in listed] == [
        "tokens",
        "playbook_runs",
        "seats",
        "gpt_tokens",
        "calls",
    ]
    assert listed[0] == "tokens               sum of value over events tokens (tokens, required)"
    assert listed[2] == "seats                seats  org members (seats)"
    assert listed[4] == "calls                count over events llm.completion (calls)"
    recount = run(url, "metrics", "define", "calls", "--name", "Calls", "--unit", "calls")
    assert recount.returncode == 1
    assert "metric 'calls' is a count; an aggregation cannot change" in recount.stderr
    bad = run(url, "metrics", "define", "Bad", "--name", "B", "--unit", "b")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert "key must be 1-64 lowercase letters" in bad.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "mysql://user@localhost/billing",
            "unsupported database 'mysql': use sqlite:/// or postgresql://",
        ),
        ("not a url", "not a database URL: 'not a url'"),
        ("sqlite:///b.db?pgbouncer=true", "pgbouncer=true is for a PostgreSQL URL"),
        (
            "postgresql://postgres@127.0.0.1/b?pgbouncer=yes",
            "pgbouncer= in the database URL must be true or false",
        ),
    ],
)
def test_an_unsupported_database_url_is_one_line_not_a_traceback(url: str, said: str) -> None:
    for command in (("migrate",), ("invoices", "list"), ("serve",)):
        answer = run(url, *command)
        assert answer.returncode == 1, command
        assert answer.stderr.strip() == f"error: BILLING_DATABASE_URL: {said}", command
        assert "Traceback" not in answer.stderr + answer.stdout


def test_a_replica_of_anything_but_postgresql_is_refused_in_one_line() -> None:
    replica = {"BILLING_DATABASE_REPLICA_URL": "postgresql://postgres@127.0.0.1/b"}
    answer = run("sqlite:///unused.db", "migrate", env=replica)
    assert answer.returncode == 1
    assert answer.stderr.strip() == (
        "error: BILLING_DATABASE_REPLICA_URL: a read replica is for a PostgreSQL database"
    )


def test_a_setting_that_is_wrong_is_named_in_one_line() -> None:
    answer = run("sqlite:///unused.db", "migrate", env={"BILLING_DB_POOL_SIZE": "many"})
    assert answer.returncode == 1
    assert answer.stderr.startswith("error: BILLING_DB_POOL_SIZE: ")
    assert len(answer.stderr.strip().splitlines()) == 1


def test_orgs_are_listed_and_shown_and_their_members_listed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orgs.db'}"
    migrated(url)
    assert run(url, "orgs", "list").stdout == "none\n"
    run(url, "orgs", "create", "acme", "--name", "Acme", "--plan", "starter")
    run(url, "orgs", "create", "beta", "--plan", "growth")
    run(url, "orgs", "set-status", "beta", "active")
    run(url, "orgs", "aliases", "acme", "cus_1")
    assert run(url, "members", "list", "acme").stdout == "none\n"
    run(url, "members", "add", "acme", "alice", "--role", "owner")
    run(url, "members", "add", "acme", "bob")
    listed = run(url, "orgs", "list").stdout.splitlines()
    assert [line.split() for line in listed] == [
        ["acme", "Acme", "starter", "v1", "trial"],
        ["beta", "-", "growth", "v1", "active"],
    ]
    assert run(url, "orgs", "list", "--status", "active").stdout.split()[0] == "beta"
    assert run(url, "orgs", "list", "--plan", "starter", "--after", "acme").stdout == "none\n"
    shown = dict(
        line.split(maxsplit=1) for line in run(url, "orgs", "show", "acme").stdout.splitlines()
    )
    assert (shown["org"], shown["name"], shown["plan"]) == ("acme", "Acme", "starter v1")
    assert shown["status"].startswith("trial since ")
    assert ", trial ends " in shown["status"]
    assert shown["created"].endswith("UTC (cli)")
    assert (shown["aliases"], shown["members"]) == ("cus_1", "2")
    members = [line.split() for line in run(url, "members", "list", "acme").stdout.splitlines()]
    assert members == [["alice", "owner"], ["bob", "member"]]
    for args in (["orgs", "show", "nope"], ["members", "list", "nope"]):
        missing = run(url, *args)
        assert (missing.returncode, missing.stderr) == (1, "error: no org 'nope'\n")


def test_the_sandbox_clock_moves_in_dev_mode_and_a_month_closes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clock.db'}"
    migrated(url)
    dev = {"BILLING_DEV_MODE": "true"}
    org_id = new_id()
    assert run(url, "orgs", "create", org_id, "--plan", "starter").returncode == 0
    assert run(url, "clock", "show", env=dev).stdout.endswith("(real time)\n")
    refused = run(url, "clock", "advance", "1", "month")
    assert refused.returncode == 1
    assert "moves only in dev mode" in refused.stderr
    moved = run(url, "clock", "advance", "1", "month", env=dev)
    assert moved.returncode == 0, moved.stderr
    this_month = BillingPeriod.containing(datetime.now(UTC)).label
    now, closed = moved.stdout.splitlines()
    assert now.startswith("now ")
    assert "days past real time" in now
    assert closed.startswith(f"closed {this_month} for {org_id}: INV-")
    assert "sandbox:" in run(url, "clock", "show", env=dev).stdout
    assert "(real time)" in run(url, "clock", "show").stdout  # outside dev mode: real time
    listed = run(url, "invoices", "list", env=dev).stdout  # commands run at the moved time
    assert this_month in listed
    bad = run(url, "clock", "advance", "1", "year", env=dev)
    assert (bad.returncode, "whole number from 1 and a unit" in bad.stderr) == (1, True)
    before = run(url, "clock", "set", "2026-01-01T00:00:00Z", env=dev)
    assert (before.returncode, "forward only" in before.stderr) == (1, True)
    assert run(url, "clock", "set", "soon", env=dev).stderr.startswith("error: not an RFC 3339")
    assert run(url, "clock", "reset", env=dev).stdout.endswith("(real time)\n")


def test_an_operator_previews_changes_and_cancels_an_orgs_plan_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'changes.db'}"
    migrated(url)
    org_id = new_id()
    assert run(url, "orgs", "create", org_id, "--plan", "starter").returncode == 0
    assert run(url, "orgs", "set-status", org_id, "active").returncode == 0
    preview = run(url, "subscriptions", "preview", org_id, "growth")
    assert preview.returncode == 0, preview.stderr
    first, *lines, last = preview.stdout.splitlines()
    assert first == f"{org_id} would move from Starter to Growth (growth v1) at once: upgrade"
    assert [line.split(" from ")[0].strip() for line in lines] == [
        "Unused time on Starter (v1)",
        "Remaining time on Growth (v1)",
    ]
    assert last.startswith("upcoming invoice USD ")
    changed = run(url, "subscriptions", "change", org_id, "growth")
    assert changed.stdout.splitlines()[0].startswith(f"{org_id} moves from Starter to Growth")
    made = [line.split(" from ")[0].strip() for line in changed.stdout.splitlines()[1:-1]]
    assert made == ["Unused time on Starter (v1)", "Remaining time on Growth (v1)"]
    down = run(url, "subscriptions", "change", org_id, "starter")
    assert "(scheduled): downgrade" in down.stdout
    assert run(url, "subscriptions", "cancel-scheduled", org_id).stdout == (
        f"{org_id}: scheduled change canceled\n"
    )
    assert run(url, "subscriptions", "cancel-scheduled", org_id).stdout == (
        f"{org_id}: none scheduled\n"
    )
    unknown = run(url, "subscriptions", "preview", org_id, "nope")
    assert (unknown.returncode, unknown.stderr) == (1, "error: no plan with slug 'nope'\n")


def test_an_operator_sets_shows_and_clears_an_orgs_own_limits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    migrated(url)
    org_id = new_id()
    assert run(url, "orgs", "create", org_id, "--plan", "starter").returncode == 0
    shown = run(url, "limits", "show", org_id).stdout.splitlines()
    assert [line.split() for line in shown] == [
        ["tokens", "1,000,000", "soft"],
        ["playbook_runs", "200", "soft"],
        ["seats", "3", "soft"],
    ]
    own = run(url, "limits", "set", org_id, "tokens", "5000000")
    assert own.stdout.split() == [org_id, "tokens", "5,000,000", "soft", "(its", "own)"]
    assert run(url, "limits", "show", org_id).stdout.splitlines()[0].split()[1] == "5,000,000"
    unlimited = run(url, "limits", "set", org_id, "tokens", "unlimited")
    assert unlimited.stdout.split()[2] == "unlimited"
    bad = run(url, "limits", "set", org_id, "tokens", "lots")
    assert (bad.returncode, bad.stderr) == (
        1,
        "error: limit must be a whole number from 0 or `unlimited`, got 'lots'\n",
    )
    back = run(url, "limits", "clear", org_id, "tokens")
    assert back.stdout.split()[2:] == ["1,000,000", "soft", "(its", "plan's)"]


def test_an_operator_reads_an_orgs_features_and_gives_it_its_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'features.db'}"
    migrated(url)
    org_id = new_id()
    assert run(url, "orgs", "create", org_id, "--plan", "starter").returncode == 0
    shown = run(url, "features", "show", org_id).stdout.splitlines()
    assert [line.split() for line in shown] == [
        ["max_projects", "3"],
        ["sso", "no"],
        ["support", "email"],
    ]
    for value, seen in (("true", "yes"), ("12", "12"), ("white glove", "white glove")):
        own = run(url, "features", "set", org_id, "sso", value)
        assert own.returncode == 0, own.stderr
        assert f"sso                      {seen}  (its own)" in own.stdout.splitlines()
    bad = run(url, "features", "set", org_id, "Bad-Key", "true")
    assert (bad.returncode, bad.stderr.startswith("error: feature 'Bad-Key' must be")) == (1, True)
    back = run(url, "features", "clear", org_id, "sso")
    assert "sso                      no" in back.stdout.splitlines()
    listed = run(url, "plans", "list").stdout
    assert "    features: max_projects: 3, sso: no, support: email" in listed


def test_an_operator_defines_a_coupon_and_applies_it_to_an_org(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coupons.db'}"
    migrated(url)
    org_id = new_id()
    assert run(url, "orgs", "create", org_id, "--plan", "starter").returncode == 0
    assert run(url, "coupons", "list").stdout == "no coupons\n"
    file = tmp_path / "coupon.json"
    file.write_text(
        '{"code": "LAUNCH20", "name": "Launch", "percent_off": "20", "duration": "repeating",'
        ' "periods": 3, "max_redemptions": 10}'
    )
    made = run(url, "coupons", "create", str(file))
    assert made.returncode == 0, made.stderr
    assert made.stdout == (
        "LAUNCH20             Launch: 20% off for 3 months; applied to 0 of 10 orgs\n"
    )
    assert run(url, "coupons", "create", str(file)).stdout.endswith("(already defined)\n")
    applied = run(url, "coupons", "apply", org_id, "LAUNCH20")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith(
        f"{org_id}: LAUNCH20             20% off for 3 months; applied"
    )
    assert run(url, "coupons", "of", org_id).stdout.startswith("LAUNCH20 ")
    assert "applied to 1 of 10 orgs" in run(url, "coupons", "list").stdout
    removed = run(url, "coupons", "remove", org_id, "LAUNCH20")
    assert ", removed " in removed.stdout
    again = run(url, "coupons", "apply", org_id, "LAUNCH20")
    assert (again.returncode, "applies to an org once" in again.stderr) == (1, True)
    assert run(url, "coupons", "archive", "LAUNCH20").stdout.endswith("(archived)\n")
    file.write_text('{"code": "X", "name": "X", "percent_off": "0", "duration": "once"}')
    bad = run(url, "coupons", "create", str(file))
    assert (bad.returncode, bad.stderr.startswith("error: percent_off must be above 0")) == (
        1,
        True,
    )


def test_an_operator_reads_an_orgs_alerts_and_sets_what_it_alerts_at(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    migrated(url)
    org_id = new_id()
    assert run(url, "orgs", "create", org_id, "--plan", "starter").returncode == 0
    assert run(url, "alerts", "list", org_id).stdout == "none\n"
    shown = run(url, "alerts", "thresholds", org_id).stdout.splitlines()
    assert [line.split() for line in shown] == [
        ["tokens", "80%,100%", "its", "plan"],
        ["playbook_runs", "80%,100%", "its", "plan"],
        ["seats", "80%,100%", "its", "plan"],
    ]
    own = run(url, "alerts", "thresholds", org_id, "tokens", "50%", "900000")
    assert own.stdout == f"{org_id} tokens: alerts at 50%,900000\n"
    assert run(url, "alerts", "thresholds", org_id, "tokens").stdout.split() == [
        "tokens",
        "50%,900000",
        "its",
        "own",
    ]
    run(url, "usage", "record", org_id, "tokens", "950000", "--key", "k1")
    listed = [line.split()[:4] for line in run(url, "alerts", "list", org_id).stdout.splitlines()]
    assert sorted(listed) == [
        ["tokens", "50%", "crossed", "x1"],
        ["tokens", "900000", "crossed", "x1"],
    ]
    assert run(url, "alerts", "thresholds", org_id, "tokens", "none").stdout == (
        f"{org_id} tokens: alerts at none (2 back under at once)\n"
    )
    again = run(url, "alerts", "thresholds", org_id, "tokens", "90%")
    assert again.stdout == f"{org_id} tokens: alerts at 90% (1 crossed at once)\n"
    bad = run(url, "alerts", "thresholds", org_id, "tokens", "8x")
    assert (bad.returncode, bad.stderr) == (1, "error: not a threshold: '8x'\n")


def test_openapi_prints_the_document_the_api_serves_without_a_database_or_a_secret(
    tmp_path: Path,
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BILLING_")}
    done = run_command(
        "openapi", env={**env, "BILLING_DATABASE_URL": f"sqlite:///{tmp_path}/no.db"}
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["openapi"].startswith("3.")
    assert document["paths"]["/api/v1/usage/events"]["post"]["operationId"] == "recordUsageEvents"
    assert not (tmp_path / "no.db").exists()

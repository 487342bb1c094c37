"""The migrations run forward, back and forward again on both databases."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from billing_kernel.config import Settings
from billing_kernel.db import migrate
from billing_kernel.db.database import Database
from billing_kernel.db.tables import metadata
from billing_kernel.errors import NoDefaultPlan
from billing_kernel.invoices.rules import close_failed_event
from billing_kernel.kernel import Kernel
from billing_kernel.metrics.rules import Metric
from billing_kernel.plans.rules import NOT_INCLUDED, SOFT, PlanMetric, not_included
from billing_kernel.quota.rules import Terms
from tests.conftest import scratch_postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        with scratch_postgres_database() as url:
            yield url


def execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run raw SQL `statements` in one transaction on the database at `url` (rows as the
    schema of a revision before head has them); the last one's rows, if it returns any."""

    async def run() -> list[tuple[object, ...]]:
        database = Database(url)
        try:
            async with database.transaction() as conn:
                result = None
                for sql in statements:
                    result = await conn.execute(text(sql))
                return [tuple(row) for row in result] if result and result.returns_rows else []
        finally:
            await database.dispose()

    return asyncio.run(run())


def test_the_head_the_commands_check_against_is_alembics() -> None:
    """Every command compares the database's revision with `head_revision`, which reads the
    migrations' files without Alembic: it names the head Alembic migrates to."""
    alembic = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert migrate.head_revision("sqlite://") == alembic.get_current_head()
    assert len(alembic.get_revisions("heads")) == 1


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    migrate.upgrade(empty_database_url)  # already at head: a no-op
    assert asyncio.run(catalogue(empty_database_url)) == ([], [], None)
    migrate.downgrade(empty_database_url, "base")
    migrate.upgrade(empty_database_url)
    assert asyncio.run(catalogue(empty_database_url)) == ([], [], None)


async def catalogue(url: str) -> tuple[list[str], list[str], str | None]:
    """The database's plans and metrics, and its default plan."""
    kernel = Kernel(Database(url), Settings(database_url=url))
    try:
        plans = sorted(p.slug for p in await kernel.plans.list_active())
        metrics = sorted(await kernel.metrics.by_key())
        try:
            default: str | None = (await kernel.plans.default()).slug
        except NoDefaultPlan:
            default = None
        return plans, metrics, default
    finally:
        await kernel.aclose()


@pytest.mark.parametrize("configured", [None, "starter", "growth"])
def test_upgrading_keeps_the_seeded_plans_in_use_and_adopts_the_default_setting(
    empty_database_url: str, configured: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment made before the demo catalogue left the schema keeps each seeded plan
    an org was ever on, and its metrics; the plans nobody used go. The default becomes the
    plan BILLING_DEFAULT_PLAN_SLUG named, if it is still there, else internal-dev."""
    migrate.upgrade(empty_database_url, "0023")
    at = "2026-10-01 08:00:00+00:00"

    async def arrange() -> None:
        database = Database(empty_database_url)
        try:
            async with database.transaction() as conn:
                for org, plan in (("acme", "starter"), ("dev", "internal-dev")):
                    await conn.execute(
                        text(f"INSERT INTO orgs (org_id, created_at) VALUES ('{org}', '{at}')")
                    )
                    await conn.execute(
                        text(
                            "INSERT INTO org_billing_state (org_id, plan_slug, status, "
                            f"status_since, created_at, updated_at) VALUES ('{org}', '{plan}', "
                            f"'trial', '{at}', '{at}', '{at}')"
                        )
                    )
        finally:
            await database.dispose()

    asyncio.run(arrange())
    if configured is None:
        monkeypatch.delenv("BILLING_DEFAULT_PLAN_SLUG", raising=False)
    else:
        monkeypatch.setenv("BILLING_DEFAULT_PLAN_SLUG", configured)
    migrate.upgrade(empty_database_url)
    plans, metrics, default = asyncio.run(catalogue(empty_database_url))
    assert plans == ["internal-dev", "starter"]
    assert metrics == ["playbook_runs", "seats", "tokens"]
    assert default == ("starter" if configured == "starter" else "internal-dev")


def schema_drift(url: str) -> list[object]:
    """What the migrated schema lacks or has beyond the tables the code declares."""

    def compare(connection: Connection) -> list[object]:
        def declared(name: str | None, kind: str, _parent: object) -> bool:
            # The months of usage_lines and usage_events are tables PostgreSQL's
            # partitioning makes, not the code's: the partitioned tables are compared.
            return not (
                kind == "table" and (name or "").startswith(("usage_lines_", "usage_events_"))
            )

        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": declared}
        )
        return list(compare_metadata(context, metadata))

    async def run() -> list[object]:
        database = Database(url)
        try:
            async with database.transaction() as conn:
                return await conn.run_sync(compare)
        finally:
            await database.dispose()

    return asyncio.run(run())


def test_the_migrations_build_the_schema_the_code_declares(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    assert schema_drift(empty_database_url) == []


def test_upgrading_keeps_every_limit_soft_and_every_override_a_limit(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url, "0003")
    created = "2026-10-01 08:00:00+00:00"

    async def arrange() -> None:
        database = Database(empty_database_url)
        try:
            async with database.transaction() as conn:
                for sql in (
                    f"INSERT INTO orgs (org_id, created_at) VALUES ('acme', '{created}')",
                    "INSERT INTO org_billing_state (org_id, plan_slug, status, created_at, "
                    f"updated_at) VALUES ('acme', 'starter', 'trial', '{created}', '{created}')",
                    "INSERT INTO org_limit_overrides (org_id, metric, included_quantity, "
                    f"updated_at) VALUES ('acme', 'tokens', 5, '{created}')",
                ):
                    await conn.execute(text(sql))
        finally:
            await database.dispose()

    asyncio.run(arrange())
    migrate.upgrade(empty_database_url)

    async def read() -> tuple[object, ...]:
        kernel = Kernel(Database(empty_database_url), Settings(database_url=empty_database_url))
        try:
            state = await kernel.subscriptions.billing_state("acme")
            starter = await kernel.plans.get("starter")
            return (
                state.status_since == state.created_at,
                {term.policy for term in starter.metrics.values()},
                (await kernel.quota.terms("acme"))["tokens"],
            )
        finally:
            await kernel.aclose()

    assert asyncio.run(read()) == (True, {SOFT}, Terms(5, SOFT))


def test_upgrading_names_what_each_plan_left_out_as_unlimited_so_no_org_loses_it(
    empty_database_url: str,
) -> None:
    """Before 0026 a metric a plan did not name was unlimited and free; from then it gives
    none. The upgrade names each such metric in every existing plan version as unlimited,
    free and soft, so no org's terms change; a metric defined later is given by no plan
    that does not name it."""
    migrate.upgrade(empty_database_url, "0025")
    at = "2026-10-01 08:00:00+00:00"

    execute(
        empty_database_url,
        "INSERT INTO metrics (key, name, unit, aggregation, position, created_at) "
        f"VALUES ('pages', 'Pages', 'pages', 'sum', 1, '{at}'), "
        f"('tokens', 'Tokens', 'tokens', 'sum', 2, '{at}')",
        "INSERT INTO plans (slug, name, description, currency, is_active, "
        "created_at, updated_at, version, is_default) VALUES ('pro', 'Pro', '', "
        f"'USD', true, '{at}', '{at}', 2, true)",
        "INSERT INTO plan_versions (plan_slug, version, monthly_price, created_at) "
        f"VALUES ('pro', 1, 10, '{at}'), ('pro', 2, 12, '{at}')",
        "INSERT INTO plan_metrics (plan_slug, version, metric, included_quantity, "
        "overage_unit_price, overage_unit_size) VALUES ('pro', 1, 'tokens', 5, 0, 1), "
        "('pro', 2, 'tokens', 5, 0, 1)",
        f"INSERT INTO orgs (org_id, created_at) VALUES ('acme', '{at}')",
        "INSERT INTO org_billing_state (org_id, plan_slug, plan_version, status, "
        f"status_since, created_at, updated_at) VALUES ('acme', 'pro', 2, 'active', "
        f"'{at}', '{at}', '{at}')",
    )
    migrate.upgrade(empty_database_url)

    async def read() -> tuple[object, ...]:
        kernel = Kernel(Database(empty_database_url), Settings(database_url=empty_database_url))
        try:
            await kernel.metrics.define(Metric("docs", "Docs", "docs"))
            pro = await kernel.plans.get("pro")
            terms = await kernel.quota.terms("acme")
            async with kernel.database.transaction() as conn:
                named = await conn.execute(
                    text("SELECT version, metric FROM plan_metrics WHERE plan_slug = 'pro'")
                )
                rows = sorted(tuple(row) for row in named)
            return (
                pro.version,
                pro.allowance("pages"),
                pro.allowance("tokens").included_quantity,
                pro.allowance("docs"),
                terms["pages"],
                terms["docs"],
                (await kernel.quota.check("acme", "pages", 10**9)).allowed,
                (await kernel.quota.check("acme", "docs", 1)).allowed,
                rows,
                {m.key: m.required for m in await kernel.metrics.catalogue()},
            )
        finally:
            await kernel.aclose()

    assert asyncio.run(read()) == (
        2,
        PlanMetric("pages", None, Decimal("0"), 1, SOFT),
        5,
        not_included("docs"),
        Terms(None, SOFT),
        Terms(0, NOT_INCLUDED),
        True,
        False,
        [(1, "pages"), (1, "tokens"), (2, "pages"), (2, "tokens")],
        # 0027: the meters that refused an event without their amount still do.
        {"pages": True, "tokens": True, "docs": False},
    )


def test_upgrading_marks_the_kept_events_no_metric_counts(empty_database_url: str) -> None:
    """0036: an event without a line (kept by a protocol, counted by no metric) is marked
    uncounted, and so read back; a named event with a line and a report of a quantity stay
    counted."""
    migrate.upgrade(empty_database_url, "0035")
    at = "2026-11-02 08:00:00+00:00"

    execute(
        empty_database_url,
        "INSERT INTO metrics (key, name, unit, aggregation, position, created_at) "
        f"VALUES ('tokens', 'Tokens', 'tokens', 'sum', 1, '{at}')",
        f"INSERT INTO orgs (org_id, created_at) VALUES ('acme', '{at}')",
        "INSERT INTO usage_events (org_id, idempotency_key, event, quantity, "
        "occurred_at, received_at, properties) VALUES "
        f"('acme', 'named', 'llm.call', NULL, '{at}', '{at}', NULL), "
        f"('acme', 'kept', 'nobody', NULL, '{at}', '{at}', NULL), "
        f"('acme', 'reported', 'tokens', 5, '{at}', '{at}', NULL)",
        "INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, "
        f"occurred_at, period_start) VALUES ('acme', 'named', 'tokens', 3, '{at}', "
        "'2026-11-01'), ('acme', 'reported', 'tokens', 5, "
        f"'{at}', '2026-11-01')",
    )
    migrate.upgrade(empty_database_url)
    counted = execute(
        empty_database_url, "SELECT idempotency_key, counted FROM usage_events ORDER BY 1"
    )
    assert [(key, bool(flag)) for key, flag in counted] == [
        ("kept", False),
        ("named", True),
        ("reported", True),
    ]


def test_upgrading_keys_invoices_by_org_and_gives_their_lines_and_usage_the_org(
    empty_database_url: str,
) -> None:
    """0041: an invoice's lines and usage take its org; the keys to it (lines, usage, a
    payment) name it by org and id, and deleting it still takes its lines and usage."""
    migrate.upgrade(empty_database_url, "0040")
    at = "2026-11-02 08:00:00+00:00"
    execute(
        empty_database_url,
        "INSERT INTO plans (slug, name, description, currency, is_active, created_at, "
        f"updated_at) VALUES ('basic', 'Basic', '', 'USD', true, '{at}', '{at}')",
        "INSERT INTO plan_versions (plan_slug, version, monthly_price, created_at) "
        f"VALUES ('basic', 1, '9.00', '{at}')",
        f"INSERT INTO orgs (org_id, created_at) VALUES ('acme', '{at}'), ('zeta', '{at}')",
        *(
            "INSERT INTO invoices (invoice_id, org_id, period_start, number, status, "
            "currency, subtotal, total, plan_slug, plan_version, bills_usage, sequence, "
            f"issued_at) VALUES ('{org}-inv', '{org}', '2026-10-01', 'INV-00000{n}', 'open', "
            f"'USD', '9.00', '9.00', 'basic', 1, true, {n}, '{at}')"
            for n, org in enumerate(("acme", "zeta"), 1)
        ),
        *(
            "INSERT INTO invoice_lines (invoice_id, number, kind, description, amount, "
            "formula, plan_slug, plan_version, period_start, quantity, unit_price, "
            f"unit_size) VALUES ('{org}-inv', 1, 'base_fee', 'Basic', '9.00', '9.00', "
            "'basic', 1, '2026-10-01', 1, '9.00', 1)"
            for org in ("acme", "zeta")
        ),
        "INSERT INTO invoice_usage (invoice_id, period_start, metric, quantity, events) "
        "VALUES ('zeta-inv', '2026-10-01', 'tokens', 5, 1)",
        "INSERT INTO payments (payment_id, invoice_id, org_id, attempt, status, amount, "
        "currency, created_at, updated_at) VALUES ('pay', 'acme-inv', 'acme', 1, 'pending', "
        f"'9.00', 'USD', '{at}', '{at}')",
    )
    migrate.upgrade(empty_database_url)
    assert execute(
        empty_database_url, "SELECT org_id, invoice_id FROM invoice_lines ORDER BY 1"
    ) == [("acme", "acme-inv"), ("zeta", "zeta-inv")]
    assert execute(empty_database_url, "SELECT org_id, invoice_id FROM invoice_usage") == [
        ("zeta", "zeta-inv")
    ]
    assert execute(empty_database_url, "SELECT org_id, payment_id FROM payments") == [
        ("acme", "pay")  # 0042 rebuilt its key (on SQLite, by copying the table)
    ]
    assert schema_drift(empty_database_url) == []
    execute(empty_database_url, "DELETE FROM invoices WHERE invoice_id = 'zeta-inv'")
    assert execute(empty_database_url, "SELECT org_id FROM invoice_lines") == [("acme",)]
    assert execute(empty_database_url, "SELECT count(*) FROM invoice_usage") == [(0,)]


def test_upgrading_keys_the_outbox_by_org_and_gives_the_operators_events_their_org(
    empty_database_url: str,
) -> None:
    """0048: the operators' events, kept without an org, take the org their data names; a
    delivery and its attempts take their event's org; the log keeps its order, the next
    event is numbered after it, and forgetting an event still takes its deliveries."""
    migrate.upgrade(empty_database_url, "0047")
    at = "2026-11-02 08:00:00+00:00"
    failed = '{"type":"invoice.close_failed","id":"evt_f","timestamp":"2026-11-02T08:00:00Z",'
    crossed = '{"type":"usage.threshold_crossed","id":"evt_c","timestamp":"2026-11-02T08:00:00Z",'
    execute(
        empty_database_url,
        f"INSERT INTO orgs (org_id, created_at) VALUES ('acme', '{at}')",
        "INSERT INTO billing_events (event_id, event_type, org_id, created_at, payload, "
        f"dispatched_at) VALUES ('evt_c', 'usage.threshold_crossed', 'acme', '{at}', "
        f'\'{crossed}"data":{{"org_id":"acme"}}}}\', \'{at}\'), '
        f"('evt_f', 'invoice.close_failed', NULL, '{at}', "
        f'\'{failed}"data":{{"org_id":"acme","reason":"why"}}}}\', \'{at}\')',
        "INSERT INTO deliveries (delivery_id, event_id, org_id, channel, target, status, "
        "attempts, attempt_base, next_attempt_at, created_at) VALUES "
        f"('dlv_c', 'evt_c', 'acme', 'webhook', 'ep_1', 'delivered', 1, 0, '{at}', '{at}'), "
        f"('dlv_f', 'evt_f', NULL, 'webhook', 'ep_0', 'delivered', 1, 0, '{at}', '{at}')",
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, "
        f"outcome) VALUES ('dlv_c', 1, '{at}', 5, 'delivered'), "
        f"('dlv_f', 1, '{at}', 5, 'delivered')",
    )
    migrate.upgrade(empty_database_url)
    assert execute(
        empty_database_url, "SELECT seq, org_id, event_id FROM billing_events ORDER BY seq"
    ) == [(1, "acme", "evt_c"), (2, "acme", "evt_f")]
    assert execute(empty_database_url, "SELECT delivery_id, org_id FROM deliveries ORDER BY 1") == [
        ("dlv_c", "acme"),
        ("dlv_f", "acme"),
    ]
    assert execute(
        empty_database_url, "SELECT delivery_id, org_id FROM delivery_attempts ORDER BY 1"
    ) == [("dlv_c", "acme"), ("dlv_f", "acme")]
    assert schema_drift(empty_database_url) == []

    async def record_and_read() -> list[tuple[int, str]]:
        database = Database(empty_database_url)
        try:
            kernel = Kernel(database, Settings(database_url=empty_database_url))
            made = close_failed_event("acme", date(2026, 10, 1), "again", datetime.now(UTC))
            await kernel.events.record([made, made])
            shown = await kernel.events.events(org_id="acme", operators_too=False)
            assert [e.event_id for _, e in shown] == ["evt_c"]
            return [(seq, e.event_id) for seq, e in await kernel.events.events(org_id=None)]
        finally:
            await database.dispose()

    made_id = close_failed_event("acme", date(2026, 10, 1), "again", datetime.now(UTC)).event_id
    assert asyncio.run(record_and_read()) == [(3, made_id), (2, "evt_f"), (1, "evt_c")]
    execute(empty_database_url, "DELETE FROM billing_events WHERE event_id = 'evt_f'")
    assert execute(empty_database_url, "SELECT delivery_id FROM delivery_attempts") == [("dlv_c",)]

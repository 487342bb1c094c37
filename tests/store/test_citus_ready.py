"""Whether the schema can be distributed by org on Citus (docs/scaling.md), read from the
tables' definitions: every table is either an org's (distributed by `org_id`, co-located) or
the deployment's catalogue (a reference table, copied to every node). An org's table needs a
`org_id` that is never NULL, in its primary key and in every unique constraint, and its
foreign keys to another org's table must carry `org_id` on both sides; no catalogue table may
refer to an org's.

Nothing breaks it today: a new table, constraint or key must be ready too."""

from __future__ import annotations

from sqlalchemy import Table, UniqueConstraint

from billing_kernel.db.tables import metadata

CATALOGUE = {
    "metrics",
    "plans",
    "plan_versions",
    "plan_metrics",
    "plan_features",
    "coupons",
    "plan_alert_thresholds",
    "users",
    "invoice_numbers",
    "sandbox_clock",
    "stripe_events",
    "usage_forgotten_months",
    "api_keys",
    "webhook_endpoints",
    "org_aliases",
}
"""Reference tables: the deployment's, read by every org, written rarely (keys, endpoints
and aliases are read on every request, event and protocol call, whichever the org)."""


def uniques(table: Table) -> set[tuple[str, ...]]:
    """Every set of columns the table keeps unique, besides its primary key."""
    found = {
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    }
    found |= {
        tuple(sorted(c.name for c in index.columns)) for index in table.indexes if index.unique
    }
    found |= {(column.name,) for column in table.columns if column.unique}
    return found


def breaks(table: Table) -> set[tuple[str, str]]:
    """What in `table`, an org's, keeps it from being distributed by org."""
    name = table.name
    if "org_id" not in table.c:
        return {(name, "no org_id")}
    found = set()
    if table.c.org_id.nullable:
        found.add((name, "org_id may be NULL"))
    if "org_id" not in {c.name for c in table.primary_key.columns}:
        found.add((name, "primary key without org_id"))
    for columns in uniques(table):
        if "org_id" not in columns:
            found.add((name, f"unique ({', '.join(columns)}) without org_id"))
    for key in table.foreign_key_constraints:
        target = key.referred_table.name
        if target in CATALOGUE:
            continue
        mine = [element.parent.name for element in key.elements]
        theirs = [element.column.name for element in key.elements]
        if mine == ["org_id"] and theirs == ["org_id"]:
            continue  # the org itself
        if "org_id" not in mine or "org_id" not in theirs:
            found.add((name, f"foreign key ({', '.join(mine)}) to {target} without org_id"))
    return found


def test_every_table_is_an_orgs_or_the_catalogue_and_only_the_known_ones_break_the_rules() -> None:
    tables = {table.name: table for table in metadata.sorted_tables}
    assert set(tables) >= CATALOGUE, "a catalogue table named here no longer exists"
    found: set[tuple[str, str]] = set()
    for name, table in tables.items():
        if name in CATALOGUE:
            for key in table.foreign_key_constraints:
                assert key.referred_table.name in CATALOGUE, f"{name} refers to an org's table"
            continue
        found |= breaks(table)
    assert found == set(), "every table and constraint must be ready for Citus"


def test_the_rules_catch_what_they_are_for() -> None:
    from sqlalchemy import Column, ForeignKey, MetaData, String

    scratch = MetaData()
    Table("parents", scratch, Column("org_id", String, primary_key=True))
    Table("things", scratch, Column("thing_id", String, primary_key=True))
    bad = Table(
        "bad",
        scratch,
        Column("org_id", String, nullable=True),
        Column("id", String, primary_key=True),
        Column("code", String, unique=True),
        Column("thing_id", String, ForeignKey("things.thing_id")),
    )
    good = Table(
        "good",
        scratch,
        Column("org_id", String, ForeignKey("parents.org_id"), primary_key=True),
        Column("id", String, primary_key=True),
    )
    assert breaks(bad) == {
        ("bad", "org_id may be NULL"),
        ("bad", "primary key without org_id"),
        ("bad", "unique (code) without org_id"),
        ("bad", "foreign key (thing_id) to things without org_id"),
    }
    assert breaks(good) == set()
    assert breaks(Table("loose", scratch, Column("id", String, primary_key=True))) == {
        ("loose", "no org_id")
    }

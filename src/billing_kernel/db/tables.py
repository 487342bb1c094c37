"""The schema. Every org-scoped table is to lead its primary key with `org_id` (those not
there yet: tests/store/test_citus_ready.py and docs/scaling.md)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)

from billing_kernel.db.types import Money, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 64  # the product's own org and user ids

metrics = Table(
    "metrics",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("aggregation", String(16), nullable=False),
    Column("position", Integer, nullable=False, default=100),  # display order
    Column("created_at", UTCDateTime, nullable=False),
    # As a meter: the event names it counts as a JSON list (NULL: its own key), a sum's
    # amount property (NULL: `value`, else `quantity`), and equality filters on other
    # properties as a JSON object (NULL: none).
    Column("events", Text, nullable=True),
    Column("value_property", String(64), nullable=True),
    Column("filters", Text, nullable=True),
    # Whether an event it counts must carry its property (else it is refused whole); false:
    # the meter skips such an event, which still counts toward the others.
    Column("required", Boolean, nullable=False, server_default=false()),
    CheckConstraint(
        "aggregation IN ('sum', 'count', 'max', 'latest', 'unique_count', 'seats')",
        name="aggregation",
    ),
)

plans = Table(
    "plans",
    metadata,
    Column("slug", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("currency", String(3), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The version new subscribers get (see plan_versions).
    Column("version", Integer, nullable=False, server_default="1"),
    # The plan new orgs start on: at most one, and an active one.
    Column("is_default", Boolean, nullable=False, server_default=false()),
    # Offered to orgs (the billing page, upgrade offers); false: the operator assigns it.
    Column("is_public", Boolean, nullable=False, server_default=true()),
    Index(
        "uq_plans_one_default",
        "is_default",
        unique=True,
        postgresql_where=text("is_default"),
        sqlite_where=text("is_default"),
    ),
)

plan_versions = Table(
    "plan_versions",
    metadata,
    # A plan's price and terms (plan_metrics) as they were from `created_at`: changing them
    # makes a new version; an org keeps the version it subscribed to until it changes plan.
    Column("plan_slug", String(64), ForeignKey("plans.slug", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("monthly_price", Money(12, 2), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("version > 0", name="version"),
)

plan_metrics = Table(
    "plan_metrics",
    metadata,
    Column("plan_slug", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, server_default="1"),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    # NULL: unlimited. 0: nothing included.
    Column("included_quantity", BigInteger, nullable=True),
    Column("overage_unit_price", Money(18, 6), nullable=False),
    Column("overage_unit_size", BigInteger, nullable=False, default=1),
    # How the units beyond the included are priced (pricing.rules.PriceModel); graduated and
    # volume by their tiers (JSON: pricing.rules.tiers_text), the others by the two above.
    Column("price_model", String(16), nullable=False, server_default="per_unit"),
    Column("price_tiers", Text, nullable=True),
    # Prices of their own for some values of an event property (JSON: pricing.rules.
    # dimension_text); the price above is every other value's.
    Column("price_dimension", String(64), nullable=True),
    Column("dimension_prices", Text, nullable=True),
    # How the limit is enforced: soft (report, bill overage) or hard (block, after any grace).
    Column("enforcement", String(8), nullable=False, server_default="soft"),
    Column("grace_percent", Integer, nullable=False, server_default="0"),
    Column("grace_period_seconds", Integer, nullable=True),  # NULL: no time limit
    CheckConstraint("included_quantity IS NULL OR included_quantity >= 0", name="included"),
    CheckConstraint("overage_unit_size > 0", name="unit_size"),
    CheckConstraint("enforcement IN ('soft', 'hard')", name="enforcement"),
    CheckConstraint(
        "price_model IN ('per_unit', 'graduated', 'volume', 'package')", name="price_model"
    ),
    CheckConstraint(
        "(price_tiers IS NOT NULL) = (price_model IN ('graduated', 'volume'))", name="price_tiers"
    ),
    CheckConstraint("grace_percent >= 0", name="grace_percent"),
    CheckConstraint("grace_period_seconds > 0", name="grace_period"),
    CheckConstraint("(price_dimension IS NULL) = (dimension_prices IS NULL)", name="dimension"),
    ForeignKeyConstraint(
        ["plan_slug", "version"],
        ["plan_versions.plan_slug", "plan_versions.version"],
        ondelete="CASCADE",
    ),
)

orgs = Table(
    "orgs",
    metadata,
    Column("org_id", String(ID), primary_key=True),
    Column("name", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_via", String(16), nullable=False, server_default="unknown"),
)

org_aliases = Table(
    "org_aliases",
    metadata,
    # Another name of the org, such as the customer id another billing system gave it: an
    # event sent through a compatible protocol with this id counts for `org_id`. A reference
    # table (docs/scaling.md): an alias is unique across the deployment, and names its org
    # without a foreign key (the org exists when it is written; orgs are never deleted).
    Column("alias", String(255), primary_key=True),
    Column("org_id", String(ID), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "org_id"),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(ID), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

org_members = Table(
    "org_members",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column(
        "user_id", String(ID), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("role IN ('owner', 'admin', 'member')", name="role"),
    Index(None, "user_id"),
)

org_billing_state = Table(
    "org_billing_state",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("plan_slug", String(64), ForeignKey("plans.slug"), nullable=False),
    Column("plan_version", Integer, nullable=False, server_default="1"),  # kept until a change
    Column("status", String(16), nullable=False),
    Column("trial_ends_at", UTCDateTime, nullable=True),
    Column("status_since", UTCDateTime, nullable=False),  # when `status` last changed
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('trial', 'active', 'past_due', 'canceled')", name="status"),
    ForeignKeyConstraint(
        ["plan_slug", "plan_version"], ["plan_versions.plan_slug", "plan_versions.version"]
    ),
)

subscription_history = Table(
    "subscription_history",
    metadata,
    # The order changes were made in (several may share an instant): a sequence's on
    # PostgreSQL; on SQLite, where only a lone integer key numbers itself, given by the
    # insert (db/history.py).
    Column(
        "change_id",
        BigInteger().with_variant(Integer, "sqlite"),
        autoincrement=True,
        nullable=False,
    ),
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), nullable=False),
    # The org's plan, version and status from this instant until its next change.
    Column("valid_from", UTCDateTime, nullable=False),
    Column("plan_slug", String(64), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    CheckConstraint("status IN ('trial', 'active', 'past_due', 'canceled')", name="status"),
    ForeignKeyConstraint(
        ["plan_slug", "plan_version"], ["plan_versions.plan_slug", "plan_versions.version"]
    ),
    Index(None, "org_id", "valid_from"),
    PrimaryKeyConstraint("org_id", "change_id"),
)

scheduled_plan_changes = Table(
    "scheduled_plan_changes",
    metadata,
    # A downgrade asked for, to take effect when the billing period ends (one per org).
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("plan_slug", String(64), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("effective_at", UTCDateTime, nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(
        ["plan_slug", "plan_version"], ["plan_versions.plan_slug", "plan_versions.version"]
    ),
    Index(None, "effective_at"),
)

org_limit_overrides = Table(
    "org_limit_overrides",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    # Each part replaces the plan's when set; the others follow the plan.
    Column("included_set", Boolean, nullable=False, server_default=true()),
    Column("included_quantity", BigInteger, nullable=True),  # NULL: unlimited
    Column("enforcement", String(8), nullable=True),
    Column("grace_percent", Integer, nullable=True),
    Column("grace_period_set", Boolean, nullable=False, server_default=false()),
    Column("grace_period_seconds", Integer, nullable=True),  # NULL: no time limit
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("included_quantity IS NULL OR included_quantity >= 0", name="included"),
    CheckConstraint("enforcement IN ('soft', 'hard')", name="enforcement"),
    CheckConstraint("grace_percent >= 0", name="grace_percent"),
    CheckConstraint("grace_period_seconds > 0", name="grace_period"),
)

plan_features = Table(
    "plan_features",
    metadata,
    # What a plan version grants besides quantities (features.rules): each value as JSON
    # (true, 5, "priority").
    Column("plan_slug", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("feature", String(64), primary_key=True),
    Column("value", String(400), nullable=False),
    ForeignKeyConstraint(
        ["plan_slug", "version"],
        ["plan_versions.plan_slug", "plan_versions.version"],
        ondelete="CASCADE",
    ),
)

org_feature_overrides = Table(
    "org_feature_overrides",
    metadata,
    # An org's own value of a feature (JSON), replacing its plan's.
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("feature", String(64), primary_key=True),
    Column("value", String(400), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

usage_counters = Table(
    "usage_counters",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("period_start", Date, primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    # For sum and count metrics: the sum of accepted lines. For seats: the period's peak
    # member count; for a max, the highest line; for a latest, the last line's quantity.
    Column("quantity", BigInteger, nullable=False),
    # When usage last went from within the limit to beyond it (a hard limit's time grace
    # runs from here); NULL while it has not.
    Column("crossed_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # Units held by open reservations of this period (usage_reservations, status 'held'):
    # on the row, so a conditional write judges usage and holds on the row it locks.
    Column("reserved", BigInteger, nullable=False, default=0, server_default="0"),
    # For a latest metric: where the line its quantity is from stands (event time, then
    # key), so that a write takes another line's quantity only if it stands after it.
    Column("last_at", UTCDateTime, nullable=True),
    Column("last_key", String(255), nullable=True),
    CheckConstraint("quantity >= 0", name="quantity"),
    CheckConstraint("reserved >= 0", name="reserved"),
)

usage_priced_months = Table(
    "usage_priced_months",
    metadata,
    # An org month whose usage came to near the bound on amounts (usage.bounds.NEAR_BOUND):
    # every later write to it prices the whole month, under this row's lock.
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("period_start", Date, primary_key=True),
    Column("noted_at", UTCDateTime, nullable=False),
)

usage_event_keys = Table(
    "usage_event_keys",
    metadata,
    # The idempotency keys an org's events were stored under, and when each event occurred:
    # the one table that decides whether an event is new (insert-or-skip), whichever month a
    # retry of it comes in. Narrow, so that its index stays small; the event itself is in
    # usage_events, under the same key and time.
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),
)

usage_events = Table(
    "usage_events",
    metadata,
    # One row per event an org sent under an idempotency key: the event as received, which a
    # repeat of the key is compared with. What it counts toward is in usage_lines. Whether a
    # key is new is decided by usage_event_keys, which every insert here follows.
    # On PostgreSQL, partitioned by month of `occurred_at` (migration 0047), which the key
    # therefore carries; `usage/partitions.py` makes the months ahead.
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    # The event's name; for a report of one metric's quantity, the metric's key.
    Column("event", String(255), nullable=False),
    # A report of one metric: its quantity. A named event: NULL (its meters read its
    # properties).
    Column("quantity", BigInteger, nullable=True),
    Column("occurred_at", UTCDateTime, primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
    # False: the kernel chose `occurred_at` (received without one, or a consume's or a
    # reservation commit's event); a repeat is then not compared by its time.
    Column("time_given", Boolean, nullable=False, server_default=true()),
    # The event's properties as canonical JSON text (keys sorted, no spaces), so that equal
    # properties are equal text on both databases; NULL: none.
    Column("properties", Text, nullable=True),
    # False: no metric counts it (a protocol's event of a name no metric counts, or one no
    # metric's filters admit): it has no line, and is read back from here.
    Column("counted", Boolean, nullable=False, server_default=true()),
    CheckConstraint("quantity >= 0", name="quantity"),
    # Read by key (a line's event, a repeat's stored payload); events are read back in time
    # order through usage_lines, and those no metric counts through this small index.
    Index(
        "ix_usage_events_uncounted",
        "org_id",
        "occurred_at",
        "idempotency_key",
        postgresql_where=text("NOT counted"),
        sqlite_where=text("NOT counted"),
    ),
)

usage_repeats = Table(
    "usage_repeats",
    metadata,
    # Keys the incumbents' protocols were sent again with another payload and answered as
    # duplicates, as those incumbents do (OpenMeter, Polar): the first payload is what counts;
    # how often it was repeated otherwise, and when last, is read back with the event.
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("times", BigInteger, nullable=False),
    Column("last_at", UTCDateTime, nullable=False),
    CheckConstraint("times > 0", name="times"),
)

usage_lines = Table(
    "usage_lines",
    metadata,
    # What each event counts toward: one row per event and metric it adds to, written with
    # the event, by the transaction that inserted it (in the same statement on PostgreSQL).
    # Counters, invoices and usage read back sum these. No foreign key to usage_events: its
    # check on rows the same statement inserted costs more than the insert itself.
    # On PostgreSQL, partitioned by month (`period_start`): a partition a month, made ahead
    # by the worker (migration 0039; `usage/partitions.py`).
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),  # the event's: its day, its order
    Column("period_start", Date, primary_key=True),
    # The invoice that billed it (NULL: none yet; a late event is billed by the org's next).
    Column("invoice_id", String(32), nullable=True),
    CheckConstraint("quantity >= 0", name="quantity"),
    Index(None, "org_id", "period_start", "metric"),
    Index(None, "org_id", "occurred_at", "idempotency_key"),  # read back in time order
    Index(None, "invoice_id"),
    Index(
        "ix_usage_lines_unbilled",
        "org_id",
        "period_start",
        postgresql_where=text("invoice_id IS NULL"),
        sqlite_where=text("invoice_id IS NULL"),
    ),
)

usage_skips = Table(
    "usage_skips",
    metadata,
    # How many events each meter skipped per org and month: its name and filters matched,
    # but the meter could not read its property from it (the event's `not_counted_by`).
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("period_start", Date, primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    Column("events", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("events > 0", name="events"),
)

usage_unique_values = Table(
    "usage_unique_values",
    metadata,
    # The values each unique-count metric has seen per org and month: an event's line counts
    # 1 when its value goes in here new (insert-or-skip), else 0, so lines still sum.
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("period_start", Date, primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    Column("value", Text, primary_key=True),  # canonical JSON text
)

usage_forgotten_months = Table(
    "usage_forgotten_months",
    metadata,
    # The months whose events and lines were forgotten past BILLING_EVENT_RETENTION_MONTHS
    # (usage/service/retention.py), for every org at once: from `began_at`, invoices of
    # the month are verified against the usage they recorded, not against its lines.
    Column("period_start", Date, primary_key=True),
    Column("began_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),  # NULL: still being forgotten
)

quota_decisions = Table(
    "quota_decisions",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    # What was asked, and the decision as it was answered, so that a retry gets the same.
    # An allowed consume also stored a usage event under the same idempotency key; a
    # reservation, a row of usage_reservations.
    Column("operation", String(8), nullable=False),  # 'consume' or 'reserve'
    Column("metric", String(64), ForeignKey("metrics.key"), nullable=False),
    Column("requested", BigInteger, nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("used", BigInteger, nullable=False),  # before this consume
    Column("included_quantity", BigInteger, nullable=True),  # NULL: unlimited
    Column("remaining", BigInteger, nullable=True),  # NULL: no bound
    Column("enforcement", String(8), nullable=False),
    Column("grace_percent", Integer, nullable=False),
    Column("grace_period_seconds", Integer, nullable=True),
    Column("grace_ends_at", UTCDateTime, nullable=True),
    Column("status_blocks_at", UTCDateTime, nullable=True),
    Column("upgrade_plan", String(64), nullable=True),
    Column("message", Text, nullable=False),
    Column("held", BigInteger, nullable=False),  # by reservations, before this decision
    CheckConstraint("requested >= 0", name="requested"),
    Index(None, "decided_at"),  # the oldest first, for BILLING_DECISION_RETENTION_DAYS
    CheckConstraint("operation IN ('consume', 'reserve')", name="operation"),
)

usage_reservations = Table(
    "usage_reservations",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("reservation_id", String(36), nullable=False),
    Column("metric", String(64), ForeignKey("metrics.key"), nullable=False),
    Column("period_start", Date, nullable=False),  # the counter that holds its units
    Column("estimate", BigInteger, nullable=False),
    Column("status", String(10), nullable=False),
    Column("reserved_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("committed_quantity", BigInteger, nullable=True),
    Column("settled_at", UTCDateTime, nullable=True),
    CheckConstraint("estimate >= 0", name="estimate"),
    CheckConstraint(
        "status IN ('held', 'refused', 'committed', 'released', 'expired')", name="status"
    ),
    # The holds a decision gives back when their TTL has ended.
    Index(None, "org_id", "metric", "status", "expires_at"),
    # A reservation id is random (uuid4): unique within the org, found alone by its index.
    UniqueConstraint("org_id", "reservation_id"),
    Index(None, "reservation_id"),
)

plan_alert_thresholds = Table(
    "plan_alert_thresholds",
    metadata,
    Column("plan_slug", String(64), ForeignKey("plans.slug", ondelete="CASCADE"), primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    # Keys joined by commas: "80%,100%" (percentages of the limit) or "5000" (quantities).
    Column("thresholds", String(200), nullable=False),
)

org_alert_thresholds = Table(
    "org_alert_thresholds",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    Column("thresholds", String(200), nullable=False),  # replaces the plan's; "": none
    Column("updated_at", UTCDateTime, nullable=False),
)

usage_alerts = Table(
    "usage_alerts",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("period_start", Date, primary_key=True),
    Column("metric", String(64), ForeignKey("metrics.key"), primary_key=True),
    Column("threshold", String(24), primary_key=True),  # its key, or 'blocked'
    # 'crossed' until a change of limit or thresholds puts usage back under it.
    Column("status", String(10), nullable=False),
    Column("crossings", Integer, nullable=False),  # in this period, the current one included
    Column("used", BigInteger, nullable=False),  # when it last changed status
    Column("limit_quantity", BigInteger, nullable=True),
    Column("crossed_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("dismissed_at", UTCDateTime, nullable=True),  # on the billing page
    CheckConstraint("status IN ('crossed', 'resolved')", name="status"),
)

billing_events = Table(
    "billing_events",
    metadata,
    # Keyed by org (docs/scaling.md): the org the event is about, the operators' events too
    # (events/rules.py: FOR_OPERATORS; row-level security keeps those from the org's people).
    # The order events were written in (a page of the log,
    # the order of delivery): a sequence's on PostgreSQL; on SQLite, where only a lone
    # integer key numbers itself, given by the insert (events/repository.py).
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), autoincrement=True, nullable=False),
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("payload", Text, nullable=False),  # the JSON every channel delivers
    # When the delivery worker made the event's deliveries (NULL: not yet: the outbox).
    Column("dispatched_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("org_id", "seq"),
    UniqueConstraint("org_id", "event_id"),
    Index(None, "seq"),  # the deployment's log, newest first
    Index(
        "ix_billing_events_undispatched",
        "seq",
        postgresql_where=text("dispatched_at IS NULL"),
        sqlite_where=text("dispatched_at IS NULL"),
    ),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    # A reference table (docs/scaling.md), read for every event: its org is named without a
    # foreign key (the org exists when it is written; orgs are never deleted).
    Column("endpoint_id", String(32), primary_key=True),
    # NULL: deployment-wide, for every org's events.
    Column("org_id", String(ID), nullable=True),
    Column("url", String(2000), nullable=False),
    Column("event_types", String(400), nullable=False),  # comma-joined; "": every type
    Column("description", String(200), nullable=True),
    # Signing keys: HMAC is symmetric, so the kernel keeps them (never shown again).
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100), nullable=True),  # still signs until:
    Column("previous_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
    Index(None, "org_id"),
)

org_notification_settings = Table(
    "org_notification_settings",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("slack_webhook_url", String(2000), nullable=True),
    Column("email", Boolean, nullable=False, server_default=true()),  # to owners and admins
    # Which event types are emailed, comma-separated; NULL: the default (TOLD_TO_PEOPLE).
    Column("email_events", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    # Keyed by org, the org of its event (docs/scaling.md); also found by its id alone.
    Column("org_id", String(ID), nullable=False),
    Column("delivery_id", String(32), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("channel", String(8), nullable=False),  # webhook, email, slack
    Column("target", String(32), nullable=False),  # the endpoint's id, or the channel's name
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("attempt_base", Integer, nullable=False, server_default="0"),  # before a replay
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # A worker that claims an attempt holds it until then; one that dies mid-attempt lets
    # it go, and the next claim sends it again (with the same id).
    Column("locked_until", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("org_id", "delivery_id"),
    UniqueConstraint("org_id", "event_id", "channel", "target"),
    ForeignKeyConstraint(
        ["org_id", "event_id"],
        ["billing_events.org_id", "billing_events.event_id"],
        ondelete="CASCADE",
    ),
    CheckConstraint("channel IN ('webhook', 'email', 'slack')", name="channel"),
    CheckConstraint("status IN ('pending', 'delivered', 'failed', 'skipped')", name="status"),
    Index(None, "delivery_id"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "target", "created_at"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("org_id", String(ID), nullable=False),
    Column("delivery_id", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),  # the receiver's answer, if any
    Column("error", Text, nullable=True),
    Column("outcome", String(10), nullable=False),  # delivered, retry, failed
    PrimaryKeyConstraint("org_id", "delivery_id", "attempt"),
    ForeignKeyConstraint(
        ["org_id", "delivery_id"],
        ["deliveries.org_id", "deliveries.delivery_id"],
        ondelete="CASCADE",
    ),
)

invoice_numbers = Table(
    "invoice_numbers",
    metadata,
    # One row per sequence, 'invoices' and 'credit_notes': the last number given; taken in
    # the transaction that makes the document, so a rollback gives it back (no gaps).
    Column("counter", String(16), primary_key=True),
    Column("last_number", BigInteger, nullable=False),
)

invoices = Table(
    "invoices",
    metadata,
    # Keyed by org (docs/scaling.md): an invoice is also found by its id alone, and by its
    # number, which the deployment's one counter (`invoice_numbers`) keeps unique and
    # gapless across orgs (`invoices verify` checks it), so the database need hold it
    # unique only within the org.
    Column("invoice_id", String(32), nullable=False),
    Column("org_id", String(ID), ForeignKey("orgs.org_id"), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("number", String(40), nullable=False),
    Column("status", String(8), nullable=False),  # open, paid, void
    Column("currency", String(3), nullable=False),
    Column("subtotal", Money(14, 2), nullable=False),
    Column("total", Money(14, 2), nullable=False),
    # The plan in force at the period's end: it priced the usage.
    Column("plan_slug", String(64), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("bills_usage", Boolean, nullable=False),  # the org was billable in the period
    Column("sequence", BigInteger, nullable=False),  # the number's figure
    Column("issued_at", UTCDateTime, nullable=False),
    Column("paid_at", UTCDateTime, nullable=True),
    # The payment that paid it (`payments.payment_id`); NULL when marked paid by hand.
    Column("paid_by", String(32), nullable=True),
    Column("voided_at", UTCDateTime, nullable=True),
    Column("void_reason", Text, nullable=True),
    Column("replaces", String(32), nullable=True),  # the voided invoice it corrects
    # What its credit notes gave back, in all (credit_notes.rules.credit_lines): moved
    # only by a statement that checks the amount it moves from.
    Column("credited", Money(14, 2), nullable=False, server_default="0"),
    CheckConstraint("status IN ('open', 'paid', 'void')", name="status"),
    ForeignKeyConstraint(
        ["plan_slug", "plan_version"], ["plan_versions.plan_slug", "plan_versions.version"]
    ),
    # One invoice per org and period that counts; a voided one is kept beside its correction.
    Index(
        "ix_invoices_live_period",
        "org_id",
        "period_start",
        unique=True,
        postgresql_where=text("status <> 'void'"),
        sqlite_where=text("status <> 'void'"),
    ),
    Index(None, "org_id", "issued_at"),
    PrimaryKeyConstraint("org_id", "invoice_id"),
    UniqueConstraint("org_id", "number"),
    UniqueConstraint("org_id", "sequence"),
    Index(None, "invoice_id"),
    Index(None, "number"),
    Index(None, "sequence"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("invoice_id", String(32), nullable=False),
    Column("number", Integer, nullable=False),  # from 1, in the invoice's order
    Column("kind", String(20), nullable=False),
    Column("description", Text, nullable=False),
    Column("amount", Money(14, 2), nullable=False),
    Column("formula", Text, nullable=False),
    Column("plan_slug", String(64), nullable=False),
    Column("plan_version", Integer, nullable=False),
    Column("period_start", Date, nullable=False),  # an adjustment's: the period it adjusts
    Column("metric", String(64), nullable=True),
    Column("quantity", BigInteger, nullable=False),
    Column("unit_price", Money(18, 6), nullable=False),
    Column("unit_size", BigInteger, nullable=False),
    Column("starts_at", UTCDateTime, nullable=True),
    Column("org_id", String(ID), nullable=False),  # the invoice's
    Column("coupon", String(64), nullable=True),  # a discount line's coupon
    # A usage line of a metric priced per value: the property, and the value (NULL: every
    # value the plan does not price apart).
    Column("dimension", String(64), nullable=True),
    Column("dimension_value", String(200), nullable=True),
    PrimaryKeyConstraint("org_id", "invoice_id", "number"),
    ForeignKeyConstraint(
        ["org_id", "invoice_id"], ["invoices.org_id", "invoices.invoice_id"], ondelete="CASCADE"
    ),
)

invoice_usage = Table(
    "invoice_usage",
    metadata,
    # What usage an invoice billed, per period and metric: the sum of the events marked
    # with it (seats: the period's peak), and the org's limit it was billed against.
    Column("invoice_id", String(32), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("metric", String(64), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("included", BigInteger, nullable=True),  # NULL: unlimited
    # For a latest metric: where the last line it billed stands (event time, then key).
    Column("last_at", UTCDateTime, nullable=True),
    Column("last_key", String(255), nullable=True),
    Column("org_id", String(ID), nullable=False),  # the invoice's
    # A metric priced per value: what was billed of each value priced apart (JSON object).
    Column("split", Text, nullable=True),
    PrimaryKeyConstraint("org_id", "invoice_id", "period_start", "metric"),
    ForeignKeyConstraint(
        ["org_id", "invoice_id"], ["invoices.org_id", "invoices.invoice_id"], ondelete="CASCADE"
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),  # SHA-256 of the secret part, hex
    Column("scopes", String(200), nullable=False),  # space-separated
    Column("org_id", String(ID), nullable=True),  # NULL: valid for every org
    Column("name", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

payment_customers = Table(
    "payment_customers",
    metadata,
    # The org's customer at Stripe. The row is claimed (no customer id yet) before Stripe is
    # asked, so that one worker at a time makes it; the id is stored once Stripe answers.
    Column("org_id", String(ID), ForeignKey("orgs.org_id"), primary_key=True),
    Column("stripe_customer_id", String(255), nullable=True),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=True),  # when Stripe answered
    # The card invoices are charged to, as Stripe describes it (never its number), and when
    # it was made the default (a failed collection is tried again at once on a new card).
    Column("card_payment_method_id", String(255), nullable=True),
    Column("card_brand", String(32), nullable=True),
    Column("card_last4", String(4), nullable=True),
    Column("card_exp_month", Integer, nullable=True),
    Column("card_exp_year", Integer, nullable=True),
    Column("card_set_at", UTCDateTime, nullable=True),
    # When Stripe was last asked for the card, while none is on file (CARD_CHECK_EVERY).
    Column("card_checked_at", UTCDateTime, nullable=True),
    # Stripe's customer id: unique within the org (Stripe keeps it unique), found alone
    # (a webhook names the customer) by its index.
    UniqueConstraint("org_id", "stripe_customer_id"),
    Index(None, "stripe_customer_id"),
)

payments = Table(
    "payments",
    metadata,
    # One attempt to collect an invoice: one PaymentIntent at Stripe, keyed by the invoice
    # and the attempt's number (payments.rules.attempt_key). Written `pending` before Stripe
    # is asked; moved forward only (payments.rules.moved).
    Column("payment_id", String(32), nullable=False),
    Column("invoice_id", String(32), nullable=False),
    Column("org_id", String(ID), ForeignKey("orgs.org_id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("amount", Money(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("stripe_payment_intent_id", String(255), nullable=True),
    Column("stripe_payment_method_id", String(255), nullable=True),  # the card it charged
    Column("failure_code", String(64), nullable=True),
    Column("failure_message", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Paid now (payments.rules.open_pay_now): the Checkout Session the owner pays on.
    Column("checkout_session_id", String(255), nullable=True),
    Column("checkout_url", Text, nullable=True),
    Column("checkout_expires_at", UTCDateTime, nullable=True),
    CheckConstraint(
        "status IN ('pending', 'processing', 'succeeded', 'failed', 'canceled')", name="status"
    ),
    CheckConstraint("attempt >= 1", name="attempt"),
    CheckConstraint("amount > 0", name="amount"),
    Index(None, "org_id", "created_at"),
    ForeignKeyConstraint(["org_id", "invoice_id"], ["invoices.org_id", "invoices.invoice_id"]),
    # Keyed by org (docs/scaling.md); each id Stripe gives unique within the org, and
    # found by itself through its index (Stripe keeps it unique).
    PrimaryKeyConstraint("org_id", "payment_id"),
    UniqueConstraint("org_id", "invoice_id", "attempt"),
    UniqueConstraint("org_id", "stripe_payment_intent_id"),
    UniqueConstraint("org_id", "checkout_session_id"),
    Index(None, "payment_id"),
    Index(None, "stripe_payment_intent_id"),
    Index(None, "checkout_session_id"),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    # A paid invoice corrected by giving money back (credit_notes.rules): by line or in
    # full, numbered in one sequence, refunded through Stripe from the payment that paid
    # the invoice (payments.rules.refund_key); its refund moves forward only.
    Column("credit_note_id", String(32), nullable=False),
    Column("number", String(20), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("org_id", String(ID), ForeignKey("orgs.org_id"), nullable=False),
    Column("invoice_id", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("amount", Money(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("lines", Text, nullable=False),  # JSON: [{number, description, amount}]
    # NULL for a note kept as a balance (the invoice was paid outside Stripe).
    Column("payment_id", String(32), nullable=True),
    Column("status", String(10), nullable=False),
    Column("stripe_refund_id", String(255), nullable=True),
    Column("failure_message", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('pending', 'refunded', 'failed', 'balance')", name="status"),
    CheckConstraint("amount > 0", name="amount"),
    Index(None, "invoice_id"),
    ForeignKeyConstraint(["org_id", "invoice_id"], ["invoices.org_id", "invoices.invoice_id"]),
    ForeignKeyConstraint(["org_id", "payment_id"], ["payments.org_id", "payments.payment_id"]),
    # Keyed by org; the number and sequence, like an invoice's, unique across orgs by
    # their counter (`invoice_numbers`' `credit_notes` row).
    PrimaryKeyConstraint("org_id", "credit_note_id"),
    UniqueConstraint("org_id", "number"),
    UniqueConstraint("org_id", "sequence"),
    UniqueConstraint("org_id", "stripe_refund_id"),
    Index(None, "credit_note_id"),
    Index(None, "number"),
    Index(None, "sequence"),
    Index(None, "stripe_refund_id"),
)

credit_grants = Table(
    "credit_grants",
    metadata,
    # Money an org holds for its next invoices (credits.rules), one grant per source (a
    # credit note on an invoice paid outside Stripe); `remaining` moved only by a statement
    # that checks the amount it moves from.
    Column("grant_id", String(32), nullable=False),
    Column("org_id", String(ID), ForeignKey("orgs.org_id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Money(14, 2), nullable=False),
    Column("remaining", Money(14, 2), nullable=False),
    Column("source", String(16), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="amount"),
    # Only the sign: money is text on SQLite, where a comparison of two amounts is not
    # numeric (`credits verify` checks that no more is left than was granted).
    CheckConstraint("remaining >= 0", name="remaining"),
    Index(None, "org_id", "currency"),
    PrimaryKeyConstraint("org_id", "grant_id"),
    UniqueConstraint("org_id", "source_id"),  # a source is an org's (its credit note)
    Index(None, "grant_id"),
    Index(None, "source_id"),
)

credit_burns = Table(
    "credit_burns",
    metadata,
    # What an invoice drew from a grant when it was made (its `credit_applied` line);
    # released when the invoice was voided, the money given back to the grant.
    Column("grant_id", String(32), nullable=False),
    Column("invoice_id", String(32), nullable=False),
    Column("org_id", String(ID), ForeignKey("orgs.org_id"), nullable=False),
    Column("amount", Money(14, 2), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime, nullable=True),
    CheckConstraint("amount > 0", name="amount"),
    Index(None, "invoice_id"),
    ForeignKeyConstraint(["org_id", "invoice_id"], ["invoices.org_id", "invoices.invoice_id"]),
    ForeignKeyConstraint(
        ["org_id", "grant_id"], ["credit_grants.org_id", "credit_grants.grant_id"]
    ),
    PrimaryKeyConstraint("org_id", "grant_id", "invoice_id"),
)

stripe_events = Table(
    "stripe_events",
    metadata,
    # Every Stripe webhook event applied, by its id: each is applied once, for ever.
    Column("event_id", String(255), primary_key=True),
    Column("event_type", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("payment_id", String(32), nullable=True),  # the attempt it reported on, if known
    Column("outcome", String(32), nullable=False),  # what applying it did
)

sandbox_clock = Table(
    "sandbox_clock",
    metadata,
    # One row at most: how far the sandbox clock stands past real time (dev mode only; read
    # nowhere else). No row, or 0: real time.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("offset_microseconds", BigInteger, nullable=False),
    Column("moved_at", UTCDateTime, nullable=False),  # real time of the last move
    CheckConstraint("id = 1", name="one_row"),
    CheckConstraint("offset_microseconds >= 0", name="forward"),
)

coupons = Table(
    "coupons",
    metadata,
    # Discounts an operator defines (discounts.rules.Coupon); what makes one is never
    # changed, only `redemptions` (moved by each application, within `max_redemptions`) and
    # `archived_at`. `plans` and `applies_to`: JSON lists of keys, NULL for all.
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(8), nullable=False),  # 'percent' or 'amount'
    Column("value", Money(14, 2), nullable=False),
    Column("currency", String(3), nullable=True),
    Column("duration", String(10), nullable=False),  # 'once', 'repeating', 'forever'
    Column("periods", Integer, nullable=True),
    Column("plans", Text, nullable=True),
    Column("applies_to", Text, nullable=True),
    Column("max_redemptions", Integer, nullable=True),
    Column("redeem_by", UTCDateTime, nullable=True),
    Column("redemptions", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("archived_at", UTCDateTime, nullable=True),
    CheckConstraint("value > 0", name="value"),
    CheckConstraint(
        "redemptions >= 0 AND (max_redemptions IS NULL OR redemptions <= max_redemptions)",
        name="redemptions",
    ),
)

coupon_redemptions = Table(
    "coupon_redemptions",
    metadata,
    # A coupon applied to an org, once per org: it discounts the invoices of the periods it
    # covers (from the month of `redeemed_at`) made while it is applied (before
    # `removed_at`).
    Column("org_id", String(ID), ForeignKey("orgs.org_id", ondelete="CASCADE"), primary_key=True),
    Column("coupon", String(64), ForeignKey("coupons.code"), primary_key=True),
    Column("redeemed_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
)

ORG_SCOPED_TABLES = (
    orgs,
    org_members,
    org_billing_state,
    subscription_history,
    scheduled_plan_changes,
    org_limit_overrides,
    org_feature_overrides,
    usage_counters,
    usage_event_keys,
    usage_events,
    usage_lines,
    usage_unique_values,
    usage_priced_months,
    usage_skips,
    usage_repeats,
    quota_decisions,
    usage_reservations,
    org_alert_thresholds,
    usage_alerts,
    billing_events,
    invoices,
    payment_customers,
    payments,
    coupon_redemptions,
)

"""The one settings object, read from `BILLING_*` environment variables."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "billing-kernel-dev-secret-not-for-production"
"""Signs tokens in dev mode when no secret is set; refused outside dev mode."""
MIN_JWT_SECRET_LENGTH = 32

RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
"""Seconds to wait before each retry of a delivery after its first attempt (Standard
Webhooks' usual schedule): eight attempts over about 27 hours, then it has failed."""


class DowngradeTiming(StrEnum):
    """When an org's own move to a cheaper plan takes effect (BILLING_DOWNGRADE)."""

    PERIOD_END = "period_end"
    IMMEDIATE = "immediate"


class Settings(BaseSettings):
    """Kernel configuration. Every field is read from `BILLING_<FIELD_NAME>`."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="sqlite:///./billing.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db. Through "
        "PgBouncer in transaction pooling mode (or another transaction pooler), add "
        "`?pgbouncer=true`.",
    )
    database_direct_url: str | None = Field(
        default=None,
        description="A URL to PostgreSQL itself when BILLING_DATABASE_URL goes through a "
        "transaction pooler: `migrate` runs its migrations there, and the delivery worker "
        "listens there to be woken when events are written (without it, it polls every "
        "BILLING_WORKER_POLL_SECONDS).",
    )
    database_replica_url: str | None = Field(
        default=None,
        description="A streaming read replica of the PostgreSQL database: the billing page, "
        "the usage read-back lists and the exports read from it while it is at most "
        "BILLING_REPLICA_MAX_LAG_SECONDS behind; checks, consumes, writes and everything else "
        "read the primary.",
    )
    replica_max_lag_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How far behind the primary the read replica may be and still be read.",
    )
    trial_days: int = Field(default=30, ge=0, le=3650, description="Length of a new org's trial.")
    auto_create_orgs: bool = Field(
        default=True,
        description="Create and seed an org on its first usage event; if false, such events "
        "are refused as unknown.",
    )
    max_clock_skew_seconds: int = Field(
        default=300, ge=0, le=3600, description="How far in the future an event time may be."
    )
    max_event_age_days: int = Field(
        default=35, ge=1, le=366, description="How old an event time may be."
    )
    past_due_grace_days: int = Field(
        default=7,
        ge=0,
        le=365,
        description="How long an org that became past due keeps working; after it, every "
        "metered operation is refused (`past_due`).",
    )
    ended_trial_blocks: bool = Field(
        default=False,
        description="Treat an org whose trial ended, and whose status was not set to `active`, "
        "like one past due: after BILLING_PAST_DUE_GRACE_DAYS from the trial's end, every "
        "metered operation is refused (`trial_ended`). Off by default: nothing but your "
        "backend (`PUT /api/v1/orgs/{org_id}` with `status`) moves an org out of trial, "
        "except, with BILLING_STRIPE_API_KEY, a trial's end with a card on file (active).",
    )
    db_pool_size: int = Field(
        default=10, ge=1, le=200, description="PostgreSQL connections per process."
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="Largest request body taken; a larger one is refused with 413 before it is "
        "read. The default takes a full 1,000-event batch even of the longest ids.",
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a server keeps a verified API key in memory; a revoked key is "
        "refused by every server within this time (at once by the one that revoked it).",
    )

    dev_mode: bool = Field(
        default=False,
        description="Development conveniences: a built-in JWT secret, dev hints on pages.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret that user tokens are signed with."
    )
    jwks_url: str | None = Field(
        default=None,
        description="Identity provider's JWKS URL; when set, user tokens are RS256/ES256 "
        "tokens verified with its public keys instead of the secret.",
    )
    jwt_audience: str | None = Field(default=None, description="Required `aud` of user tokens.")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` of user tokens.")
    auth_cookie: str = Field(
        default="billing-auth-token", description="Cookie that may carry the user token."
    )

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where people reach the kernel: links in alert emails and Slack messages.",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://user:password@host:port (STARTTLS when the server offers it), "
        "or smtps:// for TLS from the start. Unset: no alert emails.",
    )
    email_from: str = Field(
        default="billing@localhost", description="The From address of alert emails."
    )
    delivery_retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Forget billing events (and their deliveries and attempts) this many days "
        "after they were made, once every delivery has finished; unset: keep them all.",
    )
    event_retention_months: int | None = Field(
        default=None,
        ge=1,
        le=1_200,
        description="Forget usage events (and their lines) this many whole months after "
        "their month ended, once every line of the month is billed, and never before "
        "BILLING_MAX_EVENT_AGE_DAYS past it; counters, invoices and the usage they recorded "
        "are kept. Unset: keep every event.",
    )
    decision_retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Forget quota decisions (what a consume or a reservation was answered, "
        "kept to answer its retries alike) this many days after they were made, except a "
        "reservation's while it holds units; unset: keep them all.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object a log line, each request's with its request id, "
        "org and caller; `text`: lines for a person.",
    )
    worker_in_server: bool = Field(
        default=False,
        description="Run the delivery worker inside `billing-kernel serve` (`make run` does); "
        "in production run `billing-kernel worker` processes instead.",
    )
    worker_poll_seconds: float = Field(
        default=0.5, gt=0, le=60, description="How often an idle worker looks for work."
    )
    delivery_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="How long one delivery attempt may take."
    )
    delivery_retry_seconds: tuple[float, ...] = Field(
        default=RETRY_SCHEDULE,
        description="Seconds before each retry of a failed delivery (each moved by up to 10 %"
        " at random); when they are spent, the delivery has failed. The default: eight "
        "attempts over about 27 hours.",
    )
    allow_private_webhooks: bool | None = Field(
        default=None,
        description="Whether webhooks and Slack messages may go to loopback, private, "
        "link-local (cloud metadata), multicast, unspecified or reserved addresses. Unset: "
        "only in dev mode. Leave it off in production: an org's admin registers the URLs.",
    )
    stripe_api_key: SecretStr | None = Field(
        default=None,
        description="Stripe's secret key (sk_live_... or sk_test_...): with it, the worker "
        "collects every finalized invoice above zero from the org's card through Stripe. "
        "Unset: payments are recorded by hand (`billing-kernel invoices mark-paid`).",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The signing secret (whsec_...) of the Stripe webhook endpoint that "
        "points at /api/v1/payments/stripe/webhook.",
    )
    dunning_days: str = Field(
        default="1,3,5,7",
        description="The days after an invoice's collection first failed on which it is "
        "tried again, increasing whole days from 1 to 60 (empty: never by itself); after the "
        "last the org stays past due. A new card is tried at once.",
    )
    collect_interval_seconds: float = Field(
        default=60,
        gt=0,
        le=86400,
        description="How often the worker collects the invoices due through Stripe.",
    )
    stripe_api_base: str | None = Field(
        default=None,
        description="Where Stripe's API is. Unset: Stripe itself; tests and staging point it "
        "at a Stripe-compatible server.",
    )
    webhook_secret_overlap_hours: float = Field(
        default=24, ge=0, le=720, description="How long a rotated webhook secret still signs."
    )
    late_event_grace_hours: int = Field(
        default=24,
        ge=0,
        le=720,
        description="How long after a billing period ends it closes: until then a late event "
        "still counts in it; after, it is billed as an adjustment on the org's next invoice.",
    )
    invoice_prefix: str = Field(
        default="INV-",
        pattern=r"^[A-Za-z0-9-]{0,16}$",
        description="What every invoice number starts with: INV-000001, INV-000002, ...",
    )
    downgrade: DowngradeTiming = Field(
        default=DowngradeTiming.PERIOD_END,
        description="When an org's own move to a cheaper plan takes effect: `period_end` (a "
        "scheduled change, visible and cancelable) or `immediate` (at once, with a credit).",
    )
    close_periods: bool = Field(
        default=True,
        description="Whether the worker (and a server with BILLING_WORKER_IN_SERVER) closes "
        "the billing periods that are due; turn it off where they should not.",
    )
    close_interval_seconds: float = Field(
        default=300,
        gt=0,
        le=86400,
        description="How often the worker closes the billing periods that are due.",
    )

    @field_validator("dunning_days")
    @classmethod
    def _dunning_days(cls, value: str) -> str:
        parse_dunning_days(value)  # ValueError, named with the setting
        return value

    def dunning_schedule(self) -> tuple[int, ...]:
        """BILLING_DUNNING_DAYS as days."""
        return parse_dunning_days(self.dunning_days)

    def signing_secret(self) -> str:
        """The HS256 secret in force: the configured one, or the dev secret in dev mode."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return DEV_JWT_SECRET if self.dev_mode else ""

    def private_webhooks_allowed(self) -> bool:
        """BILLING_ALLOW_PRIVATE_WEBHOOKS, or dev mode when it is unset."""
        return self.dev_mode if self.allow_private_webhooks is None else self.allow_private_webhooks

    def problems_for_serving(self) -> list[str]:
        """Why the server must not start with these settings (empty when it may)."""
        if self.dev_mode or self.jwks_url:
            return []
        secret = self.signing_secret()
        if not secret:
            return ["BILLING_JWT_SECRET is not set (or set BILLING_JWKS_URL)"]
        if secret == DEV_JWT_SECRET:
            return ["BILLING_JWT_SECRET is the built-in development secret"]
        if len(secret) < MIN_JWT_SECRET_LENGTH:
            return [f"BILLING_JWT_SECRET is shorter than {MIN_JWT_SECRET_LENGTH} characters"]
        return []


def parse_dunning_days(text: str) -> tuple[int, ...]:
    """BILLING_DUNNING_DAYS, "1,3,5,7": the days after a collection first failed on which
    it is tried again, each a whole number from 1 to 60, increasing; "" for no retries.
    ValueError saying what is wrong."""
    if not text.strip():
        return ()
    days: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item.isdigit() or not 1 <= int(item) <= 60:
            raise ValueError(f"dunning days are whole days from 1 to 60, not {item!r}")
        if days and int(item) <= days[-1]:
            raise ValueError(f"dunning days must increase: {item} comes after {days[-1]}")
        days.append(int(item))
    return tuple(days)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

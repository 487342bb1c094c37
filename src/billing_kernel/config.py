"""The one settings object, read from `BILLING_*` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

FALLBACK_PLAN_SLUG = "internal-dev"


class Settings(BaseSettings):
    """Kernel configuration. Every field is read from `BILLING_<FIELD_NAME>`."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="sqlite:///./billing.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db.",
    )
    default_plan_slug: str = Field(
        default=FALLBACK_PLAN_SLUG,
        description="Plan given to new orgs; an unknown or inactive slug falls back to "
        "internal-dev with one logged warning.",
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
    db_pool_size: int = Field(default=10, ge=1, le=200, description="PostgreSQL pool size.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

"""Orgs and plan changes as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.common.validation import ID_PATTERN_TEXT
from billing_kernel.orgs.rules import (
    MAX_ALIAS_LENGTH,
    MAX_ALIASES,
    BillingStatus,
    Org,
    OrgOrigin,
)
from billing_kernel.web.schemas import (
    DateTimeText,
    Slug,
    StrictBody,
    Text,
)


class PlanChangeIn(StrictBody):
    plan_slug: Slug = Field(description="Slug of an active plan.", examples=["growth"])


class PlanChangeConfirmIn(PlanChangeIn):
    at: DateTimeText | None = Field(
        default=None,
        description="The `effective_at` of the preview being confirmed: the change is then "
        "billed from that moment (a scheduled change: confirmed now, taking effect then). At "
        "most ten minutes old, in the current period, with no change of the org's since "
        "(else 409 `preview_stale`: preview again). Left out: now.",
    )
    preview_token: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The preview's `preview_token`: the change is then exactly the one the "
        "preview showed, its lines to the cent, or 409 `preview_stale` when anything it priced "
        "has changed since (either plan's price or version, the org's plan, status, limit "
        "overrides or scheduled change). Give it with `at`: without it, 409 `preview_stale` "
        "(now is not the moment the preview priced).",
    )


class OrgIn(StrictBody):
    name: Text | None = Field(default=None, max_length=200)
    plan_slug: Slug | None = Field(default=None, description="Move the org to this plan.")
    status: BillingStatus | None = Field(
        default=None,
        description="Put the org in this billing status, as your payments say: `active` once "
        "it pays, `past_due` when a payment fails (metered use goes on for "
        "BILLING_PAST_DUE_GRACE_DAYS, then is refused), `canceled` (refused at once), or "
        "`trial`. Left out: unchanged.",
    )


class OrgOut(BaseModel):
    org_id: str
    name: str | None
    plan_slug: str
    plan_version: int = Field(
        description="The version of the plan the org is on: it keeps it until it changes plan."
    )
    status: BillingStatus
    status_since: datetime = Field(description="When the org entered its current status.")
    trial_ends_at: datetime | None
    created_at: datetime
    created_via: OrgOrigin = Field(
        description="How the org was created: `api` (on purpose), `usage_event` (by its first "
        "usage event: check the id is not a typo), `cli`, or `unknown` (before this was "
        "recorded)."
    )

    @classmethod
    def of(cls, org: Org) -> OrgOut:
        return cls(
            org_id=org.org_id,
            name=org.name,
            plan_slug=org.state.plan_slug,
            plan_version=org.state.plan_version,
            status=org.state.status,
            status_since=org.state.status_since,
            trial_ends_at=org.state.trial_ends_at,
            created_at=org.created_at,
            created_via=org.created_via,
        )


Alias = Annotated[str, Field(max_length=MAX_ALIAS_LENGTH, pattern=ID_PATTERN_TEXT)]


class AliasesIn(StrictBody):
    aliases: list[Alias] = Field(
        max_length=MAX_ALIASES,
        description="Every other name of the org, each 1-255 printable characters, such as "
        "the customer id another billing system gave it (`cus_...`): an event sent through "
        "a compatible protocol (see docs/compat.md) for one of them counts for this org. "
        "Replaces the org's aliases; `[]` removes them.",
        examples=[["cus_NffrFeUfNV2Hib"]],
    )


class AliasesOut(BaseModel):
    org_id: str
    aliases: list[str] = Field(description="Sorted.")

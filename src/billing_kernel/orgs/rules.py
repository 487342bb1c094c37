"""An org's billing state: its plan, lifecycle status and trial."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from billing_kernel.common.periods import days_until, ensure_utc
from billing_kernel.common.validation import validate_id
from billing_kernel.errors import BillingError, InvalidInput, NoDefaultPlan, OrgNotFound


class BillingStatus(StrEnum):
    TRIAL = "trial"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"


class OrgOrigin(StrEnum):
    """How an org came to exist."""

    API = "api"
    """Created on purpose: `PUT /api/v1/orgs/{org_id}`, or the kernel's Python API."""
    USAGE_EVENT = "usage_event"
    """Created by its first usage event (BILLING_AUTO_CREATE_ORGS): check the id is real."""
    CLI = "cli"
    """Created with the command line (`orgs create`, `token --org`, `demo`)."""
    UNKNOWN = "unknown"
    """Created before the kernel recorded how."""


@dataclass(frozen=True, slots=True)
class Org:
    """An org as a list shows it: who it is, how it came to be, and its billing state."""

    org_id: str
    name: str | None
    created_at: datetime
    created_via: OrgOrigin
    state: OrgBillingState


@dataclass(frozen=True, slots=True)
class Admission:
    """What admitting a batch's orgs did."""

    created: frozenset[str]
    """Orgs this batch created (auto-creation): new ids, or typos, for the caller to see."""
    unknown: frozenset[str]
    """Orgs that do not exist and were not created (auto-creation off, or no default
    plan to create them on)."""
    no_default: NoDefaultPlan | None = None
    """Why they were not created, when auto-creation is on."""

    def refusal(self, org_id: str) -> BillingError:
        """What usage for the unknown org `org_id` is refused with."""
        if self.no_default is not None:
            return self.no_default
        return OrgNotFound(
            f"unknown org {org_id!r} (BILLING_AUTO_CREATE_ORGS is false)", org_id=org_id
        )


@dataclass(frozen=True, slots=True)
class OrgBillingState:
    org_id: str
    plan_slug: str
    status: BillingStatus
    trial_ends_at: datetime | None
    created_at: datetime
    updated_at: datetime
    status_since: datetime
    """When the org entered its current status."""
    plan_version: int = 1
    """The version of the plan the org subscribed to: it keeps it until it changes plan."""

    def trial_days_left(self, now: datetime) -> int | None:
        """Days until the trial ends (0 once it has), or None when the org is not in trial."""
        if self.status is not BillingStatus.TRIAL or self.trial_ends_at is None:
            return None
        return days_until(self.trial_ends_at, now)


BILLED_STATUSES = frozenset({BillingStatus.ACTIVE, BillingStatus.PAST_DUE})


def billable(status: BillingStatus) -> bool:
    """Whether time in `status` is billed: `active` and `past_due` are; a trial and a
    cancellation are not."""
    return status in BILLED_STATUSES


def new_trial_state(
    org_id: str, plan_slug: str, now: datetime, trial_days: int, plan_version: int = 1
) -> OrgBillingState:
    """The state a new org is seeded with: the default plan (at its current version), in
    trial for `trial_days`."""
    now = ensure_utc(now)
    return OrgBillingState(
        org_id=org_id,
        plan_slug=plan_slug,
        plan_version=plan_version,
        status=BillingStatus.TRIAL,
        trial_ends_at=now + timedelta(days=trial_days),
        created_at=now,
        updated_at=now,
        status_since=now,
    )


MAX_ALIASES = 20
MAX_ALIAS_LENGTH = 255


def validate_aliases(aliases: Iterable[object]) -> list[str]:
    """An org's aliases, each a printable id of 1-255 characters, at most MAX_ALIASES,
    sorted and without repeats; InvalidInput names the first that is not."""
    found: list[str] = []
    for index, alias in enumerate(aliases):
        found.append(validate_id(alias, f"aliases[{index}]", MAX_ALIAS_LENGTH))
    if len(set(found)) > MAX_ALIASES:
        raise InvalidInput(f"an org has at most {MAX_ALIASES} aliases", field="aliases")
    return sorted(set(found))

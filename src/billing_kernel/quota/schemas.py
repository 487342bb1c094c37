"""Quota checks, and an org's own terms, as the API takes and answers them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from billing_kernel.common.validation import (
    ID_PATTERN_TEXT,
    MAX_EVENT_QUANTITY,
    MAX_IDEMPOTENCY_KEY_LENGTH,
)
from billing_kernel.plans.rules import HOUR, Enforcement
from billing_kernel.plans.schemas import GraceHours, GracePercent, PolicyOut
from billing_kernel.quota.rules import LimitOverride, QuotaDecision, Reason, Terms
from billing_kernel.web.schemas import WHOLE, StrictBody, WholeNumber

IdempotencyKey = Annotated[
    str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH, pattern=ID_PATTERN_TEXT)
]


class CheckIn(StrictBody):
    """A quota question; with `"consume": true`, also the usage it asks for, recorded if
    the decision allows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"consume": {"const": True}}, "required": ["consume"]},
            "then": {
                "required": ["idempotency_key"],
                "properties": {"idempotency_key": {"type": "string"}},
            },
            "else": {"not": {"required": ["idempotency_key"]}},
        }
    )

    metric: str = Field(examples=["tokens"])
    amount: WholeNumber = Field(
        default=1, ge=0, le=MAX_EVENT_QUANTITY, description="How much more the org would use."
    )
    consume: StrictBool = Field(
        default=False,
        description="Record the amount as usage if the decision allows it, in the same "
        "atomic step. Needs `idempotency_key`, and a service key with `usage:write`.",
    )
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description="With `consume` (and only then): unique per org, shared with usage "
        "events. A retry with the same key is answered with the first decision and counts "
        "nothing more.",
    )

    @model_validator(mode="after")
    def _key_with_consume(self) -> CheckIn:
        if self.consume and self.idempotency_key is None:
            raise ValueError("idempotency_key is required when consume is true")
        if not self.consume and self.idempotency_key is not None:
            raise ValueError("idempotency_key is taken only with consume: true")
        return self


class UpgradeOut(BaseModel):
    plan_slug: str
    name: str
    included_quantity: int | None = Field(description="What it includes of the metric.")


class CheckOut(BaseModel):
    metric: str
    requested: int
    used: int
    held: int = Field(
        description="Units held by open reservations (work in progress): they count against "
        "the limit as if used."
    )
    limit: int | None
    remaining: int | None = Field(
        description="What may still be used now, any grace included, after what is held; "
        "null: no bound."
    )
    soft_limit_exceeded: bool = Field(description="Usage is already beyond the limit.")
    would_exceed: bool = Field(description="Usage plus the amount would be beyond the limit.")
    allowed: bool = Field(
        description="Whether the org may use the amount. A refusal is an answer, not an error."
    )
    reason: Reason = Field(
        description="Why, as a stable code. Allowed: `within_limit` (the request fits, or the "
        "metric is unlimited), `soft_limit_exceeded` (beyond a soft limit: overage), "
        "`in_grace` (beyond a hard limit, within its grace). Refused: `limit_reached` (beyond "
        "a hard limit and its grace), `past_due`, `trial_ended` or `canceled` (the org's "
        "billing status blocks every metered operation)."
    )
    message: str = Field(
        description="The decision in plain words, for the person using the product.",
        examples=["Acme has used 250,000 of the 1,000,000 tokens included in Starter this month."],
    )
    resets_at: datetime = Field(
        description="When the period ends and usage starts again from zero (UTC)."
    )
    grace_ends_at: datetime | None = Field(
        description="When the running time grace ends (or would, if this request starts it)."
    )
    status_blocks_at: datetime | None = Field(
        description="When the org's billing status (past due, or an ended trial) will start "
        "refusing every metered operation; null when it will not."
    )
    upgrade: UpgradeOut | None = Field(
        description="On `limit_reached`: the cheapest active plan whose limit allows the request."
    )
    enforcement: Enforcement = Field(description="The metric's policy mode (see `policy`).")
    policy: PolicyOut
    consumed: bool = Field(
        description="The amount was recorded as usage: an allowed consume (and its retries). "
        "Always false for a check."
    )

    @classmethod
    def of(cls, d: QuotaDecision, *, consumed: bool = False) -> CheckOut:
        upgrade = d.upgrade
        return cls(
            consumed=consumed,
            metric=d.metric,
            requested=d.requested,
            used=d.used,
            held=d.held,
            limit=d.limit,
            remaining=d.remaining,
            soft_limit_exceeded=d.soft_limit_exceeded,
            would_exceed=d.would_exceed,
            allowed=d.allowed,
            reason=d.reason,
            message=d.message,
            resets_at=d.resets_at,
            grace_ends_at=d.grace_ends_at,
            status_blocks_at=d.status_blocks_at,
            upgrade=None
            if upgrade is None
            else UpgradeOut(
                plan_slug=upgrade.slug,
                name=upgrade.name,
                included_quantity=upgrade.allowance(d.metric).included_quantity,
            ),
            enforcement=d.enforcement,
            policy=PolicyOut.of(d.policy),
        )


Included = Annotated[int, Field(ge=0, le=MAX_EVENT_QUANTITY), WHOLE]


class LimitIn(StrictBody):
    """The parts of the plan's terms the org replaces; a part left out follows the plan."""

    included_quantity: Included | None = Field(
        default=None,
        description="The org's limit; null: unlimited. Left out: the plan's.",
        examples=[3_000_000],
    )
    mode: Enforcement | None = Field(default=None, description="Left out or null: the plan's.")
    grace_percent: GracePercent | None = Field(default=None)
    grace_period_hours: GraceHours | None = Field(
        default=None, description="Null: no time limit. Left out: the plan's."
    )

    def override(self) -> LimitOverride:
        given = self.model_fields_set
        hours = self.grace_period_hours
        return LimitOverride(
            included_quantity=self.included_quantity,
            sets_included="included_quantity" in given,
            mode=self.mode,
            grace_percent=self.grace_percent,
            grace_period=None if hours is None else hours * HOUR,
            sets_grace_period="grace_period_hours" in given,
        )


class TermsOut(BaseModel):
    metric: str
    included_quantity: int | None = Field(description="The org's limit; null: unlimited.")
    policy: PolicyOut
    overridden: list[str] = Field(
        description="The parts the org's own override sets (`included_quantity`, `mode`, "
        "`grace_percent`, `grace_period_hours`); the others follow its plan."
    )

    @classmethod
    def of(cls, metric: str, terms: Terms, override: LimitOverride | None) -> TermsOut:
        parts = []
        if override is not None:
            parts = [
                name
                for name, is_set in (
                    ("included_quantity", override.sets_included),
                    ("mode", override.mode is not None),
                    ("grace_percent", override.grace_percent is not None),
                    ("grace_period_hours", override.sets_grace_period),
                )
                if is_set
            ]
        return cls(
            metric=metric,
            included_quantity=terms.limit,
            policy=PolicyOut.of(terms.policy),
            overridden=parts,
        )


class LimitsOut(BaseModel):
    org_id: str
    limits: list[TermsOut]

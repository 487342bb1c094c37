"""Webhook endpoints, deliveries and an org's channels as the API takes and answers them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from billing_kernel.events.rules import EventType
from billing_kernel.notifications.rules import (
    MAX_URL_LENGTH,
    TOLD_TO_PEOPLE,
    URL_PATTERN,
    Attempt,
    Channel,
    ChannelSettings,
    Delivery,
    Endpoint,
)
from billing_kernel.web.schemas import Slug, StrictBody, Text


class EndpointIn(StrictBody):
    url: str = Field(
        max_length=MAX_URL_LENGTH,
        pattern=URL_PATTERN,
        description="Where to POST events: an http or https URL.",
        examples=["https://example.com/billing-webhooks"],
    )
    event_types: list[EventType] = Field(
        default_factory=list, max_length=10, description="The types it wants; empty: all."
    )
    org_id: Slug | None = Field(
        default=None,
        description="Only this org's events. Left out: every org's (a key restricted to one "
        "org: that org's).",
    )
    description: Text | None = Field(default=None, max_length=200)


class EndpointOut(BaseModel):
    id: str = Field(examples=["we_3f9a0d5c2e4b4c1f9f0e6a7b"])
    url: str
    event_types: list[str] = Field(description="Empty: every type.")
    org_id: str | None = Field(description="Null: every org's events.")
    description: str | None
    created_at: datetime
    secret_rotated_until: datetime | None = Field(
        description="While set, the previous secret signs too (a second `v1,` signature)."
    )

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointOut:
        return cls(
            id=endpoint.endpoint_id,
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            org_id=endpoint.org_id,
            description=endpoint.description,
            created_at=endpoint.created_at,
            secret_rotated_until=endpoint.previous_until if endpoint.previous_secret else None,
        )


class EndpointWithSecretOut(EndpointOut):
    secret: str = Field(
        description="The signing secret (`whsec_...`, Standard Webhooks): shown only now.",
    )

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointWithSecretOut:
        return cls(**EndpointOut.of(endpoint).model_dump(), secret=endpoint.secret)


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None = Field(description="The receiver's answer; null: none came.")
    error: str | None
    outcome: str = Field(description="`delivered`, `retry`, `failed` or `skipped`.")

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            attempt=attempt.attempt,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=attempt.error,
            outcome=attempt.outcome,
        )


class DeliveryOut(BaseModel):
    id: str
    event_id: str = Field(description="Sent as `webhook-id`: the same on every attempt.")
    org_id: str = Field(
        description="The org its event is about (the operators' `invoice.close_failed` and "
        "`payment.refund_due` too, which go to deployment-wide endpoints only)."
    )
    channel: str = Field(description="`webhook`, `email` or `slack`.")
    endpoint_id: str | None = Field(description="For a webhook: its endpoint.")
    status: str = Field(description="`pending`, `delivered`, `failed` or `skipped`.")
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None = Field(description="While pending.")
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery, attempts: list[Attempt]) -> DeliveryOut:
        return cls(
            id=delivery.delivery_id,
            event_id=delivery.event_id,
            org_id=delivery.org_id,
            channel=delivery.channel.value,
            endpoint_id=delivery.target if delivery.channel is Channel.WEBHOOK else None,
            status=delivery.status.value,
            attempts=[AttemptOut.of(a) for a in attempts],
            next_attempt_at=delivery.next_attempt_at
            if delivery.status.value == "pending"
            else None,
            created_at=delivery.created_at,
            finished_at=delivery.finished_at,
        )


AlertType = Literal[
    "usage.threshold_crossed",
    "usage.threshold_resolved",
    "quota.blocked",
    "payment.failed",
    "payment.card_needed",
]
"""The org's event types that may be emailed (`events.rules.EventType`)."""


class ChannelsIn(StrictBody):
    slack_webhook_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        pattern=URL_PATTERN,
        description="A Slack incoming-webhook URL for the org's alerts; null: none.",
    )
    email: StrictBool = Field(
        default=True,
        description="Email the org's owners and admins (those with an address) when "
        "BILLING_SMTP_URL is set.",
    )
    email_events: list[AlertType] | None = Field(
        default=None,
        max_length=5,
        description="Which event types are emailed. Left out or null: "
        "`usage.threshold_crossed`, `quota.blocked`, `payment.failed` and "
        "`payment.card_needed` (a "
        "`usage.threshold_resolved`, back under after a change of limit, goes to webhooks "
        "only unless named here). Of the thresholds one write crosses together, only the "
        "highest is emailed.",
        examples=[["usage.threshold_crossed", "quota.blocked"]],
    )

    def email_types(self) -> frozenset[EventType]:
        if self.email_events is None:
            return TOLD_TO_PEOPLE
        return frozenset(EventType(text) for text in self.email_events)


class ChannelsOut(BaseModel):
    org_id: str
    slack_webhook_url: str | None
    email: bool
    email_events: list[str] = Field(description="The event types emailed.")

    @classmethod
    def of(cls, org_id: str, settings: ChannelSettings) -> ChannelsOut:
        return cls(
            org_id=org_id,
            slack_webhook_url=settings.slack_webhook_url,
            email=settings.email,
            email_events=sorted(settings.email_events),
        )

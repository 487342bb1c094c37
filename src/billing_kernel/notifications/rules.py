"""Delivering events: Standard Webhooks signatures, when a failed delivery is tried again,
and the words of an alert in an email and a Slack message. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import ipaddress
import random
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import cast

from billing_kernel.errors import InvalidInput
from billing_kernel.events.rules import Event, EventType

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL_LENGTH = 2000

JITTER = 0.1
"""Each wait is moved at random by up to this share of it, so that retries of many
deliveries that failed together do not all come back at once."""


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    SLACK = "slack"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Waiting for its next attempt (or in one now)."""
    DELIVERED = "delivered"
    FAILED = "failed"
    """Every attempt of the schedule failed, or the target is gone; a replay tries again."""
    SKIPPED = "skipped"
    """Nothing to send to: an email for an org whose owners and admins have no address."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    org_id: str | None
    url: str
    event_types: tuple[str, ...]
    description: str | None
    secret: str
    previous_secret: str | None
    previous_until: datetime | None
    created_at: datetime
    disabled_at: datetime | None

    def secrets_at(self, now: datetime) -> list[str]:
        """The secrets that sign a message sent at `now`: the current one, and the one it
        replaced while their overlap lasts."""
        if self.previous_secret and self.previous_until and now < self.previous_until:
            return [self.secret, self.previous_secret]
        return [self.secret]


TOLD_TO_PEOPLE = frozenset(
    {
        EventType.THRESHOLD_CROSSED,
        EventType.QUOTA_BLOCKED,
        EventType.PAYMENT_FAILED,
        EventType.PAYMENT_CARD_NEEDED,
    }
)
"""What an org's people hear of by Slack and email: a "back under" notice (a change of limit
resolved a crossing) is an event and goes to webhooks, but is no one's news."""


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """An org's channels besides webhooks."""

    slack_webhook_url: str | None = None
    email: bool = True
    email_events: frozenset[EventType] = TOLD_TO_PEOPLE
    """Which event types its owners and admins get by email."""


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    event_id: str
    org_id: str
    """The org its event is about (the operators' events too)."""
    channel: Channel
    target: str
    status: DeliveryStatus
    attempts: int
    attempt_base: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds for one attempt, with what it needs to send it."""

    delivery: Delivery
    payload: str
    """The event's JSON, byte for byte as stored: what is signed and sent."""
    event: Event


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: `whsec_` and base64 of 32 random
    bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,` signature of one message: base64 HMAC-SHA256, keyed by the secret's bytes,
    of `{id}.{timestamp}.{body}`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets_in_force: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> str:
    """`webhook-signature`: a signature by each secret in force, space separated (two while
    a rotated secret's overlap lasts, so the receiver may verify with either)."""
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets_in_force)


def webhook_headers(
    secrets_in_force: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: the id is the event's, the same on
    every retry; the timestamp is the attempt's."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_in_force, message_id, timestamp, body),
    }


URL_PATTERN = (
    r"^https?://([A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"  # user:password@, optional
    r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?"  # the host: a name or an IPv4 address
    r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"([/?#][^\s\ufeff\x00-\x1f\x7f-\x9f]*)?$"  # spelled so that ECMA regexes agree
)
"""An http or https URL with a host: what a webhook or a Slack URL may be (the API's
schema states the same pattern)."""


def validate_url(url: object, field: str) -> str:
    """An http(s) URL with a host (URL_PATTERN), at most MAX_URL_LENGTH characters, or
    InvalidInput naming `field`."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(
            f"{field} must be a URL of at most {MAX_URL_LENGTH} characters", field=field
        )
    if re.fullmatch(URL_PATTERN, url) is None:
        raise InvalidInput(f"{field} must be an http or https URL with a host", field=field)
    return url


ADDRESS_CLASSES = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("reserved", "is_reserved"),
    ("private", "is_private"),
)
"""The kinds of address a webhook or Slack message is never sent to (unless the operator
allows private ones), in the order they are named."""


def address_refusal(address: str) -> str | None:
    """Why an outbound request may not go to this IP address (the kind of address it is:
    loopback, private, link-local, which includes cloud metadata, ...), or None for a public
    one. An IPv4 address written as IPv6 (::ffff:a.b.c.d) is judged as IPv4."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, test in ADDRESS_CLASSES:
        if getattr(ip, test):
            return kind
    if not ip.is_global:  # e.g. shared address space (100.64.0.0/10)
        return "non-public"
    return None


def next_attempt(
    attempts: int,
    now: datetime,
    rand: random.Random | None = None,
    *,
    schedule: Sequence[float],
) -> datetime | None:
    """When to try again after `attempts` failed attempts, by `schedule` (the seconds before
    each retry: BILLING_DELIVERY_RETRY_SECONDS); None once the schedule is spent and the
    delivery has failed."""
    if attempts < 1 or attempts > len(schedule):
        return None
    wait = schedule[attempts - 1]
    spread = (rand or random).uniform(-JITTER, JITTER) * wait
    return now + timedelta(seconds=wait + spread)


def told_to_people(
    events: Sequence[Event], types: Collection[EventType] = TOLD_TO_PEOPLE
) -> set[str]:
    """The ids of the events of `events` that an org's people get (Slack; email, with the
    `types` the org chose): an org's events of those types, and of the crossings one write
    made together (one org, metric, month and usage: 80 % and 100 % at once) the highest
    alone."""
    told: set[str] = set()
    highest: dict[tuple[object, ...], tuple[int, str]] = {}
    for event in events:
        if event.for_operators or event.event_type not in types:
            continue
        if event.event_type is not EventType.THRESHOLD_CROSSED:
            told.add(event.event_id)
            continue
        data = event.data
        threshold = cast("dict[str, object]", data["threshold"])
        write = (event.org_id, data["metric"], str(data["period"]), data["used"])
        level = (int(str(threshold["quantity"])), event.event_id)
        highest[write] = max(highest.get(write, level), level)
    return told | {event_id for _, event_id in highest.values()}


def wants(event_types: Sequence[str], event: EventType) -> bool:
    """Whether an endpoint that asked for `event_types` (none: all) gets `event`."""
    return not event_types or str(event) in event_types


@dataclass(frozen=True, slots=True)
class AlertWords:
    """An alert in words, for people."""

    subject: str
    headline: str
    facts: tuple[tuple[str, str], ...]
    link: str


def alert_words(
    event: Event, org_name: str, metric_name: str, unit: str, billing_url: str
) -> AlertWords:
    """What an email or a Slack message says of an event."""
    data = event.data
    used = int(str(data["used"]))
    limit = None if data.get("limit") is None else int(str(data["limit"]))
    period = data["period"]
    assert isinstance(period, dict)
    figures = f"{used:,}{'' if limit is None else f' of {limit:,}'} {unit}"
    threshold = data.get("threshold")
    what, percent = "", None
    if isinstance(threshold, dict):
        percent, quantity = threshold["percent"], threshold["quantity"]
        what = f"{percent} %" if percent is not None else f"{int(str(quantity)):,} {unit}"
    if event.event_type is EventType.QUOTA_BLOCKED:
        subject = f"{org_name}: {metric_name} blocked at the hard limit"
        headline = f"{org_name} is blocked: {metric_name} reached its hard limit ({figures})."
    elif event.event_type is EventType.THRESHOLD_RESOLVED:
        subject = f"{org_name}: {metric_name} back under {what}"
        headline = (
            f"{org_name} is back under {what} of {metric_name} after a change of limit ({figures})."
        )
    elif percent is not None:
        subject = f"{org_name}: {metric_name} reached {what}"
        headline = f"{org_name} has used {what} of its {metric_name}: {figures} this month."
    else:
        subject = f"{org_name}: {metric_name} reached {what}"
        headline = f"{org_name} has reached {what} of {metric_name} this month ({figures})."
    month = date.fromisoformat(str(period["start"]))
    facts = (
        ("Metric", metric_name),
        ("Used", f"{used:,} {unit}"),
        ("Limit", "unlimited" if limit is None else f"{limit:,} {unit}"),
        ("Period", f"{month:%B %Y}"),
    )
    return AlertWords(subject=subject, headline=headline, facts=facts, link=billing_url)


def payment_words(event: Event, org_name: str, billing_url: str) -> AlertWords:
    """What an email or a Slack message says of a failed payment (`payment.failed`), or
    of an invoice waiting for a card (`payment.card_needed`)."""
    data = event.data
    amount = f"{data['currency']} {data['amount']}"
    if event.event_type is EventType.PAYMENT_CARD_NEEDED:
        return AlertWords(
            subject=f"{org_name}: add a card to pay invoice {data['invoice_number']}",
            headline=(
                f"{org_name}'s invoice {data['invoice_number']} for {amount} is ready to be "
                "paid, and there is no card on file: pay it now on the billing page, or add "
                "a card there and it is charged to it."
            ),
            facts=(("Invoice", str(data["invoice_number"])), ("Amount", amount)),
            link=billing_url,
        )
    why = str(data.get("failure") or "declined").rstrip(".")
    subject = f"{org_name}: payment of {amount} failed"
    headline = (
        f"The payment of {amount} for {org_name}'s invoice {data['invoice_number']} failed: "
        f"{why}. Pay it now on the billing page, or add or update the card there."
    )
    facts = (
        ("Invoice", str(data["invoice_number"])),
        ("Amount", amount),
        ("Reason", why),
        ("Attempt", str(data["attempt"])),
    )
    return AlertWords(subject=subject, headline=headline, facts=facts, link=billing_url)


def email_text(words: AlertWords) -> str:
    lines = [words.headline, ""]
    lines += [f"{name}: {value}" for name, value in words.facts]
    lines += ["", f"See usage and limits: {words.link}", ""]
    return "\n".join(lines)


def email_html(words: AlertWords) -> str:
    rows = "".join(
        f'<tr><th align="left">{html.escape(name)}</th><td>{html.escape(value)}</td></tr>'
        for name, value in words.facts
    )
    return (
        f"<p>{html.escape(words.headline)}</p><table>{rows}</table>"
        f'<p><a href="{html.escape(words.link)}">See usage and limits</a></p>'
    )


def slack_message(words: AlertWords) -> dict[str, object]:
    """An incoming-webhook message in Block Kit, with the headline as its plain-text
    fallback."""
    return {
        "text": words.headline,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": words.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(words.headline)}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"}
                    for name, value in words.facts
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "See usage and limits"},
                        "url": words.link,
                    }
                ],
            },
        ],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

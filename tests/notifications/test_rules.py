"""The pure rules of delivery: signatures, the retry schedule, and an alert's words."""

import base64
import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing_kernel.alerts.rules import AlertFacts, alert_event
from billing_kernel.config import RETRY_SCHEDULE
from billing_kernel.errors import InvalidInput
from billing_kernel.events.rules import Event, EventType, event_id
from billing_kernel.notifications.rules import (
    JITTER,
    SECRET_PREFIX,
    ChannelSettings,
    Endpoint,
    address_refusal,
    alert_words,
    email_html,
    email_text,
    new_secret,
    next_attempt,
    payment_words,
    sign,
    signature_header,
    slack_message,
    told_to_people,
    validate_url,
    wants,
    webhook_headers,
)
from billing_kernel.payments.rules import (
    InvoiceEffect,
    Outcome,
    card_needed_event,
    payment_event,
)

# The example of the Standard Webhooks specification's reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_a_signature_is_the_specifications() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_any_change_of_id_time_body_or_secret_changes_the_signature() -> None:
    others = {
        sign(SPEC_SECRET, SPEC_ID + "x", SPEC_TIMESTAMP, SPEC_BODY),
        sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY),
        sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY + b" "),
        sign(new_secret(), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
    }
    assert SPEC_SIGNATURE not in others
    assert len(others) == 4


def test_the_headers_carry_the_id_the_time_and_a_signature_per_secret() -> None:
    second = new_secret()
    headers = webhook_headers([SPEC_SECRET, second], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers == {
        "content-type": "application/json",
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": f"{SPEC_SIGNATURE} {sign(second, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)}",
    }
    assert signature_header([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_new_secret_is_32_random_bytes_in_base64_after_its_prefix() -> None:
    secret = new_secret()
    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX))) == 32
    assert secret != new_secret()


def endpoint(previous: str | None, until: datetime | None) -> Endpoint:
    return Endpoint(
        "we_1", None, "https://x.test", (), None, "whsec_new", previous, until, NOW, None
    )


def test_a_rotated_secret_signs_until_its_overlap_ends() -> None:
    rotated = endpoint("whsec_old", NOW + timedelta(hours=1))
    assert rotated.secrets_at(NOW) == ["whsec_new", "whsec_old"]
    assert rotated.secrets_at(NOW + timedelta(hours=1)) == ["whsec_new"]
    assert endpoint(None, None).secrets_at(NOW) == ["whsec_new"]
    assert endpoint("whsec_old", None).secrets_at(NOW) == ["whsec_new"]


def test_the_schedule_waits_longer_each_time_and_ends_after_about_a_day() -> None:
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE)
    assert 24 * 3600 <= sum(RETRY_SCHEDULE) <= 30 * 3600
    assert next_attempt(0, NOW, schedule=RETRY_SCHEDULE) is None
    assert next_attempt(len(RETRY_SCHEDULE) + 1, NOW, schedule=RETRY_SCHEDULE) is None
    last = next_attempt(len(RETRY_SCHEDULE), NOW, schedule=RETRY_SCHEDULE)
    assert last is not None


@pytest.mark.parametrize("attempts", range(1, len(RETRY_SCHEDULE) + 1))
def test_each_wait_is_the_schedules_moved_by_at_most_the_jitter(attempts: int) -> None:
    wait = RETRY_SCHEDULE[attempts - 1]
    seen = set()
    for seed in range(50):
        at = next_attempt(attempts, NOW, random.Random(seed), schedule=RETRY_SCHEDULE)
        assert at is not None
        moved = (at - NOW).total_seconds() - wait
        assert abs(moved) <= JITTER * wait + 1e-6
        seen.add(round(moved, 3))
    assert len(seen) > 10  # spread, not one fixed moment


def test_a_schedule_of_ones_own_is_followed() -> None:
    assert next_attempt(2, NOW, random.Random(1), schedule=(1, 100)) is not None
    assert next_attempt(3, NOW, random.Random(1), schedule=(1, 100)) is None
    at = next_attempt(2, NOW, random.Random(1), schedule=(1, 100))
    assert at is not None
    assert 90 <= (at - NOW).total_seconds() <= 110


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://127.0.0.1:9000/x?y=1",
        "https://h.test",
        "https://example.com/" + "a" * 1980,  # 2,000 characters: the most
        "https://example.com:65535/",
    ],
)
def test_http_and_https_urls_with_a_host_are_taken(url: str) -> None:
    assert validate_url(url, "url") == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "javascript:alert(1)",
        "https://",
        "example.com",
        "https://exa mple.com",
        "https://example.com/\x00",
        "https://example.com/" + "a" * 2000,
        "https://example.com:65536/",
        "https://example.com:99999/",
        "http://[2001:db8::zz]/",
        "http://[::1/",
        "http://::1/",
        None,
        42,
    ],
)
def test_anything_else_is_refused_naming_the_field(url: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_url(url, "slack_webhook_url")
    assert refused.value.details == {"field": "slack_webhook_url"}
    assert "slack_webhook_url must be" in refused.value.message


def test_an_endpoint_wants_the_types_it_named_or_all() -> None:
    assert wants((), EventType.QUOTA_BLOCKED)
    assert wants(("quota.blocked",), EventType.QUOTA_BLOCKED)
    assert not wants(("quota.blocked",), EventType.THRESHOLD_CROSSED)


def test_channel_settings_default_to_email_and_no_slack() -> None:
    assert ChannelSettings() == ChannelSettings(None, True)


def event(event_type: EventType, key: str, used: int, limit: int | None) -> Event:
    facts = AlertFacts("acme", "tokens", date(2026, 11, 1), key, used, limit, 1)
    return alert_event(event_type, facts, NOW)


LINK = "https://billing.example.com/app/billing?org=acme"


def test_a_crossing_in_words() -> None:
    words = alert_words(
        event(EventType.THRESHOLD_CROSSED, "80%", 812_345, 1_000_000),
        "Acme",
        "LLM tokens",
        "tokens",
        LINK,
    )
    assert words.subject == "Acme: LLM tokens reached 80 %"
    assert words.headline == (
        "Acme has used 80 % of its LLM tokens: 812,345 of 1,000,000 tokens this month."
    )
    assert words.facts == (
        ("Metric", "LLM tokens"),
        ("Used", "812,345 tokens"),
        ("Limit", "1,000,000 tokens"),
        ("Period", "November 2026"),
    )
    assert words.link == LINK


def test_an_absolute_threshold_a_resolution_and_a_block_in_words() -> None:
    absolute = alert_words(
        event(EventType.THRESHOLD_CROSSED, "5000", 5000, None), "Acme", "Runs", "runs", LINK
    )
    assert absolute.subject == "Acme: Runs reached 5,000 runs"
    assert absolute.headline == "Acme has reached 5,000 runs of Runs this month (5,000 runs)."
    assert ("Limit", "unlimited") in absolute.facts
    resolved = alert_words(
        event(EventType.THRESHOLD_RESOLVED, "100%", 500, 2000), "Acme", "Runs", "runs", LINK
    )
    assert resolved.subject == "Acme: Runs back under 100 %"
    assert resolved.headline == (
        "Acme is back under 100 % of Runs after a change of limit (500 of 2,000 runs)."
    )
    blocked = alert_words(
        event(EventType.QUOTA_BLOCKED, "blocked", 600, 500), "Acme", "Runs", "runs", LINK
    )
    assert blocked.subject == "Acme: Runs blocked at the hard limit"
    assert blocked.headline == "Acme is blocked: Runs reached its hard limit (600 of 500 runs)."


def test_an_email_says_it_in_text_and_in_escaped_html() -> None:
    words = alert_words(
        event(EventType.THRESHOLD_CROSSED, "80%", 800, 1000), "A<b>&Co", "Runs", "runs", LINK
    )
    text = email_text(words)
    assert text.splitlines() == [
        words.headline,
        "",
        "Metric: Runs",
        "Used: 800 runs",
        "Limit: 1,000 runs",
        "Period: November 2026",
        "",
        f"See usage and limits: {LINK}",
    ]
    html = email_html(words)
    assert "A&lt;b&gt;&amp;Co" in html
    assert "<b>" not in html.replace("A&lt;b&gt;", "")
    assert html == (
        "<p>A&lt;b&gt;&amp;Co has used 80 % of its Runs: 800 of 1,000 runs this month.</p>"
        '<table><tr><th align="left">Metric</th><td>Runs</td></tr>'
        '<tr><th align="left">Used</th><td>800 runs</td></tr>'
        '<tr><th align="left">Limit</th><td>1,000 runs</td></tr>'
        '<tr><th align="left">Period</th><td>November 2026</td></tr>'
        f'</table><p><a href="{LINK}">See usage and limits</a></p>'
    )


def test_a_slack_message_is_block_kit_with_a_plain_fallback() -> None:
    words = alert_words(
        event(EventType.THRESHOLD_CROSSED, "80%", 800, 1000), "A<b>&Co", "Runs", "runs", LINK
    )
    assert slack_message(words) == {
        "text": words.headline,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": words.subject}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "A&lt;b&gt;&amp;Co has used 80 % of its Runs: 800 of 1,000 runs "
                    "this month.",
                },
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Metric*\nRuns"},
                    {"type": "mrkdwn", "text": "*Used*\n800 runs"},
                    {"type": "mrkdwn", "text": "*Limit*\n1,000 runs"},
                    {"type": "mrkdwn", "text": "*Period*\nNovember 2026"},
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "See usage and limits"},
                        "url": LINK,
                    }
                ],
            },
        ],
    }
    long = alert_words(
        event(EventType.THRESHOLD_CROSSED, "80%", 800, 1000), "A" * 200, "Runs", "runs", LINK
    )
    header = slack_message(long)["blocks"][0]  # type: ignore[index]
    assert header["text"]["text"] == long.subject[:150]  # Slack's most for a header
    assert len(long.subject) > 150


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("fc00::1", "private"),
        ("fdff::1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("100.64.0.1", "non-public"),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("172.32.0.1", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_an_address_is_refused_for_outbound_requests_by_its_kind(
    address: str, kind: str | None
) -> None:
    assert address_refusal(address) == kind


def test_people_hear_of_the_highest_crossing_of_a_write_and_never_of_a_back_under() -> None:
    crossed = EventType.THRESHOLD_CROSSED
    eighty, hundred = event(crossed, "80%", 1_000, 1_000), event(crossed, "100%", 1_000, 1_000)
    absolute = event(crossed, "900", 1_000, 1_000)  # a third threshold, below 100 %
    later = event(crossed, "80%", 850, 1_000)  # another write: its own message
    later = replace(later, event_id="evt_later")
    blocked = event(EventType.QUOTA_BLOCKED, "blocked", 1_000, 1_000)
    resolved = event(EventType.THRESHOLD_RESOLVED, "100%", 1_000, 2_000)
    operators = replace(eighty, event_id="evt_ops", event_type=EventType.INVOICE_CLOSE_FAILED)
    events = [eighty, absolute, hundred, later, blocked, resolved, operators]
    assert told_to_people(events) == {hundred.event_id, later.event_id, blocked.event_id}
    assert told_to_people(list(reversed(events))) == told_to_people(events)
    assert told_to_people([eighty]) == {eighty.event_id}
    assert told_to_people([resolved, operators]) == set()
    chosen = {EventType.THRESHOLD_RESOLVED, crossed}  # an org that asks for back-unders
    assert told_to_people(events, chosen) == {hundred.event_id, later.event_id, resolved.event_id}
    assert told_to_people(events, set()) == set()
    assert told_to_people([operators], set(EventType)) == set()  # whatever an org asks for
    assert told_to_people([replace(operators, event_type=blocked.event_type)]) != set()
    other_metric = replace(eighty, event_id="evt_m", data={**eighty.data, "metric": "runs"})
    assert told_to_people([hundred, other_metric]) == {hundred.event_id, "evt_m"}
    december = {"start": "2026-12-01", "end": "2027-01-01"}
    other_month = replace(eighty, event_id="evt_d", data={**eighty.data, "period": december})
    assert told_to_people([hundred, other_month]) == {hundred.event_id, "evt_d"}


def test_a_failed_payment_in_words_and_told_to_people() -> None:
    outcome = Outcome(
        payment_id="pay_1",
        invoice_id="inv_1",
        invoice_number="INV-000007",
        org_id="acme",
        attempt=2,
        amount=Decimal("49.75"),
        currency="USD",
        payment_intent_id="pi_1",
        failure="Your card was declined.",
        failure_code="card_declined",
    )
    failed = payment_event(InvoiceEffect.PAST_DUE, outcome, NOW)
    assert failed is not None
    words = payment_words(failed, "Acme", LINK)
    assert words.subject == "Acme: payment of USD 49.75 failed"
    assert words.headline == (
        "The payment of USD 49.75 for Acme's invoice INV-000007 failed: Your card was "
        "declined. Pay it now on the billing page, or add or update the card there."
    )
    assert words.facts == (
        ("Invoice", "INV-000007"),
        ("Amount", "USD 49.75"),
        ("Reason", "Your card was declined"),
        ("Attempt", "2"),
    )
    assert words.link == LINK
    silent = replace(outcome, failure=None)  # Stripe gave no words: still a sentence
    unsaid = payment_event(InvoiceEffect.PAST_DUE, silent, NOW)
    assert unsaid is not None
    assert payment_words(unsaid, "Acme", LINK).facts[2] == ("Reason", "declined")
    paid = payment_event(InvoiceEffect.MARK_PAID, outcome, NOW)
    refund = payment_event(InvoiceEffect.REFUND_DUE, outcome, NOW)
    assert paid is not None
    assert refund is not None
    assert told_to_people([failed, paid, refund]) == {failed.event_id}  # people: failures
    assert payment_event(InvoiceEffect.NONE, outcome, NOW) is None


def test_an_invoice_waiting_for_a_card_in_words() -> None:
    needed = card_needed_event("acme", "inv_1", "INV-000007", Decimal("49.75"), "USD", NOW)
    assert (
        needed.event_id
        == card_needed_event(
            "acme", "inv_1", "INV-000007", Decimal("49.75"), "USD", NOW.replace(hour=1)
        ).event_id
    )  # once per invoice
    assert (needed.org_id, needed.data) == (
        "acme",
        {
            "org_id": "acme",
            "invoice_id": "inv_1",
            "invoice_number": "INV-000007",
            "amount": "49.75",
            "currency": "USD",
        },
    )
    assert needed.event_id == event_id(EventType.PAYMENT_CARD_NEEDED, "inv_1")
    assert (needed.event_type, needed.created_at) == (EventType.PAYMENT_CARD_NEEDED, NOW)
    words = payment_words(needed, "Acme", LINK)
    assert words.link == LINK
    assert words.subject == "Acme: add a card to pay invoice INV-000007"
    assert words.headline == (
        "Acme's invoice INV-000007 for USD 49.75 is ready to be paid, and there is no card on "
        "file: pay it now on the billing page, or add a card there and it is charged to it."
    )
    assert words.facts == (("Invoice", "INV-000007"), ("Amount", "USD 49.75"))
    assert told_to_people([needed]) == {needed.event_id}

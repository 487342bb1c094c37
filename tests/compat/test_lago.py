"""Lago's own Python client against the kernel: only the base URL and the key change."""

from __future__ import annotations

import time
import uuid

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.event import BatchEvent, Event

from tests.compat.conftest import Live

pytestmark = pytest.mark.long


def lago(live: Live, key: str | None = None) -> Client:
    return Client(api_key=key or live.key, api_url=f"{live.url}/compat/lago/")


def event(org: str, value: object, **fields: object) -> Event:
    return Event(
        transaction_id=str(fields.pop("transaction_id", uuid.uuid4())),
        external_subscription_id=org,
        code=str(fields.pop("code", "tokens")),
        timestamp=fields.pop("timestamp", None),
        properties={"value": value, "model": "gpt-5"},
    )


def test_single_events_count_once_per_transaction_id(live: Live) -> None:
    org = live.new_org()
    sent = event(org, 120, transaction_id="tx-1", timestamp=int(time.time()) - 60)
    answer = lago(live).events.create(sent)
    assert answer is not None
    assert (answer.transaction_id, answer.code, answer.external_subscription_id) == (
        "tx-1",
        "tokens",
        org,
    )
    assert answer.properties == {"value": 120, "model": "gpt-5"}
    again = lago(live).events.create(sent)  # a retry: answered alike, counted once
    assert again is not None
    assert again.timestamp == answer.timestamp
    assert live.used(org) == 120


def test_a_batch_is_recorded_whole_with_its_properties(live: Live) -> None:
    org = live.new_org()
    batch = BatchEvent(events=[event(org, n) for n in (1, 20, 300)] + [event(org, "4000")])
    lago(live).events.batch_create(batch)
    lago(live).events.batch_create(batch)  # resent whole: nothing counts twice
    assert live.used(org) == 4321
    assert [e["properties"]["model"] for e in live.events(org)] == ["gpt-5"] * 4
    assert live.groups(org, "model") == {"gpt-5": 4321}


def test_a_malformed_value_raises_the_clients_error_and_writes_nothing(live: Live) -> None:
    org = live.new_org()
    with pytest.raises(LagoApiError) as single:
        lago(live).events.create(event(org, "twelve"))
    assert single.value.status_code == 422
    assert single.value.response["error_details"] == {
        "properties.value": [
            "metric 'tokens': properties.value must be a whole number, got 'twelve' (required)"
        ]
    }
    late = event(org, 7, timestamp="yesterday")
    batch = BatchEvent(events=[event(org, 5), event(org, 1.5), late])
    with pytest.raises(LagoApiError) as whole:
        lago(live).events.batch_create(batch)
    assert whole.value.status_code == 422
    assert set(whole.value.response["error_details"]) == {"1", "2"}
    assert "timestamp" in whole.value.response["error_details"]["2"]
    assert live.used(org) == 0
    assert live.events(org) == []


def test_an_event_no_metric_counts_is_kept_and_counted_by_nothing(live: Live) -> None:
    """Lago's description: an event whose code no billable metric has is taken and not
    billed. So here: kept, counted toward nothing, 200."""
    org = live.new_org()
    sent = event(org, 1, code="no_such_metric", transaction_id="tx-kept")
    answer = lago(live).events.create(sent)
    assert answer is not None
    assert answer.code == "no_such_metric"
    assert lago(live).events.create(sent) is not None  # the same again: a duplicate
    with pytest.raises(LagoApiError) as changed:  # kept: its transaction_id is taken
        lago(live).events.create(event(org, 2, code="no_such_metric", transaction_id="tx-kept"))
    assert changed.value.response["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert live.used(org) == 0
    [kept] = live.events(org)  # read back as counted toward nothing
    assert (kept["idempotency_key"], kept["metric"], kept["quantity"], kept["event"]) == (
        "tx-kept",
        None,
        0,
        "no_such_metric",
    )


def test_a_reused_transaction_id_with_another_value_is_refused_as_lago_does(live: Live) -> None:
    org = live.new_org()
    lago(live).events.create(event(org, 10, transaction_id="tx-a"))
    with pytest.raises(LagoApiError) as refused:
        lago(live).events.create(event(org, 11, transaction_id="tx-a"))
    assert refused.value.status_code == 422  # Lago's documented answer, not a 409
    assert refused.value.response["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert live.used(org) == 10


def test_an_alias_counts_for_its_org(live: Live) -> None:
    alias = f"sub_{uuid.uuid4().hex[:10]}"
    org = live.new_org(alias)
    lago(live).events.create(event(alias, 42))
    assert live.used(org) == 42
    usage = lago(live).customers.current_usage(alias, external_subscription_id=alias)
    [tokens] = [c for c in usage.charges_usage if c.billable_metric.code == "tokens"]
    assert (tokens.units, tokens.events_count) == ("42", 1)


def test_current_usage_reports_the_kernels_figures(live: Live) -> None:
    # Paying on Starter: 1,000,000 tokens included, then 0.02 per 1,000 (a trial bills nothing).
    org = live.new_org(plan="starter", paying=True)
    lago(live).events.batch_create(BatchEvent(events=[event(org, 1_400_000), event(org, 100_000)]))
    lago(live).events.create(event(org, 3, code="playbook_runs"))
    usage = lago(live).customers.current_usage(org, external_subscription_id=org)
    summary = live.summary(org)
    by_code = {c.billable_metric.code: c for c in usage.charges_usage}
    for line in summary["usage"]:
        assert by_code[line["metric"]].units == str(line["used"])
    assert (by_code["tokens"].events_count, by_code["playbook_runs"].events_count) == (2, 1)
    aggregations = {code: c.billable_metric.aggregation_type for code, c in by_code.items()}
    assert aggregations == {"tokens": "sum_agg", "playbook_runs": "sum_agg", "seats": "max_agg"}
    assert usage.currency == summary["plan"]["currency"]
    overage_cents = round(float(summary["estimated_overage"]) * 100)
    assert usage.amount_cents == overage_cents == 1_000  # 500,000 over: 500 x 0.02
    assert by_code["tokens"].amount_cents == 1_000
    assert by_code["playbook_runs"].amount_cents == 0
    assert usage.from_datetime.startswith(summary["period"]["start"][:10])
    for charge in usage.charges_usage:  # UUIDs, as Lago's description has them, and stable
        assert uuid.UUID(charge.charge.lago_id)
        assert uuid.UUID(charge.billable_metric.lago_id)
        assert charge.presentation_breakdowns is not None
        assert charge.presentation_breakdowns.__root__ == []
    again = lago(live).customers.current_usage(org, external_subscription_id=org)
    assert [c.charge.lago_id for c in again.charges_usage] == [
        c.charge.lago_id for c in usage.charges_usage
    ]
    assert by_code["tokens"].charge.charge_model == "standard"


def test_a_tiered_price_is_shown_by_lagos_name_for_its_charge_model(live: Live) -> None:
    # Enterprise's tokens: 20,000,000 included, then 0.01 per 1,000 for the next 80,000,000.
    org = live.new_org(plan="enterprise", paying=True)
    lago(live).events.create(event(org, 20_500_000))
    usage = lago(live).customers.current_usage(org, external_subscription_id=org)
    [tokens] = [c for c in usage.charges_usage if c.billable_metric.code == "tokens"]
    assert (tokens.charge.charge_model, tokens.amount_cents) == ("graduated", 500)


def test_a_wrong_key_and_an_unknown_customer_raise(live: Live) -> None:
    with pytest.raises(LagoApiError) as unauthorized:
        lago(live, "bk_not-a-key").events.create(event(live.new_org(), 1))
    assert unauthorized.value.status_code == 401
    with pytest.raises(LagoApiError) as missing:
        lago(live).customers.current_usage("no-such-org", external_subscription_id="x")
    assert missing.value.status_code == 404
    assert missing.value.response["code"] == "customer_not_found"


def test_a_metric_priced_per_model_shows_its_models_as_the_charges_filters(live: Live) -> None:
    # Growth prices gpt-5 and gpt-5-mini tokens apart; its 5,000,000 included cover gpt-5's,
    # then gpt-5-mini's: 100,000 of those over at 0.005 per 1,000, and the other model's
    # 200,000 at 0.015.
    org = live.new_org(plan="growth", paying=True)
    sent = [
        (1_000_000, {"model": "gpt-5"}),
        (4_000_000, {"model": "gpt-5-mini"}),
        (100_000, {"model": "gpt-5-mini"}),
        (200_000, {"model": "llama"}),
    ]
    events = [
        Event(
            transaction_id=str(uuid.uuid4()),
            external_subscription_id=org,
            code="tokens",
            properties={"value": value, **model},
        )
        for value, model in sent
    ]
    lago(live).events.batch_create(BatchEvent(events=events))
    usage = lago(live).customers.current_usage(org, external_subscription_id=org)
    [tokens] = [c for c in usage.charges_usage if c.billable_metric.code == "tokens"]
    assert (tokens.units, tokens.events_count, tokens.amount_cents) == ("5300000", 4, 350)
    assert [(f.values, f.units, f.events_count, f.amount_cents) for f in tokens.filters] == [
        ({"model": ["gpt-5"]}, "1000000", 1, 0),
        ({"model": ["gpt-5-mini"]}, "4100000", 2, 50),
        (None, "200000", 1, 300),
    ]
    [runs] = [c for c in usage.charges_usage if c.billable_metric.code == "playbook_runs"]
    assert runs.filters == []

"""Delivering alerts for real, on both databases: a real HTTP receiver that verifies the
Standard Webhooks signature with an independent implementation (`standardwebhooks`), a real
SMTP server (aiosmtpd), a Slack-shaped receiver; retries, failures, rotation and replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta

import pytest
from standardwebhooks import Webhook

from billing_kernel.background import delivery_worker, upkeep
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.errors import DeliveryNotFound
from billing_kernel.events.rules import EventType
from billing_kernel.invoices.rules import close_failed_event
from billing_kernel.kernel import Kernel, utc_now
from billing_kernel.members.rules import MemberRole
from billing_kernel.notifications.rules import DeliveryStatus
from billing_kernel.notifications.worker import DeliveryWorker
from tests.conftest import new_id, save_plan
from tests.live import start_worker
from tests.receivers import http_receiver, smtp_server

pytestmark = [pytest.mark.anyio, pytest.mark.long]

FAST = {"delivery_retry_seconds": (0.05, 0.05, 0.05), "delivery_timeout_seconds": 2.0}


def kernel_for(database: Database, **settings: object) -> Kernel:
    return Kernel(database, Settings(database_url=str(database.url), **settings))


async def org_at(kernel: Kernel, database: Database, used: int) -> str:
    """A new org on a plan of its own (500 tokens included), with `used` tokens used."""
    plan = await save_plan(database, utc_now())
    org_id = new_id()
    await kernel.orgs.create(org_id, name="Acme", plan_slug=plan.slug)
    if used:
        await kernel.usage.record(org_id, "tokens", used, idempotency_key=new_id("e"))
    return org_id


async def until(done: Callable[[], Awaitable[bool]], worker: DeliveryWorker) -> None:
    """Worker rounds until `done`, for at most ten seconds."""
    deadline = time.monotonic() + 10
    while not await done():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        if not await worker.run_once():
            await asyncio.sleep(0.02)


def settled(kernel: Kernel, org_id: str) -> Callable[[], Awaitable[bool]]:
    """Whether the org's one delivery is no longer pending."""

    async def done() -> bool:
        found = await kernel.notifications.deliveries(org_id=org_id)
        return bool(found) and found[0][0].status is not DeliveryStatus.PENDING

    return done


async def test_a_crossing_reaches_a_webhook_signed_and_verified_independently(
    database: Database,
) -> None:
    kernel = kernel_for(database, **FAST)
    with http_receiver() as receiver:
        org_id = await org_at(kernel, database, 0)
        endpoint = await kernel.notifications.add_endpoint(receiver.url, org_id=org_id)
        assert endpoint.secret.startswith("whsec_")
        await kernel.usage.record(org_id, "tokens", 450, idempotency_key="crossing")
        worker = delivery_worker(kernel)

        async def delivered() -> bool:
            return len(receiver.received) == 1

        await until(delivered, worker)
        [got] = receiver.received
        payload = Webhook(endpoint.secret).verify(got.body, got.headers)
        [(_, event)] = await kernel.events.events(org_id=org_id)
        assert payload == event.payload()
        assert got.headers["webhook-id"] == event.event_id
        assert got.headers["content-type"] == "application/json"
        assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
        [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
        assert delivery.status is DeliveryStatus.DELIVERED
        assert [(a.attempt, a.status_code, a.outcome) for a in attempts] == [(1, 200, "delivered")]
        assert not await worker.run_once()  # nothing more to do
        assert len(receiver.received) == 1


async def test_three_500s_then_a_200_is_delivered_on_the_fourth_attempt_with_one_id(
    database: Database,
) -> None:
    kernel = kernel_for(database, **FAST)
    with http_receiver(500, 500, 500, 200) as receiver:
        org_id = await org_at(kernel, database, 0)
        endpoint = await kernel.notifications.add_endpoint(receiver.url, org_id=org_id)
        await kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")
        worker = delivery_worker(kernel)

        await until(settled(kernel, org_id), worker)
        [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
        assert delivery.status is DeliveryStatus.DELIVERED
        assert [a.status_code for a in attempts] == [500, 500, 500, 200]
        assert [a.outcome for a in attempts] == ["retry", "retry", "retry", "delivered"]
        assert attempts[0].error is not None
        assert attempts[0].error.startswith("HTTP 500")
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
        for got in receiver.received:
            Webhook(endpoint.secret).verify(got.body, got.headers)


async def test_a_receiver_that_never_answers_ends_failed_with_every_attempt_logged(
    database: Database,
) -> None:
    kernel = kernel_for(database, delivery_retry_seconds=(0.05, 0.05), delivery_timeout_seconds=0.3)
    with http_receiver("hang", "hang", "hang") as receiver:
        org_id = await org_at(kernel, database, 0)
        await kernel.notifications.add_endpoint(receiver.url, org_id=org_id)
        await kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")
        worker = delivery_worker(kernel)

        await until(settled(kernel, org_id), worker)
        failed = await kernel.notifications.deliveries(org_id=org_id, status=DeliveryStatus.FAILED)
        [(delivery, attempts)] = failed
        assert [(a.outcome, a.status_code, a.error) for a in attempts] == [
            ("retry", None, "no answer in time"),
            ("retry", None, "no answer in time"),
            ("failed", None, "no answer in time"),
        ]
        assert all(a.duration_ms >= 250 for a in attempts)
        assert delivery.finished_at is not None
        receiver.release.set()
        replayed, _ = await kernel.notifications.replay(delivery.delivery_id)
        assert replayed.status is DeliveryStatus.PENDING
        await until(settled(kernel, org_id), worker)  # the receiver answers now
        [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
        assert (delivery.status, len(attempts)) == (DeliveryStatus.DELIVERED, 4)
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


async def test_a_rotated_secret_signs_beside_the_old_one_during_the_overlap(
    database: Database,
) -> None:
    kernel = kernel_for(database, **FAST)
    with http_receiver() as receiver:
        org_id = await org_at(kernel, database, 0)
        old = await kernel.notifications.add_endpoint(receiver.url, org_id=org_id)
        new = await kernel.notifications.rotate_secret(old.endpoint_id)
        assert new.secret != old.secret
        assert new.previous_secret == old.secret
        await kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")
        worker = delivery_worker(kernel)

        async def delivered() -> bool:
            return len(receiver.received) == 1

        await until(delivered, worker)
        [got] = receiver.received
        assert len(got.headers["webhook-signature"].split()) == 2
        for secret in (old.secret, new.secret):
            Webhook(secret).verify(got.body, got.headers)


async def test_endpoints_get_the_types_and_orgs_they_asked_for(database: Database) -> None:
    kernel = kernel_for(database, **FAST)
    with http_receiver() as mine, http_receiver() as blocks, http_receiver() as everyone:
        org_id = await org_at(kernel, database, 0)
        other = await org_at(kernel, database, 0)
        await kernel.notifications.add_endpoint(mine.url, org_id=org_id)
        await kernel.notifications.add_endpoint(
            blocks.url, org_id=org_id, event_types=["quota.blocked"]
        )
        deployment_wide = await kernel.notifications.add_endpoint(everyone.url)
        try:
            await kernel.usage.record(org_id, "tokens", 400, idempotency_key="a")
            await kernel.usage.record(other, "tokens", 400, idempotency_key="b")
            worker = delivery_worker(kernel)

            async def delivered() -> bool:
                return len(mine.received) == 1 and len(everyone.received) >= 2

            await until(delivered, worker)
            await worker.run_once()
        finally:  # the other tests' orgs are none of its business
            await kernel.notifications.remove_endpoint(deployment_wide.endpoint_id)
        assert blocks.received == []
        orgs = {r.json()["data"]["org_id"] for r in everyone.received}
        assert {org_id, other} <= orgs
        assert mine.received[0].json()["data"]["org_id"] == org_id


async def test_the_operators_events_about_an_org_reach_only_deployment_wide_endpoints(
    database: Database,
) -> None:
    """A close that failed, a refund due: the operators', though about an org. Only a
    deployment-wide endpoint gets them; the org's own endpoint (for every type), its Slack,
    its people, its delivery log and its event log never see them."""
    kernel = kernel_for(database, **FAST)
    with http_receiver() as mine, http_receiver() as slack, http_receiver() as everyone:
        org_id = await org_at(kernel, database, 0)
        await kernel.notifications.add_endpoint(mine.url, org_id=org_id)
        await kernel.notifications.put_channel_settings(
            org_id,
            slack_webhook_url=slack.url,
            email=True,
            email_events=list(EventType),
        )
        deployment_wide = await kernel.notifications.add_endpoint(everyone.url)
        failed = close_failed_event(org_id, date(2026, 4, 1), "too large", utc_now())
        try:
            await kernel.events.record([failed])
            await kernel.usage.record(org_id, "tokens", 400, idempotency_key="a")
            worker = delivery_worker(kernel)

            async def delivered() -> bool:
                ids = {r.json()["id"] for r in everyone.received}
                return failed.event_id in ids and len(mine.received) == len(slack.received) == 1

            await until(delivered, worker)
            await worker.run_once()
        finally:  # the other tests' orgs are none of its business
            await kernel.notifications.remove_endpoint(deployment_wide.endpoint_id)
        assert [r.json()["type"] for r in mine.received] == ["usage.threshold_crossed"]
        assert "LLM tokens" in slack.received[0].json()["text"]
        own = await kernel.notifications.deliveries(org_id=org_id, only_org=True)
        assert len(own) == 2  # the crossing: to its endpoint and its Slack, nothing else
        assert failed.event_id not in {d.event_id for d, _ in own}
        [(theirs, _)] = await kernel.notifications.deliveries(
            org_id=org_id, event_id=failed.event_id
        )
        assert (theirs.target, theirs.org_id) == (deployment_wide.endpoint_id, org_id)
        with pytest.raises(DeliveryNotFound):
            await kernel.notifications.delivery(theirs.delivery_id, org_id=org_id)
        everything = await kernel.events.events(org_id=org_id)
        assert failed.event_id in {e.event_id for _, e in everything}
        shown = await kernel.events.events(org_id=org_id, operators_too=False)
        assert [e.event_type for _, e in shown] == [EventType.THRESHOLD_CROSSED]


async def test_an_email_goes_to_the_owners_and_admins_over_real_smtp(database: Database) -> None:
    with smtp_server() as (url, mailbox):
        kernel = kernel_for(database, smtp_url=url, email_from="billing@example.com", **FAST)
        org_id = await org_at(kernel, database, 0)
        await kernel.members.add(org_id, new_id("u"), MemberRole.OWNER, email="owner@example.com")
        await kernel.members.add(org_id, new_id("u"), MemberRole.ADMIN, email="admin@example.com")
        await kernel.members.add(org_id, new_id("u"), MemberRole.MEMBER, email="member@example.com")
        await kernel.members.add(org_id, new_id("u"), MemberRole.ADMIN)  # no address
        await kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")
        worker = delivery_worker(kernel)

        async def sent() -> bool:
            return len(mailbox.messages) == 1

        await until(sent, worker)
        [(sender, recipients, message)] = mailbox.messages
        assert sender == "billing@example.com"
        assert sorted(recipients) == ["admin@example.com", "owner@example.com"]
        assert message["Subject"] == "Acme: LLM tokens reached 80 %"
        plain, rich = message.get_body(("plain",)), message.get_body(("html",))
        assert plain is not None
        assert rich is not None
        text, html = plain.get_content(), rich.get_content()
        assert "Acme has used 80 % of its LLM tokens: 400 of 500 tokens this month." in text
        assert f"http://127.0.0.1:8000/app/billing?org={org_id}" in text
        assert "<table>" in html
        [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
        assert (delivery.channel.value, delivery.status) == ("email", DeliveryStatus.DELIVERED)
        assert len(attempts) == 1


async def test_no_smtp_means_no_email_and_no_address_means_skipped(database: Database) -> None:
    kernel = kernel_for(database, **FAST)
    org_id = await org_at(kernel, database, 400)
    await delivery_worker(kernel).run_once()
    assert await kernel.notifications.deliveries(org_id=org_id) == []
    with smtp_server() as (url, mailbox):
        kernel = kernel_for(database, smtp_url=url, **FAST)
        org_id = await org_at(kernel, database, 400)  # no member has an address
        await delivery_worker(kernel).run_once()
        [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
        assert delivery.status is DeliveryStatus.SKIPPED
        assert attempts[0].error == "no owner or admin has an email address"
        assert mailbox.messages == []


async def test_slack_gets_a_block_kit_message(database: Database) -> None:
    kernel = kernel_for(database, **FAST)
    with http_receiver() as slack:
        org_id = await org_at(kernel, database, 0)
        await kernel.notifications.put_channel_settings(
            org_id, slack_webhook_url=slack.url, email=False
        )
        await kernel.usage.record(org_id, "tokens", 500, idempotency_key="crossing")
        worker = delivery_worker(kernel)
        await until(settled(kernel, org_id), worker)
        # 80 % and 100 % crossed by one write: one message, naming the highest.
        assert len(await kernel.notifications.deliveries(org_id=org_id)) == 1
        messages = [r.json() for r in slack.received]
        assert [m["text"] for m in messages] == [
            "Acme has used 100 % of its LLM tokens: 500 of 500 tokens this month."
        ]
        blocks = messages[0]["blocks"]
        assert [b["type"] for b in blocks] == ["header", "section", "section", "actions"]
        assert blocks[0]["text"]["text"] == "Acme: LLM tokens reached 100 %"
        assert blocks[3]["elements"][0]["url"].endswith(f"/app/billing?org={org_id}")
        assert "webhook-signature" not in slack.received[0].headers


async def test_two_workers_side_by_side_deliver_each_event_once(pg_database: Database) -> None:
    kernel = kernel_for(pg_database, **FAST)
    with http_receiver() as receiver:
        orgs = [await org_at(kernel, pg_database, 0) for _ in range(15)]
        for org_id in orgs:
            await kernel.notifications.add_endpoint(receiver.url, org_id=org_id)
            await kernel.usage.record(org_id, "tokens", 500, idempotency_key="crossing")
        first, second = delivery_worker(kernel), delivery_worker(kernel)

        async def rounds(worker: DeliveryWorker) -> None:
            for _ in range(40):
                if not await worker.run_once():
                    await asyncio.sleep(0.02)

        await asyncio.gather(rounds(first), rounds(second))
        ids = [r.headers["webhook-id"] for r in receiver.received]
        mine = {e.event_id for org_id in orgs for _, e in await kernel.events.events(org_id=org_id)}
        assert mine <= set(ids)
        assert len([i for i in ids if i in mine]) == len(mine) == 30
        assert first.delivered > 0
        assert second.delivered > 0


async def test_a_worker_killed_after_sending_is_followed_by_a_resend_with_the_same_id(
    database: Database, database_url: str
) -> None:
    """The first worker sends, and is killed before it can record the answer; the next
    worker sends again once the first one's lease ends: the same webhook-id and body, one
    logical alert, delivered."""
    kernel = kernel_for(database)
    with http_receiver("hang") as receiver:
        org_id = await org_at(kernel, database, 0)
        endpoint = await kernel.notifications.add_endpoint(receiver.url, org_id=org_id)
        await kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")
        first = start_worker(database_url)
        try:
            assert await asyncio.to_thread(receiver.arrived.wait, 30), "nothing was sent"
        finally:
            first.kill()
            first.wait(10)
        receiver.release.set()  # its answer goes nowhere: the worker is gone
        second = start_worker(database_url)
        try:
            deadline = time.monotonic() + 30
            while len(receiver.received) < 2:
                assert time.monotonic() < deadline, "the delivery was not sent again"
                await asyncio.sleep(0.05)
            deadline = time.monotonic() + 10
            while True:
                [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
                if delivery.status is DeliveryStatus.DELIVERED or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            second.terminate()
            assert second.wait(15) == 0
        first_try, resend = receiver.received
        assert first_try.headers["webhook-id"] == resend.headers["webhook-id"]
        assert first_try.body == resend.body
        for got in (first_try, resend):
            Webhook(endpoint.secret).verify(got.body, got.headers)
        assert delivery.status is DeliveryStatus.DELIVERED
        # The killed worker could not log its attempt; the next one is the second.
        assert [(a.attempt, a.outcome) for a in attempts] == [(2, "delivered")]


async def test_back_under_is_emailed_only_to_an_org_that_asks_for_it(database: Database) -> None:
    with smtp_server() as (url, _mailbox):
        kernel = kernel_for(database, smtp_url=url, **FAST)
        quiet, told = await org_at(kernel, database, 0), await org_at(kernel, database, 0)
        await kernel.notifications.put_channel_settings(
            told,
            slack_webhook_url=None,
            email=True,
            email_events={EventType.THRESHOLD_CROSSED, EventType.THRESHOLD_RESOLVED},
        )
        for org_id in (quiet, told):
            await kernel.members.add(org_id, new_id("u"), MemberRole.OWNER, email="o@example.com")
            await kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")  # 80 %
            await kernel.quota.set_override(org_id, "tokens", 10_000)  # back under 80 %
        worker = delivery_worker(kernel)
        for org_id in (quiet, told):
            await until(settled(kernel, org_id), worker)
        await until(lambda: _no_work(worker), worker)

        async def emailed(org_id: str) -> list[str]:
            types = {
                e.event_id: str(e.event_type) for _, e in await kernel.events.events(org_id=org_id)
            }
            found = await kernel.notifications.deliveries(org_id=org_id)
            return sorted(types[d.event_id] for d, _ in found if d.channel.value == "email")

        assert await emailed(quiet) == ["usage.threshold_crossed"]
        assert await emailed(told) == ["usage.threshold_crossed", "usage.threshold_resolved"]


async def _no_work(worker: DeliveryWorker) -> bool:
    return not await worker.run_once()


async def test_finished_deliveries_past_their_retention_are_forgotten_in_short_batches(
    own_url: str,
) -> None:
    """BILLING_DELIVERY_RETENTION_DAYS: billing events older than that whose deliveries have
    all finished are forgotten, with their deliveries and attempts, a few events a
    transaction; one still being delivered stays, however old; the worker does it. (A
    database of its own: pruning is deployment-wide.)"""
    database = Database(own_url)
    try:
        await forgetting(database)
    finally:
        await database.dispose()


async def forgetting(database: Database) -> None:
    kernel = kernel_for(database, **FAST)
    with http_receiver(*[500] * 20) as failing, http_receiver() as working:
        done_org, retrying_org = (
            await org_at(kernel, database, 0),
            await org_at(kernel, database, 0),
        )
        await kernel.notifications.add_endpoint(working.url, org_id=done_org)
        await kernel.notifications.add_endpoint(failing.url, org_id=retrying_org)
        await kernel.usage.record(done_org, "tokens", 400, idempotency_key="crossing")
        worker = delivery_worker(kernel)
        await until(settled(kernel, done_org), worker)
        delivered = await kernel.notifications.deliveries(org_id=done_org)
        assert [d.status for d, attempts in delivered if attempts] == [DeliveryStatus.DELIVERED]
        await kernel.usage.record(retrying_org, "tokens", 400, idempotency_key="crossing")
        await kernel.notifications.dispatch()  # its delivery waits, pending, for an attempt
        month_on = Kernel(
            database,
            Settings(database_url=str(database.url), delivery_retention_days=30, **FAST),
            clock=lambda: utc_now() + timedelta(days=31),
        )
        assert await kernel.notifications.prune(timedelta(days=30)) == 0  # not old enough
        assert await month_on.notifications.prune(timedelta(days=30), batch=1) == 1
        assert await kernel.notifications.deliveries(org_id=done_org) == []
        [(pending, _)] = await kernel.notifications.deliveries(org_id=retrying_org)
        assert pending.status is DeliveryStatus.PENDING  # still being delivered: kept

        await kernel.usage.record(done_org, "tokens", 100, idempotency_key="more")
        await until(settled(kernel, done_org), worker)
        assert await kernel.notifications.deliveries(org_id=done_org) != []
        assert (await upkeep(month_on).run_once())[0] == 1  # with the setting, the worker prunes
        assert await kernel.notifications.deliveries(org_id=done_org) == []

"""The outbound URL policy, on both databases: webhook and Slack URLs that reach loopback,
private, link-local (cloud metadata), multicast, unspecified or reserved addresses are
refused at registration and at every delivery (resolved by a test resolver, connected to
the address that was checked), unless the operator allows private addresses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import standardwebhooks

from billing_kernel.background import delivery_worker
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.errors import UrlNotAllowed
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.rules import DeliveryStatus
from tests.conftest import new_id, row_counts
from tests.notifications.test_service import FAST, org_at, settled, until
from tests.receivers import http_receiver

pytestmark = pytest.mark.anyio

PUBLIC = "93.184.216.34"

# Each kind of address the kernel never sends to, as IPv4 and IPv6 where it has both.
REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "224.0.0.251": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "240.0.0.1": "reserved",
    "100.64.0.1": "non-public",
    "::ffff:10.1.2.3": "private",
}


class Resolver:
    """A test DNS: each name answers what the test says, now."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = dict(answers)

    async def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise OSError(f"no such name: {host}")
        return list(self.answers[host])


def guarded(database: Database, resolver: Resolver, **settings: object) -> Kernel:
    return Kernel(
        database,
        Settings(database_url=str(database.url), allow_private_webhooks=False, **settings),
        resolver=resolver,
    )


async def test_every_non_public_address_is_refused_by_literal_and_by_name(
    database: Database,
) -> None:
    names = {f"host-{n}.test": [address] for n, address in enumerate(REFUSED)}
    names["mixed.test"] = [PUBLIC, "10.9.8.7"]  # one private answer is enough
    names["public.test"] = [PUBLIC]
    kernel = guarded(database, Resolver(names))
    org_id = await org_at(kernel, database, 0)
    before = await row_counts(database)
    for n, (address, kind) in enumerate(REFUSED.items()):
        # IPv4 as written in the URL and by name; IPv6 by name (URLs take no IPv6 literal).
        urls = [f"https://host-{n}.test/x"] + ([] if ":" in address else [f"http://{address}/"])
        for url in urls:
            with pytest.raises(UrlNotAllowed, match=f"a {kind} address") as refused:
                await kernel.notifications.add_endpoint(url, org_id=org_id)
            assert refused.value.details["field"] == "url"
            assert refused.value.message.startswith(
                f"url: 'host-{n}.test' is {address}," if "host-" in url else f"url: {address} is a"
            )
            with pytest.raises(UrlNotAllowed, match=f"a {kind} address"):
                await kernel.notifications.put_channel_settings(
                    org_id, slack_webhook_url=url, email=False
                )
    with pytest.raises(UrlNotAllowed, match=r"'mixed\.test' is 10\.9\.8\.7, a private address"):
        await kernel.notifications.add_endpoint("https://mixed.test/x", org_id=org_id)
    with pytest.raises(UrlNotAllowed, match=r"'nowhere\.test' does not resolve"):
        await kernel.notifications.add_endpoint("https://nowhere.test/x", org_id=org_id)
    assert await row_counts(database) == before  # nothing written

    endpoint = await kernel.notifications.add_endpoint("https://public.test/x", org_id=org_id)
    assert endpoint.url == "https://public.test/x"
    allowed = Kernel(
        database,
        Settings(database_url=str(database.url), allow_private_webhooks=True),
        resolver=Resolver(names),
    )
    assert (await allowed.notifications.add_endpoint("http://10.0.0.1/x", org_id=org_id)).url


async def test_a_name_that_turns_private_after_registration_is_refused_at_delivery(
    database: Database,
) -> None:
    """Registered while public; at delivery the name answers the receiver's loopback
    address: nothing is sent, and the delivery fails at once with the reason."""
    with http_receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1].split("/", 1)[0]
        resolver = Resolver({"rebinding.test": [PUBLIC]})
        kernel = guarded(database, resolver, **FAST)
        org_id = await org_at(kernel, database, 0)
        await kernel.notifications.add_endpoint(f"http://rebinding.test:{port}/", org_id=org_id)
        resolver.answers["rebinding.test"] = ["127.0.0.1"]
        await kernel.usage.record(org_id, "tokens", 450, idempotency_key="crossing")
        await until(settled(kernel, org_id), delivery_worker(kernel))
        [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
        assert delivery.status is DeliveryStatus.FAILED
        assert len(attempts) == 1  # not retried: the address will not become public
        assert "'rebinding.test' is 127.0.0.1, a loopback address" in (attempts[0].error or "")
        assert receiver.received == []


async def test_a_delivery_connects_to_the_address_it_checked_with_the_name_as_host(
    database: Database,
) -> None:
    """With private addresses allowed, the name is still resolved once and the request sent
    to that address, with the URL's own host in the Host header; the signature verifies."""
    with http_receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1].split("/", 1)[0]
        resolver = Resolver({"hooks.test": ["127.0.0.1"]})
        kernel = Kernel(
            database,
            Settings(database_url=str(database.url), allow_private_webhooks=True, **FAST),
            resolver=resolver,
        )
        org_id = await org_at(kernel, database, 0)
        url = f"http://hooks.test:{port}/in?x=1"
        endpoint = await kernel.notifications.add_endpoint(url, org_id=org_id)
        await kernel.usage.record(org_id, "tokens", 450, idempotency_key="crossing")
        await until(settled(kernel, org_id), delivery_worker(kernel))
        [got] = receiver.received
        assert (got.path, got.headers["host"]) == ("/in?x=1", f"hooks.test:{port}")
        standardwebhooks.Webhook(endpoint.secret).verify(got.body, got.headers)


async def test_an_unresolvable_name_at_delivery_is_tried_again(database: Database) -> None:
    resolver = Resolver({"flaky.test": [PUBLIC]})
    kernel = guarded(database, resolver, **FAST)
    org_id = await org_at(kernel, database, 0)
    await kernel.notifications.add_endpoint("https://flaky.test/x", org_id=org_id)
    del resolver.answers["flaky.test"]
    await kernel.usage.record(org_id, "tokens", 450, idempotency_key=new_id("e"))
    await until(settled(kernel, org_id), delivery_worker(kernel))
    [(delivery, attempts)] = await kernel.notifications.deliveries(org_id=org_id)
    assert delivery.status is DeliveryStatus.FAILED
    assert len(attempts) == 4  # the first and three retries (FAST's schedule)
    assert all("'flaky.test' does not resolve" in (a.error or "") for a in attempts)

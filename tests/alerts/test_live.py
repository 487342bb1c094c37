"""The README's walk-through of alerts, against a real `billing-kernel serve` that runs the
delivery worker inside (as `make run` does) on a fresh SQLite file: a webhook registered
over HTTP gets the demo org's alert, signed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from billing_kernel.db import migrate
from tests.live import KernelServer, kernel_command
from tests.receivers import http_receiver


def test_make_run_delivers_the_demo_orgs_alert_to_a_webhook_registered_over_http(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate.upgrade(url)
    kernel_command(url, "demo")
    key = kernel_command(url, "api-keys", "create", "--scopes", "billing:admin,usage:write")
    server = KernelServer(url, env={"BILLING_WORKER_IN_SERVER": "true"}).start()
    auth = {"Authorization": f"Bearer {key}"}
    api = f"{server.url}/api/v1"
    try:
        with http_receiver() as receiver:
            created = httpx.post(
                f"{api}/webhooks/endpoints",
                json={"url": receiver.url, "org_id": "demo-org"},
                headers=auth,
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            threshold = httpx.put(
                f"{api}/orgs/demo-org/alert-thresholds/tokens",
                json={"thresholds": [{"quantity": 50_000_000}]},
                headers=auth,
            )
            assert threshold.status_code == 200, threshold.text
            sent = httpx.post(
                f"{api}/usage/events",
                json={
                    "events": [
                        {
                            "org_id": "demo-org",
                            "metric": "tokens",
                            "quantity": 50_000_000,
                            "idempotency_key": "readme-alert",
                        }
                    ]
                },
                headers=auth,
            )
            assert sent.status_code == 200, sent.text
            deadline = time.monotonic() + 20
            crossed: list[dict[str, Any]] = []
            while not crossed:
                assert time.monotonic() < deadline, "no alert reached the webhook"
                time.sleep(0.05)
                # Each is verified; the change of thresholds may also have resolved the
                # plan's 80 % and 100 %, if the demo month had crossed them.
                events = [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]
                crossed = [e for e in events if e["type"] == "usage.threshold_crossed"]
            [event] = crossed
            assert event["data"]["org_id"] == "demo-org"
            assert event["data"]["threshold"] == {
                "key": "50000000",
                "percent": None,
                "quantity": 50_000_000,
            }
            params = {"event_id": event["id"]}
            deadline = time.monotonic() + 10
            while True:
                log = httpx.get(f"{api}/webhooks/deliveries", params=params, headers=auth)
                [delivery] = log.json()["data"]
                if delivery["status"] == "delivered" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert delivery["status"] == "delivered"
    finally:
        server.stop()

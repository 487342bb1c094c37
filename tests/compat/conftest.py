"""The incumbents' own clients against a real kernel server, on SQLite and on PostgreSQL:
each protocol test module gets a server and a key that may write usage, read it and manage
orgs, and reads what the kernel counted through the kernel's own API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, new_id
from tests.live import KernelServer, kernel_command


@dataclass
class Live:
    url: str
    key: str
    database_url: str

    def key_with(self, scopes: str) -> str:
        """Another kernel API key, with only `scopes` (comma-separated)."""
        return kernel_command(self.database_url, "api-keys", "create", "--scopes", scopes)

    def _get(self, path: str, **headers: str) -> Any:
        response = httpx.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.key}", **headers}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def put(self, path: str, body: Any) -> Any:
        response = httpx.put(
            f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {self.key}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def used(self, org_id: str, metric: str = "tokens") -> int:
        """What the kernel counted for the org this month, by its own API."""
        summary = self._get("/api/v1/billing/org/summary", **{"X-Org-Id": org_id})
        [line] = [line for line in summary["usage"] if line["metric"] == metric]
        return int(line["used"])

    def summary(self, org_id: str) -> Any:
        return self._get("/api/v1/billing/org/summary", **{"X-Org-Id": org_id})

    def groups(self, org_id: str, prop: str, metric: str = "tokens") -> dict[str | None, int]:
        """This month's usage of `metric` by the values of the event property `prop`."""
        [point] = self._get(f"/api/v1/orgs/{org_id}/usage?group_by={prop}")["data"]
        return {group["value"]: group["quantity"] for group in point["groups"][metric]}

    def events(self, org_id: str) -> list[Any]:
        return list(self._get(f"/api/v1/orgs/{org_id}/events?limit=200")["data"])

    def new_org(self, *aliases: str, plan: str | None = None, paying: bool = False) -> str:
        """An org created through the kernel's API (on `plan`, else the default; `active`
        when `paying`, else in trial), with `aliases`."""
        org_id = new_id("compat")
        headers = {"Authorization": f"Bearer {self.key}"}
        body = {} if plan is None else {"plan_slug": plan}
        if paying:
            body["status"] = "active"
        created = httpx.put(f"{self.url}/api/v1/orgs/{org_id}", json=body, headers=headers)
        assert created.status_code == 200, created.text
        if aliases:
            response = httpx.put(
                f"{self.url}/api/v1/orgs/{org_id}/aliases",
                json={"aliases": list(aliases)},
                headers=headers,
            )
            assert response.status_code == 200, response.text
        return org_id


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    database_url = str(request.getfixturevalue(f"{request.param}_url"))
    key = kernel_command(
        database_url, "api-keys", "create", "--scopes", "usage:write,quota:check,billing:admin"
    )
    server = KernelServer(database_url).start()
    yield Live(server.url, key, database_url)
    server.stop()

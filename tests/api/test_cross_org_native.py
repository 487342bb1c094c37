"""A key restricted to org A that names another org on the native API, in a path (every
operation of the OpenAPI document with `{org_id}`), the X-Org-Id header, a query or a body,
gets the same answer whether that org exists or not, and nothing is written."""

from __future__ import annotations

import re

import httpx
import pytest

from billing_kernel.auth.rules import Scope
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

EVERY_SCOPE = (Scope.BILLING_ADMIN, Scope.USAGE_WRITE, Scope.QUOTA_CHECK)


def comparable(answer: httpx.Response, named: str) -> tuple[int, str]:
    """Status and body, less the request's own id and the org id it named (echoed)."""
    text = answer.text.replace(named, "<named>")
    return answer.status_code, re.sub(r'"(request_id|instance)":"[^"]*"', "", text)


def requests_naming(spec: dict[str, object], org: str) -> list[tuple[str, str, dict[str, object]]]:
    """(method, path, extra) for every way the native API names an org: each path
    operation with `{org_id}`, then the header, the queries and the bodies."""
    found: list[tuple[str, str, dict[str, object]]] = []
    paths = spec["paths"]
    assert isinstance(paths, dict)
    for template, operations in sorted(paths.items()):
        if "{org_id}" not in template or template.startswith("/compat"):
            continue
        path = template.replace("{org_id}", org)
        for name in ("metric", "threshold", "user_id"):
            path = path.replace(f"{{{name}}}", "tokens" if name == "metric" else "x")
        for method in operations:
            found.append((method.upper(), path, {"json": {}}))
    found += [
        ("GET", "/api/v1/billing/org/summary", {"headers": {"X-Org-Id": org}}),
        (
            "POST",
            "/api/v1/billing/org/check",
            {"headers": {"X-Org-Id": org}, "json": {"metric": "tokens", "amount": 1}},
        ),
        ("GET", "/api/v1/events", {"params": {"org_id": org}}),
        ("GET", "/api/v1/webhooks/endpoints", {"params": {"org_id": org}}),
        ("GET", "/api/v1/webhooks/deliveries", {"params": {"org_id": org}}),
        (
            "POST",
            "/api/v1/usage/events",
            {
                "json": {
                    "events": [
                        {"org_id": org, "metric": "tokens", "quantity": 1, "idempotency_key": "k"}
                    ]
                }
            },
        ),
        (
            "POST",
            "/api/v1/usage/reservations",
            {"json": {"org_id": org, "metric": "tokens", "estimate": 1, "idempotency_key": "r"}},
        ),
        (
            "POST",
            "/api/v1/webhooks/endpoints",
            {"json": {"url": "http://127.0.0.1/x", "org_id": org}},
        ),
    ]
    return found


async def test_a_one_org_key_gets_one_answer_for_another_org_existing_or_not(api: Api) -> None:
    mine, theirs, nobody = new_id(), new_id(), new_id("nobody")
    for org_id in (mine, theirs):
        await api.kernel.orgs.create(org_id, plan_slug="starter")
    _, plaintext = await api.kernel.api_keys.create(EVERY_SCOPE, org_id=mine)
    key = {"Authorization": f"Bearer {plaintext}"}
    spec = (await api.client.get("/openapi.json")).json()
    before = await row_counts(api.database)
    checked = 0
    for (method, path, extra), (_, other_path, other_extra) in zip(
        requests_naming(spec, theirs), requests_naming(spec, nobody), strict=True
    ):
        headers = {**key, **extra.pop("headers", {})}  # type: ignore[dict-item]
        other_headers = {**key, **other_extra.pop("headers", {})}  # type: ignore[dict-item]
        existing = await api.client.request(method, path, headers=headers, **extra)  # type: ignore[arg-type]
        missing = await api.client.request(  # type: ignore[arg-type]
            method, other_path, headers=other_headers, **other_extra
        )
        assert existing.status_code in (403, 404), (method, path, existing.text)
        assert comparable(existing, theirs) == comparable(missing, nobody), (method, path)
        checked += 1
    assert checked >= 20
    assert await row_counts(api.database) == before

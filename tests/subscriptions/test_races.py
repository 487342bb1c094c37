"""Confirmations of one plan-change preview raced as real concurrent requests on
PostgreSQL: one makes the change, the others are told the preview no longer holds; none
claims to have made it, and the org changed plan once."""

from __future__ import annotations

import asyncio

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import new_id
from tests.invoices.test_races import ROUNDS, pg_api  # noqa: F401 - the fixture
from tests.web import Api

pytestmark = pytest.mark.anyio


async def test_four_confirmations_of_one_preview_make_one_change(pg_api: Api) -> None:  # noqa: F811
    admin = await pg_api.key(Scope.BILLING_ADMIN)
    for _ in range(ROUNDS):
        org_id = new_id()
        await pg_api.kernel.orgs.create(org_id, plan_slug="starter")
        await pg_api.kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
        headers = {**admin, "X-Org-Id": org_id}
        preview = await pg_api.client.post(
            "/api/v1/billing/org/plan/preview", json={"plan_slug": "growth"}, headers=headers
        )
        assert preview.status_code == 200, preview.text
        confirm = {
            "plan_slug": "growth",
            "at": preview.json()["effective_at"],
            "preview_token": preview.json()["preview_token"],
        }
        answers = await asyncio.gather(
            *(
                pg_api.client.post("/api/v1/billing/org/plan", json=confirm, headers=headers)
                for _ in range(4)
            )
        )
        outcomes = sorted(
            (a.status_code, a.json().get("kind") or a.json().get("code")) for a in answers
        )
        assert outcomes == [(200, "upgrade")] + [(409, "preview_stale")] * 3, outcomes
        [made] = [a.json() for a in answers if a.status_code == 200]
        assert made["lines"] == preview.json()["lines"]
        assert made["current_plan"] == "growth"
        upcoming = await pg_api.kernel.invoices.upcoming(org_id)
        assert str(upcoming.total) == preview.json()["upcoming_total_after"]

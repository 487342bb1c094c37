"""Plan changes over HTTP: the preview's lines are the change's, a downgrade is scheduled
and canceled, and refusals name what is wrong and write nothing."""

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

PREVIEW = "/api/v1/billing/org/plan/preview"
CHANGE = "/api/v1/billing/org/plan"
SCHEDULED = "/api/v1/billing/org/plan/scheduled"


async def test_a_previewed_upgrade_is_made_to_the_cent_and_a_downgrade_is_scheduled(
    api: Api,
) -> None:
    org_id = new_id()
    owner = await api.member(org_id, MemberRole.OWNER)
    await api.kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    preview = (await api.client.post(PREVIEW, json={"plan_slug": "growth"}, headers=owner)).json()
    assert (preview["kind"], preview["from_plan"], preview["scheduled"]) == (
        "upgrade",
        "starter",
        False,
    )
    assert [line["kind"] for line in preview["lines"]] == ["proration_credit", "proration_charge"]
    made = await api.client.post(
        CHANGE, json={"plan_slug": "growth", "at": preview["effective_at"]}, headers=owner
    )
    assert made.status_code == 200, made.text
    assert made.json()["lines"] == preview["lines"]
    assert made.json()["upcoming_total_after"] == preview["upcoming_total_after"]
    upcoming = (await api.client.get("/api/v1/billing/org/invoices/upcoming", headers=owner)).json()
    assert upcoming["lines"][-2:] == [
        {**line, "number": n} for n, line in enumerate(preview["lines"], len(upcoming["lines"]) - 1)
    ]

    assert (await api.client.get(SCHEDULED, headers=owner)).json() == {"scheduled": None}
    down = (await api.client.post(CHANGE, json={"plan_slug": "starter"}, headers=owner)).json()
    assert (down["kind"], down["scheduled"], down["current_plan"], down["lines"]) == (
        "downgrade",
        True,
        "growth",
        [],
    )
    waiting = (await api.client.get(SCHEDULED, headers=owner)).json()["scheduled"]
    assert (waiting["plan_slug"], waiting["effective_at"]) == ("starter", down["effective_at"])
    canceled = await api.client.delete(SCHEDULED, headers=owner)
    assert canceled.json() == {"scheduled": None}
    assert (await api.client.get(SCHEDULED, headers=owner)).json() == {"scheduled": None}


async def test_plan_change_refusals_name_what_is_wrong_and_write_nothing(api: Api) -> None:
    org_id = new_id()
    owner = await api.member(org_id, MemberRole.OWNER)
    member = await api.member(org_id, MemberRole.MEMBER)
    reader = await api.key(Scope.QUOTA_CHECK, org_id=org_id)
    before = await row_counts(api.database)
    for headers in (member, reader):
        refused = await api.client.post(PREVIEW, json={"plan_slug": "growth"}, headers=headers)
        assert refused.status_code == 403
    for body, status, code in (
        ({"plan_slug": "nope"}, 404, "plan_not_found"),
        ({"plan_slug": "growth", "at": "2020-01-01T00:00:00Z"}, 409, "preview_stale"),
        ({"plan_slug": "growth", "at": "yesterday"}, 422, "invalid_request"),
        ({"plan_slug": "growth", "extra": 1}, 422, "invalid_request"),
    ):
        answer = await api.client.post(CHANGE, json=body, headers=owner)
        assert (answer.status_code, answer.json()["code"]) == (status, code), body
    assert await row_counts(api.database) == before

"""CSV exports are safe to open in a spreadsheet and bounded per answer: a value that a
spreadsheet would run as a formula is neutralized (and can be read back exactly), one
answer holds a bounded number of rows with a `Link` to the rest, and a file name of any
org id is given per RFC 6266."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import httpx
import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.kernel import Kernel
from billing_kernel.summary import routes as summary_routes
from billing_kernel.usage import routes as usage_routes
from tests.conftest import Clock, new_id
from tests.web import Api

pytestmark = pytest.mark.anyio

START = datetime(2026, 10, 1, tzinfo=UTC)
FORMULAS = ["=SUM(A1:A9)", "+1", "-1", "@cmd", "'quoted", '=HYPERLINK("x")', "plain"]


def undone(value: str) -> str:
    """How a reader takes a value back: drop one leading single quote."""
    return value[1:] if value.startswith("'") else value


def read(answer: httpx.Response) -> list[list[str]]:
    assert answer.status_code == 200, answer.text
    return list(csv.reader(io.StringIO(answer.text)))


def next_link(answer: httpx.Response) -> str | None:
    link = answer.headers.get("link")
    if link is None:
        return None
    found = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert found is not None, link
    return found.group(1)


async def org_with(api: Api, keys: list[str], models: list[str], org_id: str = "") -> str:
    org_id = org_id or new_id()
    clock = Clock(START + timedelta(days=20))
    kernel = Kernel(api.database, api.kernel.settings, clock=clock)  # type: ignore[arg-type]
    await kernel.orgs.create(org_id, plan_slug="starter")
    for n, key in enumerate(keys):
        await kernel.usage.record(
            org_id,
            "tokens",
            10 + n,
            idempotency_key=key,
            occurred_at=START + timedelta(hours=n),
            properties={"model": models[n % len(models)]},
        )
    return org_id


async def test_values_a_spreadsheet_would_run_are_neutralized_and_read_back_exactly(
    api: Api,
) -> None:
    models = [*FORMULAS, "\tTAB", "\rCR"]
    keys = [*FORMULAS[:5], "key-5", "key-6", "key-7", "key-8"]
    org_id = await org_with(api, keys, models)
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)

    events = read(await api.client.get(f"/api/v1/orgs/{org_id}/events.csv", headers=admin))
    assert [row[0] for row in events[1:]] == [
        "'=SUM(A1:A9)",
        "'+1",
        "'-1",
        "'@cmd",
        "''quoted",
        "key-5",
        "key-6",
        "key-7",
        "key-8",
    ]
    assert [undone(row[0]) for row in events[1:]] == keys
    for row in events[1:]:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))

    usage = read(
        await api.client.get(
            f"/api/v1/orgs/{org_id}/usage.csv",
            params={"from": "2026-10", "to": "2026-10", "group_by": "model"},
            headers=admin,
        )
    )
    values = sorted(row[3] for row in usage[1:] if row[2] == "tokens")
    assert sorted(undone(v) for v in values) == sorted(models)
    for value in values:
        assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))


async def test_an_events_export_is_bounded_per_answer_and_its_link_goes_on_exactly(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"e-{n:02d}" for n in range(11)]
    org_id = await org_with(api, keys, ["m"])
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    monkeypatch.setattr(usage_routes, "EXPORT_ROWS", 4)
    url: str | None = f"/api/v1/orgs/{org_id}/events.csv?metric=tokens"
    seen, answers = [], 0
    while url is not None:
        answer = await api.client.get(url, headers=admin)
        rows = read(answer)
        assert rows[0][0] == "idempotency_key"
        assert len(rows) - 1 <= 4
        seen += [row[0] for row in rows[1:]]
        url, answers = next_link(answer), answers + 1
        if url is not None:
            assert url.startswith(f"/api/v1/orgs/{org_id}/events.csv?metric=tokens&cursor=")
    assert (seen, answers) == (keys, 3)  # 4 + 4 + 3: none twice, none left out


async def test_a_usage_export_is_bounded_per_answer_and_goes_on_where_it_ends(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id = await org_with(api, ["a"], ["m"])
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    url = f"/api/v1/orgs/{org_id}/usage.csv"
    params = {"from": "1000-01", "granularity": "day"}
    first = await api.client.get(url, params=params, headers=admin)
    days = {row[0] for row in read(first)[1:]}
    assert len(days) == 1_000  # not 1.5 million rows: the first 1,000 days
    assert min(days) == "1000-01-01"
    assert next_link(first) is not None

    monkeypatch.setattr(summary_routes, "EXPORT_POINTS", 2)
    monkeypatch.setattr(summary_routes, "EXPORT_MOST_POINTS", 4)
    params = {"from": "2026-09", "to": "2026-10", "granularity": "day"}
    link: str | None = f"{url}?from=2026-09&to=2026-10&granularity=day"
    starts: list[str] = []
    while link is not None:
        answer = await api.client.get(link, headers=admin)
        got = sorted({row[0] for row in read(answer)[1:]})
        assert 0 < len(got) <= 4
        starts += got
        link = next_link(answer)
    assert starts == [f"2026-09-{d:02d}" for d in range(1, 31)] + [
        f"2026-10-{d:02d}" for d in range(1, 32)
    ]


async def test_a_download_is_named_for_any_org_id(api: Api) -> None:
    org_id = await org_with(api, ["a"], ["m"], org_id=f'café-€ "{new_id()}"')
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    for export in ("events.csv", "usage.csv"):
        path = f"/api/v1/orgs/{httpx.URL(org_id).raw_path.decode()}/{export}"
        answer = await api.client.get(path, headers=admin)
        assert answer.status_code == 200, answer.text
        disposition = answer.headers["content-disposition"]
        exact = re.search(r"filename\*=UTF-8''(\S+)", disposition)
        assert exact is not None, disposition
        assert unquote(exact.group(1)) == f"{org_id}-{export}"
        assert 'filename="caf_-_ _' in disposition  # an ASCII name for old clients

"""The authentication and authorization matrix."""

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from billing_kernel.api.app import create_app
from billing_kernel.auth.rules import Scope
from billing_kernel.config import DEV_JWT_SECRET, Settings
from billing_kernel.db.database import Database
from billing_kernel.errors import ConfigurationError
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from tests.conftest import new_id
from tests.web import SECRET, Api, app_for, bearer, user_token

pytestmark = pytest.mark.anyio

SUMMARY = "/api/v1/billing/org/summary"
PLAN = "/api/v1/billing/org/plan"


def unsigned(claims: dict[str, Any]) -> str:
    """A token with `alg: none`, built by hand."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def send_one_event(api: Api, headers: dict[str, str], org_id: str) -> httpx.Response:
    event = {"org_id": org_id, "metric": "tokens", "quantity": 1, "idempotency_key": "x"}
    return await api.client.post("/api/v1/usage/events", headers=headers, json={"events": [event]})


async def expect_401(api: Api, headers: dict[str, str], says: str) -> None:
    response = await api.client.get(SUMMARY, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"
    assert says in response.json()["detail"]


async def test_no_credentials(api: Api) -> None:
    await expect_401(api, {}, "no credentials")


async def test_bad_tokens_are_refused(api: Api) -> None:
    org_id = new_id()
    await api.member(org_id)
    user_id = (await api.kernel.members.of_org(org_id))[0][0]
    now = datetime.now(UTC)
    await expect_401(api, bearer(user_token(user_id, exp=now - timedelta(minutes=1))), "expired")
    await expect_401(
        api, bearer(user_token(user_id, nbf=now + timedelta(minutes=5))), "not valid yet"
    )
    await expect_401(api, bearer(user_token(user_id, secret="another-secret-" * 4)), "not valid")
    await expect_401(
        api, bearer(unsigned({"sub": user_id, "exp": now.timestamp() + 600})), "not valid"
    )
    await expect_401(api, bearer("not.a.token"), "not valid")
    no_expiry = jwt.encode({"sub": user_id}, SECRET, algorithm="HS256")
    await expect_401(api, bearer(no_expiry), "exp")
    await expect_401(api, bearer(user_token("")), "subject")
    # and the same user with a good token gets in
    assert (await api.client.get(SUMMARY, headers=bearer(user_token(user_id)))).status_code == 200


async def test_the_token_may_come_in_the_auth_cookie(api: Api) -> None:
    org_id = new_id()
    headers = await api.member(org_id)
    token = headers["Authorization"].removeprefix("Bearer ")
    api.client.cookies.set("billing-auth-token", token)
    response = await api.client.get(SUMMARY)
    assert (response.status_code, response.json()["org_id"]) == (200, org_id)


async def test_bad_and_revoked_api_keys_are_refused(api: Api) -> None:
    org_id = new_id()
    await api.kernel.orgs.create(org_id)
    key, plaintext = await api.kernel.api_keys.create([Scope.QUOTA_CHECK])
    headers = {**bearer(plaintext), "X-Org-Id": org_id}
    assert (await api.client.get(SUMMARY, headers=headers)).status_code == 200
    tampered = plaintext[:-2] + ("aa" if not plaintext.endswith("aa") else "bb")
    await expect_401(api, {**bearer(tampered), "X-Org-Id": org_id}, "API key is not valid")
    await expect_401(api, {**bearer("bk_nonsense"), "X-Org-Id": org_id}, "API key is not valid")
    # The server keeps a verified key for BILLING_API_KEY_CACHE_SECONDS; revoking through
    # the server's own service takes effect at once...
    served_by: Kernel = api.client._transport.app.state.kernel  # type: ignore[attr-defined]
    await served_by.api_keys.revoke(key.key_id)
    await expect_401(api, headers, "API key is not valid")


async def test_a_key_revoked_elsewhere_is_refused_once_the_cache_lapses(
    database: Database, api: Api
) -> None:
    org_id = new_id()
    await api.kernel.orgs.create(org_id)
    key, plaintext = await api.kernel.api_keys.create([Scope.QUOTA_CHECK])
    headers = {**bearer(plaintext), "X-Org-Id": org_id}
    async with app_for(database, api_key_cache_seconds=0.3) as client:
        assert (await client.get(SUMMARY, headers=headers)).status_code == 200
        await api.kernel.api_keys.revoke(key.key_id)  # another server, or the CLI
        assert (await client.get(SUMMARY, headers=headers)).status_code == 200  # cached
        await asyncio.sleep(0.35)
        assert (await client.get(SUMMARY, headers=headers)).status_code == 401


async def test_a_key_restricted_to_one_org_cannot_act_for_another(api: Api) -> None:
    mine, theirs = new_id(), new_id()
    for org_id in (mine, theirs):
        await api.kernel.orgs.create(org_id)
    key = await api.key(Scope.QUOTA_CHECK, Scope.USAGE_WRITE, org_id=mine)
    assert (await api.client.get(SUMMARY, headers={**key, "X-Org-Id": mine})).status_code == 200
    refused = await api.client.get(SUMMARY, headers={**key, "X-Org-Id": theirs})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    events = await send_one_event(api, key, theirs)
    assert events.status_code == 403


async def test_users_cannot_send_usage_or_manage_orgs(api: Api) -> None:
    org_id = new_id()
    headers = await api.member(org_id, plan="starter")
    events = await send_one_event(api, headers, org_id)
    assert (events.status_code, events.json()["code"]) == (403, "forbidden")
    assert (
        await api.client.put(f"/api/v1/orgs/{org_id}", json={}, headers=headers)
    ).status_code == 403


def test_outside_dev_mode_the_app_refuses_a_missing_default_or_short_secret() -> None:
    for secret, says in (
        (None, "not set"),
        (DEV_JWT_SECRET, "development secret"),
        ("short", "shorter than 32"),
    ):
        with pytest.raises(ConfigurationError, match=says):
            create_app(Settings(jwt_secret=secret))  # type: ignore[arg-type]
    create_app(Settings(dev_mode=True))  # dev mode: the built-in secret is fine
    create_app(Settings(jwks_url="http://127.0.0.1:9/jwks.json"))  # keys from the provider


class JwksServer:
    """An identity provider's JWKS endpoint on a real local HTTP server."""

    def __init__(self) -> None:
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        keys = [
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa_key.public_key())),
                "kid": "rsa-1",
                "alg": "RS256",
                "use": "sig",
            },
            {
                **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec_key.public_key())),
                "kid": "ec-1",
                "alg": "ES256",
                "use": "sig",
            },
        ]
        body = json.dumps({"keys": keys}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, user_id: str, alg: str, **claims: Any) -> str:
        now = datetime.now(UTC)
        payload = {
            "sub": user_id,
            "exp": now + timedelta(hours=1),
            "aud": "authenticated",
            **claims,
        }
        key, kid = (self.rsa_key, "rsa-1") if alg == "RS256" else (self.ec_key, "ec-1")
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.server.shutdown()


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_identity_provider_tokens_are_verified_with_its_jwks(
    database: Database, api: Api, jwks: JwksServer, alg: str
) -> None:
    org_id = new_id()
    await api.kernel.orgs.create(org_id)
    user_id = new_id("user")
    await api.kernel.members.add(org_id, user_id)
    async with app_for(database, jwks_url=jwks.url, jwt_audience="authenticated") as client:
        ok = await client.get(SUMMARY, headers=bearer(jwks.token(user_id, alg)))
        assert (ok.status_code, ok.json()["org_id"]) == (200, org_id)
        wrong_audience = await client.get(
            SUMMARY, headers=bearer(jwks.token(user_id, alg, aud="someone-else"))
        )
        assert wrong_audience.status_code == 401
        # An HS256 token signed with the old shared secret is not accepted any more.
        hs256 = await client.get(SUMMARY, headers=bearer(user_token(user_id)))
        assert hs256.status_code == 401


async def test_a_write_with_the_cookie_must_come_from_the_kernels_own_pages(api: Api) -> None:
    """The plan change is the write a page makes with the cookie: from another site (a form
    or fetch that carries the cookie) it is refused, from the kernel's own origin it goes."""
    org_id = new_id()
    headers = await api.member(org_id, MemberRole.OWNER)
    api.client.cookies.set("billing-auth-token", headers["Authorization"].removeprefix("Bearer "))
    plan = {"plan_slug": "growth"}
    own = "http://kernel.test"
    for cross_site in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain: SameSite=Lax lets it through
        {},  # says nothing about where it comes from
    ):
        refused = await api.client.post(PLAN, json=plan, headers=cross_site)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), cross_site
    assert (await api.kernel.subscriptions.billing_state(org_id)).plan_slug == "starter"
    for same_origin in ({"Origin": own, "Sec-Fetch-Site": "same-origin"}, {"Origin": own}):
        changed = await api.client.post(PLAN, json=plan, headers=same_origin)
        assert changed.status_code == 200, changed.text
    api.client.cookies.clear()
    # A backend with the token in the header is not a browser: no origin needed.
    assert (await api.client.post(PLAN, json=plan, headers=headers)).status_code == 200


async def test_signing_out_forgets_the_cookie_and_only_from_the_kernels_own_pages(
    api: Api,
) -> None:
    cross_site = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    refused = await api.client.post("/app/logout", headers=cross_site)
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers
    own = {"Origin": "http://kernel.test", "Sec-Fetch-Site": "same-origin"}
    signed_out = await api.client.post("/app/logout", headers=own)
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/app/signed-out")
    cookie = signed_out.headers["set-cookie"].lower()
    assert cookie.startswith('billing-auth-token="";')
    assert "max-age=0" in cookie
    assert {"httponly", "secure", "samesite=lax"} <= {part.strip() for part in cookie.split(";")}
    page = await api.client.get("/app/signed-out")
    assert page.status_code == 200
    assert "You are signed out" in page.text

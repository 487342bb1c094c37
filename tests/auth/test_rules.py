"""API keys and scopes: the pure rules behind every service caller."""

from datetime import UTC, datetime

import pytest

from billing_kernel.auth.rules import (
    KEY_ID_LENGTH,
    PREFIX,
    ApiKey,
    ApiKeyCaller,
    Scope,
    hash_secret,
    looks_like_api_key,
    new_key_material,
    parse_scopes,
    secret_matches,
    split_key,
)
from billing_kernel.errors import Forbidden


def test_a_new_key_is_its_id_and_secret_behind_the_prefix_and_splits_back() -> None:
    key_id, secret, plaintext = new_key_material()
    assert plaintext == f"bk_{key_id}_{secret}"
    assert len(key_id) == KEY_ID_LENGTH
    assert len(secret) == 43  # 32 random bytes, URL-safe base64 without padding
    assert looks_like_api_key(plaintext)
    assert split_key(plaintext) == (key_id, secret)
    assert new_key_material()[0] != key_id


@pytest.mark.parametrize(
    "plaintext",
    [
        "0123456789abcdef_secret",  # no prefix
        "bk_0123456789abcde_secret",  # key id one short
        "bk_0123456789abcdef0_secret",  # one long
        "bk_0123456789ABCDEF_secret",  # hex, but not lower case
        "bk_0123456789abcdeg_secret",  # not hex
        "bk_0123456789abcdef",  # no separator
        "bk_0123456789abcdef_",  # no secret
    ],
)
def test_a_malformed_key_does_not_split(plaintext: str) -> None:
    assert split_key(plaintext) is None


def test_a_secret_with_underscores_stays_whole() -> None:
    assert split_key("bk_0123456789abcdef_a_b") == ("0123456789abcdef", "a_b")
    assert PREFIX == "bk_"
    assert not looks_like_api_key("eyJhbGciOi.jwt")


def test_only_the_right_secret_matches_its_stored_hash() -> None:
    stored = ApiKey(
        key_id="0123456789abcdef",
        secret_hash=hash_secret("right"),
        scopes=frozenset(),
        org_id=None,
        name=None,
        created_at=datetime(2026, 5, 1, tzinfo=UTC),
    )
    # SHA-256, hex: stored hashes must stay valid across versions.
    assert (
        hash_secret("right") == "27042f4e6eca7d0b2a7ee4026df2ecfa51d3339e6d122aa099118ecd8563bad9"
    )
    assert hash_secret("right") != hash_secret("wrong")
    assert secret_matches(stored, "right")
    assert not secret_matches(stored, "wrong")
    assert not stored.is_revoked


def test_scopes_are_parsed_by_name_and_an_unknown_one_is_named() -> None:
    assert parse_scopes([" usage:write", "quota:check ", "usage:write"]) == {
        Scope.USAGE_WRITE,
        Scope.QUOTA_CHECK,
    }
    assert parse_scopes([]) == frozenset()
    with pytest.raises(ValueError, match="unknown scope 'usage:read'") as refused:
        parse_scopes(["usage:write", " usage:read "])
    assert str(refused.value).endswith(
        "known scopes: usage:write, quota:check, billing:admin, metrics:read"
    )


def test_a_key_for_one_org_acts_only_for_it() -> None:
    everywhere = ApiKeyCaller("k1")
    assert everywhere.may_act_for("acme")
    everywhere.require_org("acme")
    one = ApiKeyCaller("k2", org_id="acme")
    assert one.may_act_for("acme")
    assert not one.may_act_for("globex")
    one.require_org("acme")
    with pytest.raises(Forbidden, match="restricted to org 'acme'; the request names 'globex'"):
        one.require_org("globex")

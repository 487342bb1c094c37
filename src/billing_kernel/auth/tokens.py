"""User tokens: JWTs signed with the configured HS256 secret, or by an identity provider whose
public keys (RS256/ES256) come from its JWKS URL (Supabase, Auth0, ...). `sub` is the user id."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
import jwt

from billing_kernel.auth.rules import User
from billing_kernel.common.validation import validate_id
from billing_kernel.config import Settings
from billing_kernel.errors import InvalidInput, Unauthenticated

LEEWAY = timedelta(seconds=10)
"""Clock difference tolerated on `exp` and `nbf`."""
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]


class TokenVerifier:
    """Verifies user tokens; `alg: none` and any algorithm not configured are refused."""

    def __init__(self, settings: Settings) -> None:
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300)
            if settings.jwks_url
            else None
        )
        self._secret = settings.signing_secret()

    async def verify(self, token: str) -> User:
        try:
            if self._jwks is not None:
                # The key set is fetched (and cached) with blocking I/O: off the event loop.
                signing_key = await anyio.to_thread.run_sync(
                    self._jwks.get_signing_key_from_jwt, token
                )
                key: Any = signing_key.key
                algorithms = ASYMMETRIC_ALGORITHMS
            else:
                key, algorithms = self._secret, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        try:
            return User(user_id=validate_id(claims["sub"], "sub"))
        except InvalidInput as exc:
            raise Unauthenticated(f"the token's subject is not a valid user id: {exc}") from None


def issue_token(secret: str, user_id: str, now: datetime, ttl: timedelta) -> str:
    """An HS256 user token, for development and tests."""
    claims = {"sub": user_id, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")

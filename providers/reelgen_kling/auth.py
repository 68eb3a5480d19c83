"""Kling authentication: a cached HS256 JWT, re-signed before expiry and after 1003/1004.

Implemented as an ``httpx.Auth`` flow so the "re-sign and retry once" rule lives next to the
signing, not in every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import httpx
import jwt

from .wire_errors import TOKEN_CODES, business_code

TOKEN_LIFETIME = 1800
NOT_BEFORE_MARGIN = 5
REFRESH_BEFORE = 300


class KlingAuth(httpx.Auth):
    """``Authorization: Bearer <jwt>`` from an access/secret key pair, or a plain API key."""

    requires_response_body = True

    def __init__(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        api_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key and not (access_key and secret_key):
            raise ValueError("KlingAuth needs access_key and secret_key, or api_key")
        self._access_key = access_key
        self._secret_key = secret_key
        self._api_key = api_key
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self.signed = 0  # how many tokens were signed (tests and --debug read it)

    def __repr__(self) -> str:  # never show keys
        return "KlingAuth(<redacted>)"

    def token(self, *, fresh: bool = False) -> str:
        if self._api_key and not (self._access_key and self._secret_key):
            return self._api_key
        now = self._clock()
        if fresh or self._token is None or now >= self._expires - REFRESH_BEFORE:
            assert self._access_key and self._secret_key
            self._token = jwt.encode(
                {
                    "iss": self._access_key,
                    "exp": int(now) + TOKEN_LIFETIME,
                    "nbf": int(now) - NOT_BEFORE_MARGIN,
                },
                self._secret_key,
                algorithm="HS256",
                headers={"alg": "HS256", "typ": "JWT"},
            )
            self._expires = now + TOKEN_LIFETIME
            self.signed += 1
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401 and business_code(response) in TOKEN_CODES:
            request.headers["Authorization"] = f"Bearer {self.token(fresh=True)}"
            yield request

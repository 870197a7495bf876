"""Bearer-token auth of the /v1 routes (when ``DCES_API_TOKEN`` is set): a middleware that
refuses before the body is read, and a dependency that declares the scheme in ``/docs``."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import Svc
from app.api.problem_responses import send_problem
from app.problems import Unauthorized

_bearer = HTTPBearer(auto_error=False, description="Set when the server has DCES_API_TOKEN.")


def require_token(
    svc: Svc, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Every /v1 route: with DCES_API_TOKEN set, 'Authorization: Bearer <token>' must match.
    :class:`BearerAuthMiddleware` checks it first; this declares the scheme in /docs."""
    expected = svc.settings.api_token
    if expected is not None and not _token_matches(
            credentials.credentials if credentials is not None else "", expected):
        raise _unauthorized()


class BearerAuthMiddleware:
    """Refuses a /v1 request without the bearer token (401) before its body is read: an
    unauthenticated caller must not make the service receive and parse megabytes."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] + "/").startswith("/v1/"):
            scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not _token_matches(given, self.token):
                await send_problem(_unauthorized(), scope, send)
                return
        await self.app(scope, receive, send)


def _token_matches(given: str, expected: SecretStr) -> bool:
    return secrets.compare_digest(given.encode(), expected.get_secret_value().encode())


def _unauthorized() -> Unauthorized:
    return Unauthorized("missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                        "with the server's DCES_API_TOKEN")

"""Bearer-token auth of the /v1 routes, and tenants.

With ``DCES_API_TOKEN`` set, every /v1 route needs that token; with ``DCES_API_TOKENS_FILE``, one
of the file's tokens, and the token's tenant owns the runs it creates. A middleware refuses a
wrong token before the body is read; :func:`require_token`, a dependency of every /v1 route,
names the caller's tenant and is the ONE place that keeps tenants apart: a path naming another
tenant's run (and so its rounds, uploads, reference, feedback) or job answers 404, exactly as a
run that does not exist. The routes that list or create runs and jobs pass the tenant on to the
store (:data:`Tenant`). With one token or none there is no tenant check and every run is seen.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.checks import check_params
from app.api.deps import Svc
from app.api.problem_responses import send_problem
from app.problems import NotFound, Unauthorized

_bearer = HTTPBearer(auto_error=False, description=(
    "Set when the server has DCES_API_TOKEN (or DCES_API_TOKENS_FILE: one token per tenant)."))


def require_token(
    request: Request, svc: Svc,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _params: Annotated[None, Depends(check_params)],
) -> str | None:
    """Every /v1 route: the caller's tenant (None: tenants are off, every run is visible).
    With a token set, 'Authorization: Bearer <token>' must be one of them
    (:class:`BearerAuthMiddleware` checks it first; this declares the scheme in /docs). The
    path's ids are checked first (:func:`check_params`): an id no database can hold is a 422,
    never a failed lookup."""
    tokens = svc.settings.api_tokens()
    if not tokens:
        return None
    tenant = tenant_of(credentials.credentials if credentials is not None else "", tokens)
    if tenant is None:
        raise _unauthorized(svc.settings.tenants)
    if not svc.settings.tenants:
        return None
    run_id, job_id = request.path_params.get("run_id"), request.path_params.get("job_id")
    if run_id is not None and svc.runs.run_tenant(run_id) != tenant:
        raise NotFound(f"run {run_id!r} does not exist")
    if job_id is not None and svc.jobs.job_tenant(job_id) != tenant:
        raise NotFound(f"job {job_id!r} does not exist")
    return tenant


# The caller's tenant, for the routes that create or list runs and jobs (cached per request:
# the same dependency as the routers' own).
Tenant = Annotated[str | None, Depends(require_token)]


class BearerAuthMiddleware:
    """Refuses a /v1 request without a valid bearer token (401) before its body is read: an
    unauthenticated caller must not make the service receive and parse megabytes."""

    def __init__(self, app: ASGIApp, tokens: Sequence[tuple[SecretStr, str]],
                 tenants: bool = False) -> None:
        self.app = app
        self.tokens = tokens
        self.tenants = tenants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] + "/").startswith("/v1/"):
            scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or tenant_of(given, self.tokens) is None:
                await send_problem(_unauthorized(self.tenants), scope, send)
                return
        await self.app(scope, receive, send)


def tenant_of(given: str, tokens: Sequence[tuple[SecretStr, str]]) -> str | None:
    """The tenant of the matching token, comparing with every token in constant time."""
    found = None
    for token, tenant in tokens:
        if secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
            found = tenant
    return found


def _unauthorized(tenants: bool) -> Unauthorized:
    whose = "your tenant's token (DCES_API_TOKENS_FILE)" if tenants else \
        "the server's DCES_API_TOKEN"
    return Unauthorized(f"missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                        f"with {whose}")

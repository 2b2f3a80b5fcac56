"""API-key authentication and role checks as FastAPI dependencies.

Keys arrive as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; both schemes are
declared in the OpenAPI document. Every authenticated route also spends the caller's
rate-limit budget (per key, or per address for keyless callers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from aistack.api.deps import runtime_of
from aistack.auth.keys import AUTH_OFF, OPEN_V1, PERMISSION_ACTIONS, Permission, Principal
from aistack.errors import Forbidden, RateLimited, Unauthorized
from aistack.runtime import Runtime

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearerKey", description="`Authorization: Bearer <key>`"
)
header_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader", description="`X-API-Key`"
)
CHALLENGE = 'Bearer realm="aistack"'

PrincipalDependency = Callable[..., Awaitable[Principal]]


def client_address(request: Request) -> str:
    """The peer address (a trusted proxy's X-Forwarded-For has been applied by the server)."""
    return request.client.host if request.client else "unknown"


async def spend_budget(runtime: Runtime, who: str) -> None:
    wait = await runtime.limiter.retry_after(who)
    if wait is not None:
        raise RateLimited(
            f"too many requests from {who}; retry in {wait} s", {"Retry-After": str(wait)}
        )


async def identify(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    header_key: str | None = Security(header_scheme),
) -> Principal | None:
    """The caller's principal; None when auth is on and no key came. A bad key is a 401."""
    runtime = runtime_of(request)
    if not runtime.settings.auth:
        return AUTH_OFF
    key = bearer.credentials if bearer is not None else header_key
    if not key:
        return None
    key = key.strip()
    # A recently verified key is answered from memory; only a miss reads the database.
    found = runtime.keys.cached(key) or await run_in_threadpool(runtime.keys.verify, key)
    if found is None:
        await spend_budget(runtime, client_address(request))  # slows down guessing
        raise Unauthorized(
            "the API key is not valid (unknown or revoked)",
            {"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'},
        )
    return Principal.for_key(found)


async def missing_key(runtime: Runtime, request: Request) -> Unauthorized:
    await spend_budget(runtime, client_address(request))
    return Unauthorized(
        "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        {"WWW-Authenticate": CHALLENGE},
    )


def authorize(
    permission: Permission,
    open_when: Callable[[Runtime], bool] | None = None,
    action: str | None = None,
) -> PrincipalDependency:
    """A dependency yielding the caller, who must hold ``permission``.

    ``open_when(runtime)`` true lets keyless callers through with predict rights alone
    (the 2020 v1 routes under AISTACK_V1_OPEN). ``action`` words the 403 for routes whose
    permission is borrowed (model details need the read-all role).
    """
    refused = action or PERMISSION_ACTIONS[permission]

    async def dependency(request: Request, caller: Principal | None = Security(identify)):
        runtime = runtime_of(request)
        if caller is None:
            if open_when is None or not open_when(runtime):
                raise await missing_key(runtime, request)
            caller = OPEN_V1
        if not caller.can(permission):
            raise Forbidden(f"the key {caller.name!r} (role {caller.role}) may not {refused}")
        await spend_budget(runtime, caller.key_id or client_address(request))
        request.state.principal = caller
        return caller

    return dependency


def v1_is_open(runtime: Runtime) -> bool:
    return runtime.settings.v1_open

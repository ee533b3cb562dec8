"""The FastAPI application: the library behind HTTP, API keys and limits, nothing more.

`create_app()` is what `counterfake serve` runs in each worker. Each worker holds its own
matcher, loaded from the store at start-up and following the store's change log, so an entry
added through one worker is matched by every worker within the matcher's refresh interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core import Counterfake
from ..errors import (
    AccessError,
    ConflictError,
    CounterfakeError,
    DatabaseError,
    MediaError,
    NotFoundError,
    UnavailableError,
)
from ..settings import Settings, load_settings
from .auth import KeyCache
from .fetch import Fetcher, parse_networks
from .uploads import ENVELOPE, Hasher

__all__ = ["create_app"]

access_log = logging.getLogger("counterfake.access")
log = logging.getLogger("counterfake.service")

_OMM_PREFIXES: Final = ("/m/", "/h/", "/c/")
_STATUS: Final = {
    "missing_key": 401,
    "invalid_key": 401,
    "input_too_large": 413,
    "image_too_large": 413,
    "unsupported_format": 415,
}


def _status_for(exc: CounterfakeError) -> int:
    if exc.code in _STATUS:
        return _STATUS[exc.code]
    if isinstance(exc, AccessError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, UnavailableError | DatabaseError):
        return 503
    return 400


def _error(request: Request | str, status: int, code: str, message: str) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    path = request if isinstance(request, str) else request.url.path
    if path.startswith(_OMM_PREFIXES):
        body["message"] = message  # OpenMediaMatch clients read a top-level message
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


class _Edge:
    """Where requests come in: caps every body (JSON too) at `limit` bytes, counted while it
    streams; logs method, path (never the query string: it can hold signals), status and time;
    tags responses with the worker that served them."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self._app = app
        self._limit = limit
        self._worker = str(os.getpid()).encode()

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Any, send: Callable[..., Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        received = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal received
            message: MutableMapping[str, Any] = await receive()
            received += len(message.get("body", b""))
            if received > self._limit:
                raise MediaError(
                    f"the request body exceeds {self._limit} bytes", code="input_too_large"
                )
            return message

        async def tagged(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-counterfake-worker", self._worker),
                ]
            await send(message)

        try:
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self._limit:
                message = f"the request body is {int(declared)} bytes; the limit is {self._limit}"
                refusal = _error(scope["path"], 413, "input_too_large", message)
                await refusal(scope, receive, tagged)
            else:
                await self._app(scope, counted, tagged)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service over the store the settings name (COUNTERFAKE_* variables by default)."""
    settings = settings or load_settings()
    root = logging.getLogger("counterfake")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        core = Counterfake(settings)
        app.state.core = core
        app.state.keys = KeyCache(core.store)
        core.lookup_signal("pdq", "0" * 64)  # loads the index and compiles its kernels now
        app.state.hasher = Hasher(concurrency=settings.hash_concurrency, queue=settings.hash_queue)
        app.state.fetcher = Fetcher(
            enabled=settings.fetch_urls,
            allow=parse_networks(settings.fetch_allow),
            timeout=settings.fetch_timeout,
            max_bytes=settings.max_bytes,
        )
        app.state.started_at = time.time()
        try:
            yield
        finally:
            core.close()

    from . import omm, routes

    app = FastAPI(
        title="Counterfake",
        summary="Hash banks and matching for non-consensual intimate images and their fakes.",
        version=_version(),
        lifespan=lifespan,
    )
    app.include_router(routes.router)
    app.include_router(omm.router)

    @app.exception_handler(CounterfakeError)
    async def _counterfake_error(request: Request, exc: CounterfakeError) -> JSONResponse:
        return _error(request, _status_for(exc), exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _error(request, 422, "invalid_request", problems[:2000])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, CounterfakeError):  # FastAPI wraps body-reading errors
            return await _counterfake_error(request, exc.__cause__)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "input_too_large"}
        return _error(
            request, exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return _error(request, 500, "internal_error", "unexpected server error; see the log")

    app.add_middleware(_Edge, limit=settings.max_bytes + ENVELOPE)
    return app


def _version() -> str:
    from importlib.metadata import version

    return version("counterfake")

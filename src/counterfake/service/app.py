"""The FastAPI application: the library behind HTTP, API keys and limits, nothing more.

`create_app()` is what `counterfake serve` runs in each worker. Each worker holds its own
matcher, loaded from the store at start-up and following the store's change log, so an entry
added through one worker is matched by every worker within the matcher's refresh interval.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._memory import release_freed_memory
from .._warnings import log_warnings
from ..core import Counterfake
from ..errors import (
    CounterfakeError,
    InputError,
    MediaError,
)
from ..model import ApiKey
from ..settings import Settings, load_settings
from .auth import KeyCache, authenticate, secret_of
from .fetch import Fetcher, parse_networks
from .limits import BucketTable, RateLimiter
from .statuses import OMM_PREFIXES, status_for
from .uploads import ENVELOPE, Hasher

__all__ = ["create_app"]

access_log = logging.getLogger("counterfake.access")
log = logging.getLogger("counterfake.service")


def _error(
    request: Request | str,
    status: int,
    code: str,
    message: str,
    detail: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {**(detail or {}), "code": code, "message": message}}
    path = request if isinstance(request, str) else request.url.path
    if path.startswith(OMM_PREFIXES):
        body["message"] = message  # OpenMediaMatch clients read a top-level message
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


#: Routes that take an image body (up to max_bytes); every other body is JSON.
_IMAGE_ROUTES: Final = ("/v1/lookup", "/v1/hash", "/m/lookup", "/h/hash")
#: Answered without a key: liveness, readiness and the API's own documentation.
_PUBLIC: Final = (
    "/status/live",
    "/status/ready",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/static-offline-docs/",
    "/protect",  # the protect page, and the keyless intake it sends to (when enabled)
    "/v1/intake",
    "/review",  # the review pages: a session cookie, opened by signing in with a key
)


#: Keyless routes no rate applies to: health checks and the API's documentation.
_UNLIMITED: Final = ("/status/", "/docs", "/redoc", "/openapi.json", "/static-offline-docs/")


def _too_fast(path: str, wait: int, who: str) -> JSONResponse:
    """429 rate_limited, saying when to come back."""
    response = _error(path, 429, "rate_limited", f"{who} is sending too fast; retry in {wait} s")
    response.headers["Retry-After"] = str(wait)
    return response


def _printable(text: str) -> str:
    """Control characters (a newline in a decoded path) escaped, so that no client can forge
    a log line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Edge:
    """Where requests come in, before anything reads a body:
    - the API key is checked first (a keyless or unknown key costs no body read);
    - bodies are capped per route (images at `limit`, JSON far lower), counted while they
      stream, and must arrive within `body_timeout`; one client address may send at most
      `client_uploads` bodies at once; a key (an address, on keyless routes) over its request
      rate is answered 429 at once;
    - a path with a trailing slash is served as the path without it (no redirect that would
      echo the client's Host);
    - a client that goes away mid-body is one log line (status 499), not a server error;
    - logs method, path (escaped; never the query string: it can hold signals), status and
      time, and tags responses with the worker that served them."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        settings: Settings,
        rate_table: Path | None = None,
    ) -> None:
        self._app = app
        self._image_limit = settings.max_bytes + ENVELOPE
        self._json_limit = settings.json_max_bytes
        # A signature line is about 100 KB (2,048 keypoints in base64).
        self._intake_limit = settings.intake_max_photos * 128 * 1024 + 4096
        self._timeout = settings.body_timeout
        self._per_client = settings.client_uploads
        buckets = BucketTable(rate_table)
        self._per_key = RateLimiter(settings.rate_limit, settings.rate_burst, buckets, "key")
        self._per_address = RateLimiter(
            settings.address_rate_limit, settings.rate_burst, buckets, "address"
        )
        self._sending: dict[str, int] = {}
        self._worker = str(os.getpid()).encode()
        self._anonymous: ApiKey | None = None
        self._anonymous_from = parse_networks(settings.hma_anonymous_networks)
        if settings.hma_anonymous_tenant:
            self._anonymous = ApiKey(
                key_id="anonymous",
                tenant=settings.hma_anonymous_tenant,
                scopes=frozenset({"match", "curate"}),
                name="keyless HMA client",
                created_at=datetime.now(UTC),
            )

    def _limit(self, method: str, path: str) -> int:
        if method == "POST" and (path in _IMAGE_ROUTES or path.endswith("/content")):
            return self._image_limit
        if path.endswith("/signals/batch"):
            return self._json_limit * 32
        if path == "/v1/intake":
            return self._intake_limit
        return self._json_limit

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Any, send: Callable[..., Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        received = 0
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        limit = self._limit(scope["method"], path)
        deadline = time.monotonic() + self._timeout
        client = (scope.get("client") or ("?", 0))[0]

        body_done = False

        async def counted() -> MutableMapping[str, Any]:
            # While the body arrives: its deadline, its cap, and a client gone is an abort.
            # After it (a streamed response listening for a disconnect): pass through.
            nonlocal received, body_done
            if body_done:
                done: MutableMapping[str, Any] = await receive()
                return done
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InputError(
                    f"the request body did not arrive within {self._timeout:g} s",
                    code="body_timeout",
                )
            try:
                with anyio.fail_after(remaining):
                    message: MutableMapping[str, Any] = await receive()
            except TimeoutError:
                raise InputError(
                    f"the request body did not arrive within {self._timeout:g} s",
                    code="body_timeout",
                ) from None
            if message["type"] == "http.disconnect":
                raise InputError("the client went away", code="client_disconnected")
            received += len(message.get("body", b""))
            if received > limit:
                raise MediaError(f"the request body exceeds {limit} bytes", code="input_too_large")
            body_done = not message.get("more_body", False)
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

        sending = False
        try:
            refusal = self._refusal(scope, path, limit, client)
            if refusal is not None:
                await refusal(scope, receive, tagged)
                return
            sending = _has_body(dict(scope["headers"]))
            if sending:
                self._sending[client] = self._sending.get(client, 0) + 1
            await self._app(scope, counted, tagged)
        finally:
            if sending:
                self._sending[client] -= 1
                if not self._sending[client]:
                    del self._sending[client]
            if received > 4 * 1024 * 1024:
                release_freed_memory()  # a large body's buffers go back to the system
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    _printable(scope["method"]),
                    _printable(path),
                    status,
                    (time.perf_counter() - started) * 1000,
                )

    def _anonymous_allowed(self, path: str, client: str) -> bool:
        """A keyless call on an HMA route from an allowed network, when the operator set
        `hma_anonymous_tenant` (HMA clients such as Coop send no key)."""
        if self._anonymous is None or not path.startswith(OMM_PREFIXES):
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self._anonymous_from)

    def _refusal(
        self, scope: MutableMapping[str, Any], path: str, limit: int, client: str
    ) -> JSONResponse | None:
        """An answer given before the body is read: no key, too large, too many at once."""
        headers = dict(scope["headers"])
        if not path.startswith(_PUBLIC) and path != "/":
            secret = secret_of(headers)
            try:
                if not secret and self._anonymous_allowed(path, client):
                    key = self._anonymous
                else:
                    key = authenticate(scope["app"].state.keys, secret)
            except CounterfakeError as exc:
                return _error(path, status_for(exc, path), exc.code, exc.message)
            scope.setdefault("state", {})["api_key"] = key
            if key is None or key is self._anonymous:
                wait = self._per_address.take(client)
            else:
                wait = self._per_key.take(key.key_id, key.rate_limit)
            if wait:
                return _too_fast(path, wait, "this key")
        elif not path.startswith(_UNLIMITED):
            wait = self._per_address.take(client)
            if wait:
                return _too_fast(path, wait, "this address")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            message = f"the request body is {int(declared)} bytes; the limit is {limit}"
            return _error(path, 413, "input_too_large", message)
        if _has_body(headers) and self._sending.get(client, 0) >= self._per_client:
            message = f"this address is sending {self._per_client} bodies already; retry"
            return _error(path, 429, "too_many_uploads", message)
        return None


#: How often each worker looks for an exchange that is due (one worker takes each fetch).
_EXCHANGE_POLL: Final = 0.25


def _fetch_exchanges(core: Counterfake, stop: threading.Event) -> None:
    """The background fetcher: due exchanges are fetched by whichever worker leases them
    first. A failure is recorded on its exchange and logged by code (never a credential)."""
    while not stop.wait(_EXCHANGE_POLL):
        try:
            core.fetch_due_exchanges()
        except CounterfakeError as exc:  # the store itself failed; try again at the next poll
            log.warning("exchange fetcher: %s", exc.code)


#: How often kept review images past their retention are looked for and deleted.
_PURGE_EVERY: Final = 5.0


def _deliver_events(core: Counterfake, stop: threading.Event) -> None:
    """The background deliverer: due webhook deliveries go out from whichever worker leases
    them (a failure waits with backoff; logged by code, never a secret), and kept review
    images past their retention are deleted."""
    purged_at = 0.0
    while not stop.wait(_EXCHANGE_POLL):
        try:
            while core.deliver_due_events():
                pass
            if time.monotonic() - purged_at > _PURGE_EVERY:
                core.purge_case_images()
                purged_at = time.monotonic()
        except CounterfakeError as exc:
            log.warning("webhook deliverer: %s", exc.code)


def _has_body(headers: dict[bytes, bytes]) -> bool:
    declared = headers.get(b"content-length", b"0")
    return (declared.isdigit() and int(declared) > 0) or b"transfer-encoding" in headers


def create_app(settings: Settings | None = None, *, rate_table: Path | None = None) -> FastAPI:
    """The service over the store the settings name (COUNTERFAKE_* variables by default).
    `rate_table` is the rate buckets' table the workers of one run share (`BucketTable`)."""
    settings = settings or load_settings()
    root = logging.getLogger("counterfake")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    log_warnings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        core = Counterfake(settings)
        app.state.core = core
        app.state.keys = KeyCache(core.store)
        core.lookup_signal("pdq", "0" * 64)  # loads the index and compiles its kernels now
        core.matcher.follow()  # catch-up and index rebuilds off the request path
        app.state.hasher = Hasher(concurrency=settings.hash_concurrency, queue=settings.hash_queue)
        app.state.fetcher = Fetcher(
            enabled=settings.fetch_urls,
            allow=parse_networks(settings.fetch_allow),
            timeout=settings.fetch_timeout,
            max_bytes=settings.max_bytes,
        )
        app.state.started_at = time.time()
        stop = threading.Event()
        fetcher = threading.Thread(
            target=_fetch_exchanges, args=(core, stop), name="exchanges", daemon=True
        )
        fetcher.start()
        deliverer = threading.Thread(
            target=_deliver_events, args=(core, stop), name="webhooks", daemon=True
        )
        deliverer.start()
        try:
            yield
        finally:
            stop.set()
            fetcher.join(timeout=30)
            deliverer.join(timeout=30)
            core.close()

    from . import intake, omm, review, review_pages, routes

    app = FastAPIOffline(  # Swagger UI served from the package: /docs works offline
        title="Counterfake",
        summary="Hash banks and matching for non-consensual intimate images and their fakes.",
        version=_version(),
        lifespan=lifespan,
    )
    app.include_router(routes.router)
    app.include_router(omm.router)
    app.include_router(intake.router)
    app.include_router(review.router)
    app.include_router(review_pages.router)

    @app.exception_handler(CounterfakeError)
    async def _counterfake_error(request: Request, exc: CounterfakeError) -> JSONResponse:
        status = status_for(exc, request.url.path)
        return _error(request, status, exc.code, exc.message, exc.to_dict())

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

    app.add_middleware(_Edge, settings=settings, rate_table=rate_table)
    return app


def _version() -> str:
    from importlib.metadata import version

    return version("counterfake")

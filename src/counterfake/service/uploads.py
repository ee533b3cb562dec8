"""Image bytes from a request, held in memory only, and hashed under a concurrency limit.

Starlette's own form parsing spools files over 1 MB to a temporary file on disk; we parse
multipart bodies ourselves, into memory, so that image bytes are never written anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final, TypeVar

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..errors import InputError, MediaError, UnavailableError
from ..hashing import ImageHashes
from ..media import Limits

__all__ = [
    "ENVELOPE",
    "Hasher",
    "Upload",
    "hash_request",
    "read_upload",
    "request_image",
    "run_image_work",
]

T = TypeVar("T")

#: Room for multipart headers and boundaries around the image itself.
ENVELOPE: Final = 64 * 1024
#: A multipart text field (HMA's `metadata`, `note`) is read up to this many bytes.
_FIELD_MAX: Final = 16 * 1024


@dataclasses.dataclass(frozen=True)
class Upload:
    data: bytes
    field: str | None = None  # the multipart field name, when multipart
    filename: str | None = None
    #: The multipart body's other (text) fields, such as HMA's `metadata` and `note`.
    fields: dict[str, str] = dataclasses.field(default_factory=dict)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise MediaError(
            f"the request body is {declared} bytes; the limit is {limit}", code="input_too_large"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise MediaError(f"the request body exceeds {limit} bytes", code="input_too_large")
    return bytes(body)


def _parse_multipart(body: bytes, boundary: bytes) -> list[Upload]:
    parts: list[Upload] = []
    headers: dict[str, str] = {}
    field = bytearray()
    value = bytearray()
    data = bytearray()

    def on_header_field(buf: bytes, start: int, end: int) -> None:
        field.extend(buf[start:end])

    def on_header_value(buf: bytes, start: int, end: int) -> None:
        value.extend(buf[start:end])

    def on_header_end() -> None:
        headers[field.decode("latin-1").lower()] = value.decode("utf-8", "replace")
        field.clear()
        value.clear()

    def on_part_data(buf: bytes, start: int, end: int) -> None:
        data.extend(buf[start:end])

    def on_part_end() -> None:
        _, options = parse_options_header(headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace") or None
        filename = options.get(b"filename")
        parts.append(
            Upload(bytes(data), name, filename.decode("utf-8", "replace") if filename else None)
        )
        headers.clear()
        data.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise InputError(
            "malformed multipart body: its boundaries or part headers cannot be read",
            code="invalid_multipart",
        ) from exc
    return parts


async def read_upload(request: Request, limits: Limits) -> Upload:
    """The one image in the request: a raw body (image/*, application/octet-stream) or the
    one file of a multipart/form-data body."""
    body = await _read_body(request, limits.max_bytes + ENVELOPE)
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise InputError("multipart body without a boundary", code="invalid_multipart")
        parts = _parse_multipart(body, boundary)
        files = [p for p in parts if p.filename is not None]
        if len(files) != 1:
            raise InputError(
                f"send exactly one file per request; got {len(files)}", code="invalid_multipart"
            )
        fields = {
            p.field: p.data[:_FIELD_MAX].decode("utf-8", "replace")
            for p in parts
            if p.filename is None and p.field
        }
        upload = dataclasses.replace(files[0], fields=fields)
    else:
        upload = Upload(body)
    if len(upload.data) > limits.max_bytes:
        raise MediaError(
            f"the image is {len(upload.data)} bytes; the limit is {limits.max_bytes}",
            code="input_too_large",
        )
    return upload


class Hasher:
    """Runs image work (hashing, lookups, adds) on worker threads, at most `concurrency` at
    once; beyond `queue` waiting uploads a request is refused with `busy` rather than left to
    time out."""

    def __init__(self, *, concurrency: int, queue: int) -> None:
        self._limiter = anyio.CapacityLimiter(max(1, concurrency))
        self._queue = max(0, queue)
        self._waiting = 0

    async def run(self, work: Callable[[], T]) -> T:
        """Any image work (hashing, local features, verification) under the same limits."""
        if self._waiting >= self._queue + self._limiter.total_tokens:
            raise UnavailableError("too many images are being hashed; retry shortly", code="busy")
        self._waiting += 1
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._limiter)
        finally:
            self._waiting -= 1


async def hash_request(
    request: Request, url: str | None, *, dihedral: bool = False, field: str | None = None
) -> ImageHashes:
    """The hashes of the request's image (see `request_image`)."""
    data = await request_image(request, url, field=field)
    core = request.app.state.core
    return await run_image_work(request, lambda: core.hash(data, dihedral=dihedral))


async def run_image_work(request: Request, work: Callable[[], T]) -> T:
    """Run CPU work on an image on the worker's hashing threads (see `Hasher`)."""
    hasher: Hasher = request.app.state.hasher
    return await hasher.run(work)


async def request_image(request: Request, url: str | None, *, field: str | None = None) -> bytes:
    """The request's image: fetched from `url` (if the operator allows it) or read from the
    body; a multipart file must then be named `field`, when one is given."""
    if url:
        data: bytes = await request.app.state.fetcher.fetch(url)
    else:
        upload = await read_upload(request, request.app.state.core.limits)
        if field is not None and upload.field not in (None, field):
            raise InputError(
                f"the file field must be named {field!r} (the content type); got {upload.field!r}",
                code="unsupported_content_type",
            )
        data = upload.data
    return data

"""The derivative shortlist split by photo over shard processes, and a worker's way to ask them.

At millions of protected photos the shortlist no longer fits in every service worker. A shard
(`counterfake shard K/N`) is a `Matcher` given a `part`: it holds the shortlists of the photos
a hash of their entry id puts in part K of N (`store.signatures.part_of`), follows the store's
change log like any matcher, and answers candidate queries on a socket (`serve_shard`). A
worker given `Shards` holds no shortlist: for a derivative query it sends the query's views'
descriptors to every shard at once, takes their candidates and verifies the best ones itself,
reading their signatures from the store.

The wire: `multiprocessing.connection` messages (length-framed), after its mutual HMAC
challenge with the shards' shared key, so only holders of the key are answered. A request is
a 4-byte length, a JSON header (`banks`, and each view's descriptor count) and the
descriptors' bytes; the answer is JSON. Nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Collection, Sequence
from multiprocessing import AuthenticationError
from multiprocessing.connection import (
    Client,
    Connection,
    answer_challenge,
    deliver_challenge,
)
from pathlib import Path
from typing import Any, Final

import numpy as np

from .errors import AccessError, UnavailableError, UsageError
from .matching import Matcher

__all__ = ["Shards", "parse_address", "secret", "serve_shard"]

log = logging.getLogger("counterfake.shards")

#: Largest request a shard reads: a query has at most four views of about 1,700 descriptors.
_MAX_REQUEST: Final = 4 * 1024 * 1024
_MAX_VIEWS: Final = 16
_DESCRIPTOR_BYTES: Final = 32


def parse_address(address: str) -> tuple[str, str | tuple[str, int]]:
    """`unix:PATH` or `HOST:PORT` (`[::1]:PORT` for IPv6) to a socket family and address."""
    address = address.strip()
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a path")
        return "AF_UNIX", path
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is neither unix:PATH nor HOST:PORT")
    return "AF_INET6" if ":" in host else "AF_INET", (host, int(port))


def secret(key: str) -> bytes:
    """The shards' shared key as the HMAC challenge takes it; `missing_key` when unset."""
    if not key:
        raise AccessError("the shards' key is not set (COUNTERFAKE_SHARD_KEY)", code="missing_key")
    return key.encode()


# the shard's side ------------------------------------------------------------------------------


def _request(data: bytes) -> tuple[list[np.ndarray], list[str] | None]:
    """A request's views and banks; ValueError for anything malformed."""
    if len(data) < 4:
        raise ValueError("shorter than its header's length")
    (length,) = struct.unpack(">I", data[:4])
    header = json.loads(data[4 : 4 + length].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("the header is not an object")
    counts, banks = header.get("views"), header.get("banks")
    if (
        not isinstance(counts, list)
        or len(counts) > _MAX_VIEWS
        or not all(isinstance(c, int) and c >= 0 for c in counts)
    ):
        raise ValueError("views must be a list of descriptor counts")
    if banks is not None and not (
        isinstance(banks, list) and all(isinstance(b, str) for b in banks)
    ):
        raise ValueError("banks must be null or a list of names")
    body = data[4 + length :]
    if len(body) != sum(counts) * _DESCRIPTOR_BYTES:
        raise ValueError("the descriptors' bytes do not match the views' counts")
    flat = np.frombuffer(body, dtype=np.uint8).reshape(-1, _DESCRIPTOR_BYTES)
    views, at = [], 0
    for count in counts:
        views.append(flat[at : at + count])
        at += count
    return views, banks


def _answer(matcher: Matcher, conn: Connection, key: bytes) -> None:
    """One worker's connection: authenticate, then answer its requests until it hangs up."""
    with conn:
        try:
            deliver_challenge(conn, key)
            answer_challenge(conn, key)
        except (AuthenticationError, OSError, EOFError) as exc:
            log.warning("shard: refused a connection (%s)", type(exc).__name__)
            return
        while True:
            try:
                data = conn.recv_bytes(_MAX_REQUEST)
            except (EOFError, OSError):
                return  # hung up, or sent more than a request may hold
            try:
                views, banks = _request(data)
            except (ValueError, UnicodeDecodeError) as exc:
                reply: dict[str, Any] = {
                    "error": {"code": "invalid_shard_request", "message": str(exc)[:200]}
                }
            else:
                try:
                    found = matcher.shortlisted(views, banks)
                    reply = {"candidates": found, "seq": matcher.change_seq}
                except Exception as exc:  # a bug or the store away: the worker says 503
                    log.exception("shard: a query failed")
                    reply = {"error": {"code": "shard_failed", "message": type(exc).__name__}}
            try:
                conn.send_bytes(json.dumps(reply).encode())
            except OSError:
                return


def _listening_socket(address: str) -> socket.socket:
    family, where = parse_address(address)
    sock = socket.socket(getattr(socket, family), socket.SOCK_STREAM)
    if family == "AF_UNIX":
        path = Path(str(where))
        if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
            try:  # a shard still answers there: do not take its place
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(path))
                raise OSError(f"a shard already listens on {path}")
            except ConnectionRefusedError:
                path.unlink()  # left by a shard that died
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(where)
    if family == "AF_UNIX":
        os.chmod(str(where), 0o600)
    sock.listen(128)
    return sock


def serve_shard(
    matcher: Matcher,
    address: str,
    key: str,
    *,
    ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Answer candidate queries on `address` from `matcher` (a `Matcher` given a `part`)
    until `stop` is set; `ready` is called once the socket listens."""
    shared = secret(key)
    stop = stop or threading.Event()
    family, where = parse_address(address)
    with _listening_socket(address) as sock:
        sock.settimeout(0.5)
        if ready is not None:
            ready()
        try:
            while not stop.is_set():
                try:
                    client, _ = sock.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                conn = Connection(client.detach())
                threading.Thread(
                    target=_answer, args=(matcher, conn, shared), name="shard-answer", daemon=True
                ).start()
        finally:
            if family == "AF_UNIX":
                Path(str(where)).unlink(missing_ok=True)


# the worker's side -----------------------------------------------------------------------------


class Shards:
    """The shards a worker asks for derivative candidates, in the order of their parts: shard
    k holds the photos `part_of(entry_id, len(addresses))` gives k. Safe from many threads: each
    thread keeps its own connection to each shard, made when first needed and again after a
    failure."""

    def __init__(self, addresses: Sequence[str], key: str, *, timeout: float = 10.0) -> None:
        self._key = secret(key)
        self._addresses = [a.strip() for a in addresses if a.strip()]
        if not self._addresses:  # else derivative lookups would find nothing, silently
            raise UsageError("COUNTERFAKE_SHARDS names no shard")
        for address in self._addresses:
            try:
                parse_address(address)  # now, not at the first query
            except ValueError as exc:
                raise UsageError(f"COUNTERFAKE_SHARDS: {exc}") from None
        self._timeout = timeout
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self._addresses)

    def _connection(self, number: int) -> Connection:
        held: dict[int, Connection] = self._local.__dict__.setdefault("conns", {})
        if number not in held:
            family, where = parse_address(self._addresses[number])
            held[number] = Client(where, family=family, authkey=self._key)
        return held[number]

    def _unavailable(self, number: int, why: str) -> UnavailableError:
        # Every connection of this thread goes: an answer left unread would be taken for the
        # next request's.
        for conn in self._local.__dict__.pop("conns", {}).values():
            conn.close()
        return UnavailableError(
            f"derivative shard {number} of {len(self)} ({self._addresses[number]}) {why}",
            code="shard_unavailable",
        )

    def shortlisted(
        self, views: Sequence[np.ndarray], banks: Collection[str] | None = None
    ) -> list[tuple[str, int, float, int]]:
        """Every shard's candidates for the views (as `Matcher.shortlisted`), asked at once;
        UnavailableError `shard_unavailable` if any does not answer within the timeout."""
        header = json.dumps(
            {
                "banks": None if banks is None else sorted(banks),
                "views": [int(v.shape[0]) for v in views],
            }
        ).encode()
        body = b"".join(np.ascontiguousarray(v, dtype=np.uint8).tobytes() for v in views)
        request = struct.pack(">I", len(header)) + header + body
        for number in range(len(self)):
            try:
                self._connection(number).send_bytes(request)
            except (OSError, EOFError, AuthenticationError) as exc:
                raise self._unavailable(
                    number, f"cannot be reached ({type(exc).__name__})"
                ) from exc
        deadline = time.monotonic() + self._timeout
        found: list[tuple[str, int, float, int]] = []
        for number in range(len(self)):
            conn = self._connection(number)
            try:
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    raise self._unavailable(number, f"did not answer in {self._timeout:g} s")
                reply = json.loads(conn.recv_bytes())
            except (OSError, EOFError, ValueError) as exc:
                raise self._unavailable(number, f"failed ({type(exc).__name__})") from exc
            if "error" in reply:
                error = reply["error"]
                raise self._unavailable(number, f"refused: {error['code']}: {error['message']}")
            found.extend(
                (str(bank), int(entry_id), float(votes), int(view))
                for bank, entry_id, votes, view in reply["candidates"]
            )
        return found

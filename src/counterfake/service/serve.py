"""Running the service: one Uvicorn server per worker process.

With several workers on Linux (and the BSDs), each worker listens on its own socket bound with
SO_REUSEPORT, so the kernel spreads new connections evenly over the workers. Uvicorn's own
`--workers` shares one listening socket, and whichever worker wakes first accepts a burst of
connections: with keep-alive clients one worker can end up serving nearly all of them (measured
here: 1,900 lookups/s with two workers, the rate of one). Elsewhere we fall back to Uvicorn's.
The workers share one table of rate buckets (`limits.BucketTable`), made here.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import uvicorn

from .._memory import settle_allocator
from .limits import BucketTable

__all__ = ["run"]

APP: Final = "counterfake.service:create_app"
log = logging.getLogger("counterfake.service")


def _options(log_level: str) -> dict[str, Any]:
    # Uvicorn's access log would print query strings, which can hold signals.
    return {"factory": True, "log_level": log_level, "access_log": False, "server_header": False}


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _worker(host: str, port: int, log_level: str, rate_table: Path) -> None:
    settle_allocator()
    from .app import create_app

    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    app = functools.partial(create_app, rate_table=rate_table)
    uvicorn.Server(uvicorn.Config(app, **_options(log_level))).run(sockets=[sock])


def _shard(number: int, count: int, address: str) -> None:
    settle_allocator()
    import threading

    from ..core import Counterfake

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops it

    def ready() -> None:
        log.info("shard %d/%d (process %d) answering", number, count, os.getpid())

    with Counterfake() as core:
        core.serve_shard((number, count), address, ready=ready, stop=stop)


def _start_shards(
    context: multiprocessing.context.SpawnContext, count: int, folder: Path
) -> list[Callable[[], multiprocessing.process.BaseProcess]]:
    """Starters of `count` shard processes answering on sockets in `folder`, and the
    workers' settings to ask them (in this process's environment, which workers inherit)."""
    addresses = [f"unix:{folder / f'shard-{k}.sock'}" for k in range(count)]
    os.environ["COUNTERFAKE_SHARDS"] = ",".join(addresses)
    os.environ["COUNTERFAKE_SHARD_KEY"] = secrets.token_urlsafe(32)

    def starter(k: int) -> Callable[[], multiprocessing.process.BaseProcess]:
        def start() -> multiprocessing.process.BaseProcess:
            process = context.Process(target=_shard, args=(k, count, addresses[k]), daemon=False)
            process.start()
            return process

        return start

    return [starter(k) for k in range(count)]


def _wait_listening(
    folder: Path,
    processes: list[multiprocessing.process.BaseProcess],
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Until every shard listens (it loads its photos first): workers start after them."""
    while not all((folder / f"shard-{k}.sock").exists() for k in range(len(processes))):
        if stopping():
            return
        if any(not p.is_alive() for p in processes):
            raise SystemExit("a shard process exited while loading; see its log above")
        time.sleep(0.1)


def run(host: str, port: int, workers: int, log_level: str = "info", *, shards: int = 0) -> None:
    """Serve until SIGINT or SIGTERM; a worker or shard that dies is replaced."""
    settle_allocator()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="counterfake-shards-") as folder:
        shard_starters = _start_shards(context, shards, Path(folder)) if shards else []
        if (workers == 1 and not shards) or not hasattr(socket, "SO_REUSEPORT"):
            running = [start() for start in shard_starters]
            try:
                _wait_listening(Path(folder), running)
                uvicorn.run(APP, host=host, port=port, workers=workers, **_options(log_level))
            finally:
                _stop(running)
            return
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            # Fails now, clearly, if something listens on the port; SO_REUSEADDR lets a
            # restart bind over the previous run's connections in TIME_WAIT, as workers do.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))

        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

        with BucketTable.shared() as rate_table:

            def start() -> multiprocessing.process.BaseProcess:
                process = context.Process(
                    target=_worker, args=(host, port, log_level, rate_table), daemon=False
                )
                process.start()
                return process

            _supervise(shard_starters, [start] * workers, Path(folder), lambda: stopping)


def _stop(processes: list[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def _supervise(
    shards: list[Callable[[], multiprocessing.process.BaseProcess]],
    workers: list[Callable[[], multiprocessing.process.BaseProcess]],
    folder: Path,
    stopping: Callable[[], bool],
) -> None:
    """Start the shards, then (once they listen) the workers, and keep every one alive until
    `stopping()`; then stop them."""
    starters = shards + workers
    processes = [start() for start in shards]
    try:
        _wait_listening(folder, processes, stopping)
        processes += [start() for start in workers if not stopping()]
        while not stopping():
            time.sleep(0.2)
            for i, process in enumerate(processes):
                if not process.is_alive() and not stopping():
                    role = "shard" if i < len(shards) else "worker"
                    log.error(
                        "%s %s exited with %s; starting another",
                        role,
                        process.pid,
                        process.exitcode,
                    )
                    processes[i] = starters[i]()
    finally:
        _stop(processes)

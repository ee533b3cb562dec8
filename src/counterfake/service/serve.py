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
import signal
import socket
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


def run(host: str, port: int, workers: int, log_level: str = "info") -> None:
    """Serve until SIGINT or SIGTERM; a worker that dies is replaced."""
    settle_allocator()
    if workers == 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, host=host, port=port, workers=workers, **_options(log_level))
        return
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        # Fails now, clearly, if something listens on the port; SO_REUSEADDR lets a restart
        # bind over the previous run's connections in TIME_WAIT, as the workers do.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))

    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_worker, args=(host, port, log_level, rate_table), daemon=False
        )
        process.start()
        return process

    with BucketTable.shared() as rate_table:
        _supervise(start, workers, lambda: stopping)


def _supervise(
    start: Callable[[], multiprocessing.process.BaseProcess],
    workers: int,
    stopping: Callable[[], bool],
) -> None:
    """Keep `workers` started processes alive until `stopping()`, then stop them."""
    processes = [start() for _ in range(workers)]
    try:
        while not stopping():
            time.sleep(0.2)
            for i, process in enumerate(processes):
                if not process.is_alive() and not stopping():
                    log.error(
                        "worker %s exited with %s; starting another", process.pid, process.exitcode
                    )
                    processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

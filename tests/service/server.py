"""A real `counterfake serve` in a subprocess, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

COUNTERFAKE = Path(sys.executable).with_name("counterfake")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`with Server(home) as server:` starts the service and stops it at the end."""

    def __init__(
        self,
        home: Path,
        *,
        workers: int = 1,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        self._workers = workers
        self._args = list(args)
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COUNTERFAKE_")},
            "COUNTERFAKE_HOME": str(home),
            **({"COUNTERFAKE_DATABASE_URL": database_url} if database_url else {}),
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log.open("wb")
        self._process = subprocess.Popen(
            [
                str(COUNTERFAKE),
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self._workers),
                *self._args,
            ],
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                live = httpx.get(f"{self.url}/status/live", timeout=1).status_code == 200
                if live and (self._workers == 1 or self._all_workers_up()):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def _all_workers_up(self) -> bool:
        return self.log.read_text().count("Application startup complete") >= self._workers

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

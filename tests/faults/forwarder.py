"""A TCP forwarder in front of a real PostgreSQL that a test can cut or freeze. While cut,
every open connection is reset and new ones are refused, which is what the service sees while
the database restarts. While frozen, connections stay open and new ones are accepted (this
kernel acknowledges what is sent) but nothing is passed on: a database process that stopped
answering, or a half-dead proxy."""

from __future__ import annotations

import contextlib
import socket
import threading


class Forwarder:
    """`with Forwarder(host, port) as forwarder:` listens on `forwarder.port`."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self.port = 0

    def __enter__(self) -> Forwarder:
        self.restore()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()

    def restore(self) -> None:
        """Listen (again, on the same port) and forward."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and reset every forwarded connection."""
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for sock in self._open:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    sock.close()
                except OSError:
                    pass
            self._open.clear()

    def freeze(self) -> None:
        """Keep every connection open and pass nothing on, either way."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Pass on what was held and go on forwarding."""
        self._flowing.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                server = socket.create_connection(self._target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut while this one was connecting
                    client.close()
                    server.close()
                    return
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()

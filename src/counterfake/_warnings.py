"""Third-party complaints go to our log, never to a user's terminal: an image with a malformed
EXIF block or a corrupt TIFF strip is hashed or refused like any other, and says so in the
service's log at INFO, not in a CLI user's output. Three sources: Python warnings, Pillow's own
logger, and libtiff, which would print from C straight to the process's stderr."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import warnings
from pathlib import Path
from typing import Any, TextIO

__all__ = ["log_c_libraries", "log_warnings"]

_log = logging.getLogger("counterfake.warnings")


def _to_log(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    _log.info("%s: %s", category.__name__, message)


class _Relay(logging.Handler):
    """Another library's log records, as ours at INFO."""

    def emit(self, record: logging.LogRecord) -> None:
        _log.info("%s: %s", record.name, record.getMessage())


def log_warnings() -> None:
    """Send every warning shown and every record of Pillow's logger from now on to the
    `counterfake.warnings` log."""
    warnings.showwarning = _to_log
    pillow = logging.getLogger("PIL")
    if not any(isinstance(handler, _Relay) for handler in pillow.handlers):
        pillow.addHandler(_Relay())
    pillow.propagate = False  # else Python's last-resort handler prints errors to stderr


# libtiff's handler type: void (*)(const char *module, const char *fmt, va_list ap).
_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_installed: list[Any] = []  # the callbacks, kept alive as long as libtiff may call them


def _loaded_libtiff() -> str | None:
    """The path of the libtiff this process's Pillow is linked with (Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.rpartition(" ")[2]
        if "/libtiff" in path:
            return path
    return None


def log_c_libraries() -> None:
    """Route libtiff's warnings and errors to the `counterfake.warnings` log (once; after
    Pillow's C module is loaded). Where libtiff cannot be found, nothing changes."""
    if _installed:
        return
    import PIL._imaging  # noqa: F401  (loads libtiff)

    path = _loaded_libtiff()
    if path is None:
        return
    libtiff = ctypes.CDLL(path)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

    def make(level: str) -> Any:
        def handler(module: bytes | None, fmt: bytes | None, args: int | None) -> None:
            # Runs on whichever thread decodes; nothing here may raise into C.
            try:
                text = ctypes.create_string_buffer(512)
                libc.vsnprintf(text, len(text), fmt or b"", args)
                where = (module or b"libtiff").decode("utf-8", "replace")
                _log.info("libtiff %s: %s: %s", level, where, text.value.decode("utf-8", "replace"))
            except Exception:  # C cannot take it
                pass

        return _HANDLER(handler)

    warning, error = make("warning"), make("error")
    for name, callback in (("TIFFSetWarningHandler", warning), ("TIFFSetErrorHandler", error)):
        setter = getattr(libtiff, name)
        setter.argtypes = [_HANDLER]
        setter.restype = _HANDLER
        setter(callback)
    _installed.extend([warning, error, libtiff, libc])

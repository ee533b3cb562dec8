"""Third-party warnings (Pillow's, on odd files) go to our log, never to a user's terminal:
an image with a malformed EXIF block is hashed like any other, and says so in the service's log
at INFO, not in a CLI user's output."""

from __future__ import annotations

import logging
import warnings
from typing import TextIO

__all__ = ["log_warnings"]

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


def log_warnings() -> None:
    """Send every warning shown from now on to the `counterfake.warnings` log."""
    warnings.showwarning = _to_log

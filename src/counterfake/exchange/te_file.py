"""python-threatexchange's local signal file: the `threatexchange-file` exchange type.

The file (`LocalFileSignalExchangeAPI` in python-threatexchange) is one signal per line,
`<signal type> <value>`, which is also what `counterfake bank export --format te` writes: so a
bank travels both ways. The file is a snapshot of the whole list: what is in it is active, and
an entry this exchange brought that is no longer in it is withdrawn. The stored cursor is the
file's SHA-256, so an unchanged file costs one read. A file with a bad line is refused whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Final

import httpx

from ..errors import FetchError, FormatError
from .follow import Page, bad_page
from .formats import parse_lines

__all__ = ["read_page"]

#: A larger file is refused (10,000,000 PDQ lines are about 690 MB).
_MAX_BYTES: Final = 1024 * 1024 * 1024


def read_page(
    client: httpx.Client,
    config: dict[str, Any],
    credential: str | None,
    position: Any,
    *,
    exchange: str,
) -> Page:
    """The whole file as one snapshot page, or an empty page when it has not changed."""
    path = Path(str(config["path"]))
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise bad_page(f"the file is larger than {_MAX_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise FetchError(
            f"the signal file cannot be read ({exc.strerror or type(exc).__name__})",
            code="exchange_unreachable",
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest == position:
        return Page([], digest, digest, False)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_page("the file is not UTF-8 text") from None
    entries = []
    for item in parse_lines(text.splitlines(), source="exchange", path=str(path)):
        if isinstance(item, FormatError):
            raise bad_page(item.message)
        entries.append(dataclasses.replace(item, metadata={"exchange": exchange}))
    return Page(entries, digest, digest, False, snapshot=True)

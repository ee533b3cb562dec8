"""What is fuzzed: every parser of untrusted input, each behind a function that takes bytes.
A parser may refuse its input only with one of our coded errors (`CounterfakeError`); any
other exception, a hang or runaway memory is a finding. Used by `run.py` (atheris, `make
fuzz`) and by `test_targets.py` (the seeds and their regressions, in every test run)."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from counterfake._warnings import log_warnings
from counterfake.errors import CounterfakeError
from counterfake.media import Limits

#: Small enough that one execution stays fast; what a bigger limit changes is the cost only.
_LIMITS = Limits(max_bytes=4_000_000, max_pixels=4_000_000, max_frames=20)
_ROOT = Path(tempfile.gettempdir())


def image(data: bytes) -> None:
    """Image decoding and hashing: every format Pillow (and pillow-heif) opens."""
    from counterfake.hashing import hash_bytes

    hash_bytes(data, limits=_LIMITS)


def signature_file(data: bytes) -> None:
    """A signature file as the intake takes it (the protect page's or `counterfake protect`'s)."""
    from counterfake.intake import check_file

    check_file(data.decode("utf-8", "replace").splitlines(), max_photos=100)


def import_lines(data: bytes) -> None:
    """`bank import` and `bank add --hashes`: JSON Lines and ThreatExchange lines."""
    from counterfake.exchange.formats import parse_lines

    for _ in parse_lines(data.decode("utf-8", "replace").splitlines()):
        pass


def ncmec(data: bytes) -> None:
    """An NCMEC hash-sharing XML page (the API's or a file's)."""
    from counterfake.exchange.ncmec import _page

    _page(data, "fuzz", start=0, end=0, file=True, only=frozenset())


def stopncii(data: bytes) -> None:
    """A StopNCII FetchHashes answer (JSON that is not JSON is refused before it is parsed)."""
    from counterfake.exchange.stopncii import _page

    try:
        parsed = json.loads(data)
    except ValueError:
        return
    _page(parsed, 0, "fuzz")


def telegram(data: bytes) -> None:
    """A Telegram Desktop export's result.json, read as a stream."""
    from counterfake.investigate.archive import ArchiveReader

    reader = ArchiveReader(_ROOT)
    for _ in reader._telegram(io.BytesIO(data), _ROOT):
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "image": image,
    "signature_file": signature_file,
    "import_lines": import_lines,
    "ncmec": ncmec,
    "stopncii": stopncii,
    "telegram": telegram,
}
SEEDS = Path(__file__).parent / "seeds"


def run(target: str, data: bytes) -> None:
    """One execution: a coded refusal is a pass, anything else propagates."""
    log_warnings()
    with contextlib.suppress(CounterfakeError):
        TARGETS[target](data)

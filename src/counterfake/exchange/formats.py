"""Bank files in and out: our JSON Lines format and the ThreatExchange hash-list convention.

JSON Lines (`jsonl`), one entry per line, the export of `Store.iter_entries`:
    {"entry_id", "bank", "signal", "value", "quality", "source", "metadata",
     "created_at", "withdrawn_at"}   (+ "signature", base64, for derivative entries)
On import only "signal" and "value" are required; a record with "withdrawn_at" is imported
withdrawn (or withdraws the entry already there), so withdrawals travel with the bank.

ThreatExchange lists (`te`): one signal per line, `pdq <hex>` (or `<type> <value>` for any
registered type) or a bare 64-digit hex PDQ hash; blank lines and `#` comments are skipped.
A te export lists active PDQ entries only: the format has no way to say "withdrawn".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Literal

from ..errors import CounterfakeError, FormatError
from ..model import Entry, NewEntry

__all__ = ["FORMATS", "parse_lines", "write_entries"]

Format = Literal["jsonl", "te"]
FORMATS: tuple[Format, ...] = ("jsonl", "te")


def _te_record(text: str, source: str) -> NewEntry:
    parts = text.split()
    if len(parts) == 1:
        signal_type, value = "pdq", parts[0]
    elif len(parts) == 2:
        signal_type, value = parts[0].lower(), parts[1]
    else:
        raise FormatError(f"expected 'pdq <hex>' or a bare hash, got {text[:80]!r}")
    return NewEntry(signal_type, value, source=source)


def _jsonl_record(text: str, source: str) -> NewEntry:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise FormatError("a record is a JSON object")
    signal_type, value = record.get("signal"), record.get("value")
    if not isinstance(signal_type, str) or not isinstance(value, str):
        raise FormatError('a record needs string "signal" and "value" fields')
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FormatError('"metadata" is a JSON object')
    quality = record.get("quality")
    if quality is not None and (not isinstance(quality, int) or not 0 <= quality <= 100):
        raise FormatError('"quality" is an integer 0-100')
    withdrawn_raw = record.get("withdrawn_at")
    withdrawn_at = None
    if withdrawn_raw is not None:
        try:
            withdrawn_at = datetime.fromisoformat(str(withdrawn_raw))
        except ValueError as exc:
            raise FormatError('"withdrawn_at" is an ISO 8601 time') from exc
    payload = None
    if record.get("signature") is not None:
        try:
            payload = base64.b64decode(str(record["signature"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise FormatError('"signature" is base64', code="invalid_signature") from exc
    return NewEntry(
        signal_type,
        value,
        quality=quality,
        source=source,
        metadata=metadata,
        withdrawn_at=withdrawn_at,
        payload=payload,
    )


def parse_lines(
    lines: Iterable[str], *, source: str = "import", path: str | None = None
) -> Iterator[NewEntry | FormatError]:
    """Parse a te or jsonl file (detected per line); bad lines come back as errors, in order."""
    from ..signals import get_signal_type

    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            entry = (_jsonl_record if text.startswith("{") else _te_record)(text, source)
            kind = get_signal_type(entry.signal_type)
            kind.normalize(entry.value)
            if (kind.kind == "local") != (entry.payload is not None):
                raise FormatError(
                    "a derivative record carries its signature, and only it does",
                    code="invalid_signature",
                )
            if entry.payload is not None:
                from ..signals.keypoints import Features

                if Features.from_bytes(entry.payload).id != kind.normalize(entry.value):
                    raise FormatError(
                        "the signature does not match its value", code="invalid_signature"
                    )
        except CounterfakeError as exc:
            yield FormatError(
                f"line {number}: {exc.message}", code=exc.code, path=path, line=number
            )
            continue
        yield entry


def write_entries(entries: Iterable[Entry], out: IO[str], *, format: Format = "jsonl") -> int:
    """Write entries in the given format; returns how many lines were written."""
    written = 0
    for entry in entries:
        if format == "te":
            if entry.signal_type != "pdq" or entry.withdrawn_at is not None:
                continue
            out.write(f"pdq {entry.value}\n")
        else:
            out.write(json.dumps(entry.to_dict(with_payload=True), sort_keys=True) + "\n")
        written += 1
    return written

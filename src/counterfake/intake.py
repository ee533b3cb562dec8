"""Intake: signature files that people send from the protect page, without a key.

The rules, whatever face takes the file: every line is checked before anything is stored (a
file with one bad line is refused whole, each bad line named); at most `intake_max_photos`
photos per file; at most `intake_address_daily` submissions per client address and
`intake_daily` in all per UTC day. The sender gets a withdrawal code once: the store keeps only
its SHA-256 (the code carries 120 random bits, so no slower hash is needed), and the client
address only as an HMAC under a secret of this installation. Nothing of a signature is logged;
the audit log records each submission and withdrawal by id and count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from .errors import FormatError, RejectedFileError
from .protect import ProtectedPhoto, read_signatures

__all__ = [
    "Receipt",
    "address_key",
    "check_file",
    "code_digest",
    "day_start",
    "new_code",
    "new_submission_id",
]

#: Crockford's base32 alphabet: no I, L, O or U to misread when a code is copied by hand.
_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_CHARS: Final = 24  # 120 bits
_GROUP: Final = 4


@dataclasses.dataclass(frozen=True)
class Receipt:
    """What a sender gets back, once: the code is not stored and cannot be shown again."""

    submission: str
    withdrawal_code: str
    photos: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def new_code() -> str:
    """A withdrawal code: 24 base32 characters in groups of four."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_CHARS))
    return "-".join(chars[i : i + _GROUP] for i in range(0, _CODE_CHARS, _GROUP))


def code_digest(code: str) -> str:
    """SHA-256 of a code as typed: case, spaces and dashes do not matter; the letters people
    confuse with digits (O, I, L) read as those digits, as Crockford's base32 has it."""
    text = "".join(c for c in code.upper() if c not in " -\t\r\n")
    text = text.translate(str.maketrans("OIL", "011"))
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def new_submission_id() -> str:
    return "intake-" + secrets.token_hex(12)


def address_key(secret: str, address: str) -> str:
    """The client address as the store keeps it: an HMAC, comparable but not reversible."""
    return hmac.new(secret.encode(), address.encode(), hashlib.sha256).hexdigest()


def day_start(at: datetime | None = None) -> datetime:
    at = at or datetime.now(UTC)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def check_file(lines: Iterable[str], *, max_photos: int) -> list[ProtectedPhoto]:
    """The photos of a signature file, or RejectedFileError naming every bad line."""
    photos: list[ProtectedPhoto] = []
    problems: list[FormatError] = []
    try:
        for item in read_signatures(lines):
            if isinstance(item, FormatError):
                problems.append(item)
            elif len(photos) == max_photos:
                raise RejectedFileError(
                    f"a submission holds at most {max_photos} photos", code="too_many_photos"
                )
            else:
                photos.append(item)
    except FormatError as exc:  # the header
        raise RejectedFileError(exc.message, lines=[exc]) from None
    if problems:
        raise RejectedFileError(f"{len(problems)} bad line(s); nothing was stored", lines=problems)
    if not photos:
        raise RejectedFileError("the file holds no photos", code="empty_signature_file")
    return photos

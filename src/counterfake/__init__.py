"""Counterfake: hash images where they are, keep hash banks, match uploads against them.

>>> from counterfake import Counterfake
>>> app = Counterfake()                       # settings from COUNTERFAKE_*; SQLite by default
>>> app.create_bank("mine")                   # doctest: +SKIP
>>> app.add_image("mine", open("photo.jpg", "rb").read())   # doctest: +SKIP
>>> app.lookup(open("upload.jpg", "rb").read()).matches     # doctest: +SKIP
"""

import os as _os

# PDQ's matrix products are small, and OpenBLAS's idle threads slow every process that hashes
# beside another (2 workers on 2 cores: 180 images/s with them, 500 without). Set before NumPy
# loads; a caller's own setting wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from .core import Counterfake, Lookup
    from .errors import (
        AccessError,
        ConflictError,
        CounterfakeError,
        DatabaseError,
        FetchError,
        FileInputError,
        FormatError,
        InputError,
        MediaError,
        NotFoundError,
        SignalError,
        StoreError,
        UnavailableError,
        UsageError,
    )
    from .hashing import ImageHashes, bank_entries, hash_bytes, hash_file
    from .matching import Match, Matcher, MatchResult
    from .media import DecodedImage, Limits, decode, decode_rgb
    from .model import AddResult, AuditEvent, Bank, Entry, NewEntry
    from .settings import Settings, load_settings
    from .signals import PdqHash, SignalType, pdq, pdq_dihedral, pdq_reference, register
    from .store import Store

from . import errors as _errors  # no imports of its own: cheap to load at once

# Each public name is imported from its module on first use, so that `counterfake --version`
# or hashing one photo does not load the store, the matcher or OpenCV.
_HOMES = {
    **dict.fromkeys(_errors.__all__, "errors"),
    **dict.fromkeys(("Counterfake", "Lookup"), "core"),
    **dict.fromkeys(("ImageHashes", "bank_entries", "hash_bytes", "hash_file"), "hashing"),
    **dict.fromkeys(("Match", "Matcher", "MatchResult"), "matching"),
    **dict.fromkeys(("DecodedImage", "Limits", "decode", "decode_rgb"), "media"),
    **dict.fromkeys(("Settings", "load_settings"), "settings"),
    **dict.fromkeys(
        ("PdqHash", "SignalType", "pdq", "pdq_dihedral", "pdq_reference", "register"), "signals"
    ),
    **dict.fromkeys(("AddResult", "AuditEvent", "Bank", "Entry", "NewEntry"), "model"),
    "Store": "store",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'counterfake' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AccessError",
    "AddResult",
    "AuditEvent",
    "Bank",
    "ConflictError",
    "Counterfake",
    "CounterfakeError",
    "DatabaseError",
    "DecodedImage",
    "Entry",
    "FetchError",
    "FileInputError",
    "FormatError",
    "ImageHashes",
    "InputError",
    "Limits",
    "Lookup",
    "Match",
    "MatchResult",
    "Matcher",
    "MediaError",
    "NewEntry",
    "NotFoundError",
    "PdqHash",
    "Settings",
    "SignalError",
    "SignalType",
    "Store",
    "StoreError",
    "UnavailableError",
    "UsageError",
    "bank_entries",
    "decode",
    "decode_rgb",
    "hash_bytes",
    "hash_file",
    "load_settings",
    "pdq",
    "pdq_dihedral",
    "pdq_reference",
    "register",
]

"""Counterfake: hash images where they are, keep hash banks, match uploads against them.

>>> from counterfake import hash_file, Store, Matcher
>>> store = Store.open()                      # SQLite under COUNTERFAKE_HOME by default
>>> store.create_bank("mine")                 # doctest: +SKIP
>>> matcher = Matcher(store)
>>> matcher.match(hash_file("photo.jpg"))     # doctest: +SKIP
"""

import os as _os

# PDQ's matrix products are small, and OpenBLAS's idle threads slow every process that hashes
# beside another (2 workers on 2 cores: 180 images/s with them, 500 without). Set before NumPy
# loads; a caller's own setting wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

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
from .settings import Settings, load_settings
from .signals import PdqHash, SignalType, pdq, pdq_dihedral, pdq_reference, register
from .store import AddResult, AuditEvent, Bank, Entry, NewEntry, Store

__all__ = [
    "AccessError",
    "AddResult",
    "AuditEvent",
    "Bank",
    "ConflictError",
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

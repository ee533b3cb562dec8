"""Query signals -> candidates from the indexes -> matches with their evidence.

A `Matcher` loads the active entries of the banks it is given from the store once; call
`reload()` to pick up later changes (an incremental change log is the index issue's work).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .hashing import ImageHashes
from .index import HammingIndex, LinearHammingIndex
from .signals import PdqHash, get_signal_type
from .store import Store

__all__ = ["Match", "MatchResult", "Matcher"]


@dataclasses.dataclass(frozen=True)
class Match:
    bank: str
    entry_id: int
    signal: str
    distance: int
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "signal": self.signal,
            "distance": self.distance,
        }
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclasses.dataclass(frozen=True)
class MatchResult:
    matches: list[Match]
    notes: list[str]


class Matcher:
    """Matches image hashes against the active entries of some banks (all banks by default)."""

    def __init__(
        self, store: Store, banks: Sequence[str] | None = None, *, min_quality: int = 50
    ) -> None:
        self._store = store
        self._bank_names = list(banks) if banks is not None else None
        self._min_quality = min_quality
        self.reload()

    def reload(self) -> None:
        """Rebuild the in-memory indexes from the store."""
        wanted = self._bank_names
        banks = {b.name: b for b in self._store.list_banks()}
        if wanted is not None:
            for name in wanted:
                if name not in banks:
                    self._store.get_bank(name)  # raises bank_not_found
        self._thresholds = {
            name: bank.pdq_threshold
            for name, bank in banks.items()
            if wanted is None or name in wanted
        }
        self._entry_bank: dict[int, str] = {}
        self._exact: dict[tuple[str, str], list[int]] = defaultdict(list)
        hamming_ids: dict[str, list[int]] = defaultdict(list)
        hamming_codes: dict[str, list[np.ndarray]] = defaultdict(list)
        for entry_id, bank, signal_type, value, quality in self._store.active_signals(
            list(self._thresholds)
        ):
            self._entry_bank[entry_id] = bank
            kind = get_signal_type(signal_type).kind
            if kind == "exact":
                self._exact[(signal_type, value)].append(entry_id)
            elif quality is None or quality >= self._min_quality:
                hamming_ids[signal_type].append(entry_id)
                hamming_codes[signal_type].append(PdqHash.from_hex(value).words())
        self._hamming: dict[str, HammingIndex] = {}
        for signal_type, ids in hamming_ids.items():
            index = LinearHammingIndex()
            index.add(ids, np.stack(hamming_codes[signal_type]))
            self._hamming[signal_type] = index

    @property
    def banks(self) -> list[str]:
        return sorted(self._thresholds)

    def __len__(self) -> int:
        return len(self._entry_bank)

    def match(self, hashes: ImageHashes) -> MatchResult:
        """Every entry the image matches: exact digests, then PDQ (and its dihedral variants)."""
        found: dict[int, Match] = {}
        notes: list[str] = []
        for signal_type, value in hashes.signals.items():
            for entry_id in self._exact.get((signal_type, value), ()):
                found[entry_id] = Match(self._entry_bank[entry_id], entry_id, signal_type, 0)
        if hashes.quality < self._min_quality:
            notes.append(
                f"pdq quality {hashes.quality} is below {self._min_quality}: not matched on PDQ"
            )
        elif "pdq" in self._hamming and self._thresholds:
            variants = {"original": hashes.signals["pdq"]}
            if hashes.dihedral:
                variants.update(hashes.dihedral)
            radius = max(self._thresholds.values())
            names = list(variants)
            codes = np.stack([PdqHash.from_hex(variants[n]).words() for n in names])
            for name, hits in zip(names, self._hamming["pdq"].search(codes, radius), strict=True):
                for entry_id, distance in hits:
                    bank = self._entry_bank[entry_id]
                    if distance > self._thresholds[bank]:
                        continue
                    previous = found.get(entry_id)
                    if previous is None or distance < previous.distance:
                        variant = None if name == "original" else name
                        found[entry_id] = Match(bank, entry_id, "pdq", distance, variant)
        matches = sorted(found.values(), key=lambda m: (m.distance, m.bank, m.entry_id))
        return MatchResult(matches, notes)

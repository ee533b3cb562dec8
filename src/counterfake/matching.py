"""Query signals -> candidates from the indexes -> matches with their evidence.

A `Matcher` loads the active entries of its banks from the store once, then follows the store's
change log: at most every `refresh_interval` seconds a match first applies the adds and
withdrawals committed since, by any process, to its in-memory indexes. Nothing is rebuilt for
one change; deleting a bank it holds triggers one full reload.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from .errors import NotFoundError
from .hashing import ImageHashes
from .index import HammingIndex, LinearHammingIndex, MultiIndexHammingIndex
from .signals import PdqHash, get_signal_type
from .store import Change, Store

__all__ = ["Match", "MatchResult", "Matcher"]

#: Below this many codes a scan beats building tables (and needs no compiled kernels).
TABLES_FROM: Final = 50_000
#: On a reload, changes this far back are applied again (idempotently): a writer that took its
#: sequence number before the reload may commit after it.
_REPLAY: Final = 1000
#: A sequence number still missing after this long was rolled back, not delayed.
_GAP_TIMEOUT: Final = 30.0


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


def _words_from_hex(values: Sequence[str]) -> np.ndarray:
    """Many 64-digit hex hashes to (n, 4) little-endian words at once."""
    raw = np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, 32)
    return np.ascontiguousarray(raw[:, ::-1]).view("<u8")


class Matcher:
    """Matches image hashes against the active entries of some banks (all banks by default)."""

    def __init__(
        self,
        store: Store,
        banks: Sequence[str] | None = None,
        *,
        min_quality: int = 50,
        refresh_interval: float = 0.5,
    ) -> None:
        self._store = store
        self._bank_names = list(banks) if banks is not None else None
        self._min_quality = min_quality
        self._refresh_interval = refresh_interval
        self.reload()

    # loading and following the store ---------------------------------------------------------

    def reload(self) -> None:
        """Load every active entry of the banks from the store, then catch up on changes."""
        low_water = max(0, self._store.last_change() - _REPLAY)
        banks = {b.name: b for b in self._store.list_banks()}
        for name in self._bank_names or ():
            if name not in banks:
                self._store.get_bank(name)  # raises bank_not_found
        self._thresholds = {
            name: bank.pdq_threshold
            for name, bank in banks.items()
            if self._bank_names is None or name in self._bank_names
        }
        self._entry_bank: dict[int, str] = {}
        self._exact: dict[tuple[str, str], set[int]] = defaultdict(set)
        ids: dict[str, list[np.ndarray]] = defaultdict(list)
        codes: dict[str, list[np.ndarray]] = defaultdict(list)
        for batch in self._store.active_signal_batches(list(self._thresholds)):
            hamming: dict[str, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
            for entry_id, bank, signal_type, value, quality in batch:
                self._entry_bank[entry_id] = bank
                if get_signal_type(signal_type).kind == "exact":
                    self._exact[(signal_type, value)].add(entry_id)
                elif quality is None or quality >= self._min_quality:
                    hamming[signal_type][0].append(entry_id)
                    hamming[signal_type][1].append(value)
            for signal_type, (batch_ids, values) in hamming.items():
                ids[signal_type].append(np.asarray(batch_ids, dtype=np.int64))
                codes[signal_type].append(_words_from_hex(values))
        self._hamming: dict[str, HammingIndex] = {}
        for signal_type in ids:
            all_ids = np.concatenate(ids[signal_type])
            all_codes = np.concatenate(codes[signal_type])
            self._hamming[signal_type] = self._new_index(all_ids, all_codes)
        self._low_water = low_water
        self._seen: set[int] = set()
        self._gap_since: dict[int, float] = {}
        self._needs_reload = False
        self.refresh()

    @staticmethod
    def _new_index(ids: np.ndarray, codes: np.ndarray) -> HammingIndex:
        if ids.shape[0] >= TABLES_FROM:
            return MultiIndexHammingIndex(ids, codes)
        index = LinearHammingIndex()
        if ids.shape[0]:
            index.add(ids.tolist(), codes)
        return index

    def refresh(self) -> int:
        """Apply the changes committed since the last refresh; returns how many were new."""
        self._last_refresh = time.monotonic()
        applied = 0
        while True:
            batch = self._store.changes_since(self._low_water)
            fresh = [c for c in batch if c.seq not in self._seen]
            for change in fresh:
                self._apply(change)
                self._seen.add(change.seq)
            applied += len(fresh)
            self._advance()
            if self._needs_reload:
                self.reload()
                return applied
            if len(batch) < 10_000:
                return applied

    def _advance(self) -> None:
        now = time.monotonic()
        while self._seen:
            following = self._low_water + 1
            if following in self._seen:
                self._seen.discard(following)
                self._low_water = following
                self._gap_since.pop(following, None)
                continue
            # A hole below changes we have seen: an uncommitted or rolled-back writer.
            first_seen = self._gap_since.setdefault(following, now)
            if now - first_seen < _GAP_TIMEOUT:
                return
            self._low_water = following

    def _apply(self, change: Change) -> None:
        if change.op == "bank_create":
            if self._bank_names is None:
                try:
                    bank = self._store.get_bank(change.bank)
                except NotFoundError:
                    return  # deleted since; its bank_delete change follows
                self._thresholds[change.bank] = bank.pdq_threshold
            return
        if change.bank not in self._thresholds:
            return
        if change.op == "bank_delete":
            self._needs_reload = True
        elif change.op == "add" and change.value is not None and change.signal_type:
            if not change.withdrawn and change.entry_id is not None:
                self._add(
                    change.entry_id, change.bank, change.signal_type, change.value, change.quality
                )
        elif change.op == "withdraw" and change.entry_id is not None:
            self._remove(change.entry_id, change.signal_type, change.value)

    def _add(
        self, entry_id: int, bank: str, signal_type: str, value: str, quality: int | None
    ) -> None:
        self._entry_bank[entry_id] = bank
        if get_signal_type(signal_type).kind == "exact":
            self._exact[(signal_type, value)].add(entry_id)
        elif quality is None or quality >= self._min_quality:
            index = self._hamming.get(signal_type)
            if index is None:
                index = self._hamming[signal_type] = LinearHammingIndex()
            index.add([entry_id], _words_from_hex([value]))

    def _remove(self, entry_id: int, signal_type: str | None, value: str | None) -> None:
        self._entry_bank.pop(entry_id, None)
        if signal_type and value:
            self._exact.get((signal_type, value), set()).discard(entry_id)
        for index in self._hamming.values():
            index.remove([entry_id])

    # matching ----------------------------------------------------------------------------------

    @property
    def banks(self) -> list[str]:
        return sorted(self._thresholds)

    def __len__(self) -> int:
        return len(self._entry_bank)

    def match(self, hashes: ImageHashes) -> MatchResult:
        """Every entry the image matches: exact digests, then PDQ (and its dihedral variants)."""
        if time.monotonic() - self._last_refresh >= self._refresh_interval:
            self.refresh()
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
                    bank = self._entry_bank.get(entry_id)
                    if bank is None or distance > self._thresholds[bank]:
                        continue
                    previous = found.get(entry_id)
                    if previous is None or distance < previous.distance:
                        variant = None if name == "original" else name
                        found[entry_id] = Match(bank, entry_id, "pdq", distance, variant)
        matches = sorted(found.values(), key=lambda m: (m.distance, m.bank, m.entry_id))
        return MatchResult(matches, notes)

"""Query signals -> candidates from the indexes -> matches with their evidence.

A `Matcher` loads the active entries of its banks from the store once, then follows the store's
change log, applying the adds and withdrawals committed since, by any process, to its in-memory
indexes. Nothing is rebuilt for one change; deleting a bank it holds triggers one full reload.

Two ways to follow. By default (the CLI, a library caller) a match first applies what is new,
at most every `refresh_interval` seconds. A long-running process (a service worker) calls
`follow()`: a background thread then reads the log and rebuilds grown indexes off the lock
(searches use the old index meanwhile, then the new one is swapped in), so no request waits
for catch-up; a request after this process's own write waits only for the follower's next pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Final, Protocol

import numpy as np

from ._memory import release_freed_memory
from .derivatives import Evidence, verify
from .errors import NotFoundError, SignalError, UsageError
from .hashing import ImageHashes
from .index import HammingIndex, LinearHammingIndex, codes_from_hex
from .index.hamming import MAX_DELTA, MAX_SCANNED
from .index.keypoints import KeypointShortlist
from .settings import DEFAULTS
from .signals import get_signal_type, signal_types
from .signals.keypoints import SHORTLISTED, Features
from .store import Bank, Change, Store
from .store.signatures import part_of

__all__ = ["Match", "MatchResult", "Matcher"]

#: Below this many codes a scan beats building tables (and needs no compiled kernels).
TABLES_FROM: Final = 50_000
#: On a reload, changes this far back are applied again (idempotently): a writer that took its
#: sequence number before the reload may commit after it.
_REPLAY: Final = 1000
#: A sequence number still missing after this long was rolled back, not delayed.
_GAP_TIMEOUT: Final = 30.0
#: A change-log read returns at most this many changes; a shorter one means caught up.
_BATCH: Final = 10_000
#: A multi-index is rebuilt (its delta folded into its tables) once its delta holds this many
#: codes and an eighth of its tables' ...
_REBUILD_FROM: Final = 16_384
#: ... and at the latest once it holds the index's own bound: at 1,000 adds a second, a
#: rebuild every 4.4 minutes at 10M codes. Meanwhile the delta gets tables of its own each
#: time its linearly scanned tail reaches `MAX_SCANNED` codes.
_REBUILD_BY: Final = MAX_DELTA
#: ... or, after this many seconds without changes, once it holds this many.
_TIDY_AFTER: Final = 2.0
#: The nice value of the thread that builds a new index (0 is normal, 19 the lowest): busy
#: cores go to lookups. The thread that swaps it in keeps the normal value.
_BUILDER_NICE: Final = 10
#: A lookup after this process's own write waits this long at most for the follower's next
#: pass (a busy machine can take more than a refresh interval over one), unless the follower
#: is failing (the store away): then a refresh interval, and it matches from what it holds.
_SYNC_WAIT: Final = 5.0
_TIDY_FROM: Final = 1024
#: Banks with at most this many protected photos are verified against every one of them.
_VERIFY_ALL_UP_TO: Final = 32
#: Otherwise the shortlist's best candidates, over all views of the query, are verified. At
#: 60% replaced, 16 found 77.0% of the tuning half's derivatives where 8 found 72.9% (7.7
#: points fewer than the true source verified alone, not 11.8); at 100,000 photos it moved a
#: query's p99 from 128 to 188 ms, its median not at all ...
_SHORTLIST: Final = 16
#: ... but not one with under 1/this of the best candidate's votes: a derivative's source
#: draws many (a median of 12 at 30% replaced, counted whole), chance candidates 2-5. At
#: 100,000 photos, 1/8 cut the median derivative query by a sixth and lost none; 1/4 cut a
#: fifth but lost 4 of 200 (benchmarks/derivative_scale.py). With votes weighed by closeness
#: (the shortlist's bank mode), 1/8 leaves 6 candidates of a query at 60% replaced on the
#: tuning half (10 before) and found as many as 1/16, 1/32 or no limit.
_VOTE_SHARE: Final = 8


@dataclasses.dataclass(frozen=True)
class Match:
    bank: str
    entry_id: int
    signal: str
    distance: int
    variant: str | None = None
    #: Derivative matches only: how sure (0-1), and the share of the photo that was changed.
    score: float | None = None
    changed_fraction: float | None = None
    #: "subject", "background" (the person did not survive: a weaker signal) or "photo".
    matched_part: str | None = None
    evidence: Evidence | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def how(self) -> str:
        """How it matched, for people: a variant, or a derivative's score and changed share."""
        if self.changed_fraction is not None:
            how = f"score {self.score or 0:.2f}, {self.changed_fraction:.0%} of the photo changed"
            if self.matched_part == "background":
                how += ", on the background only"
            return how
        return f"as {self.variant}" if self.variant else ""

    @property
    def shown_distance(self) -> str:
        """The distance as a table shows it: '-' where the signal has none (derivatives)."""
        return "-" if self.score is not None else str(self.distance)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "signal": self.signal,
        }
        if self.score is None:  # a derivative has a score, not a distance
            out["distance"] = self.distance
        if self.variant:
            out["variant"] = self.variant
        if self.score is not None:
            out["score"] = round(self.score, 3)
        if self.changed_fraction is not None:
            out["changed_fraction"] = round(self.changed_fraction, 3)
        if self.matched_part is not None:
            out["matched_part"] = self.matched_part
        return out


def _kind(signal_type: str) -> str | None:
    """The kind of a stored signal type; None (and a warning, once) for a type this process
    does not know: a plug-in installed where the entry was added but not here."""
    try:
        return get_signal_type(signal_type).kind
    except SignalError:
        if signal_type not in _unknown_types:
            _unknown_types.add(signal_type)
            logging.getLogger("counterfake").warning(
                "entries of signal type %r are not matched here: no plug-in registers it",
                signal_type[:40],
            )
        return None


_unknown_types: set[str] = set()
log = logging.getLogger("counterfake")


def _below_lookups(build: Callable[[], HammingIndex]) -> HammingIndex:
    """Run `build` on a thread of its own at a raised nice value (on Linux a thread has its
    own) and wait for it: a rebuild should take the cores lookups leave idle, not a share of
    theirs. The caller, which then swaps the result in under the matcher's lock, keeps its
    priority: a nicer thread holding that lock held lookups up (an unprivileged thread
    cannot lower its nice value again)."""
    done: list[HammingIndex | BaseException] = []

    def run() -> None:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _BUILDER_NICE)
        try:
            done.append(build())
        except BaseException as error:  # raised again on the caller's thread
            done.append(error)

    worker = threading.Thread(target=run, name="counterfake-index-build-work", daemon=True)
    worker.start()
    worker.join()
    if isinstance(done[0], BaseException):
        raise done[0]
    return done[0]


def _fold_later(shortlist: KeypointShortlist) -> None:
    """Merge a shortlist's recent photos into its delta, or fold both into new tables, on a
    thread of its own at a raised nice value, as an index is rebuilt; queries answer from the
    old tiers meanwhile."""

    def run() -> None:
        try:
            # Photos added just now are built first at the queries' priority: queries wait for
            # that build, not for the merge.
            shortlist.prepare(fold=False)
            if sys.platform.startswith("linux"):
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _BUILDER_NICE)
            shortlist.prepare()
            release_freed_memory()
        except Exception:  # the next derivative query tries again
            log.exception("merging a shortlist's recent photos failed")

    threading.Thread(target=run, name="counterfake-shortlist-fold", daemon=True).start()


def _due(index: HammingIndex, *, idle: bool) -> bool:
    """Whether an index should be rebuilt: a linear one that reached TABLES_FROM codes, a
    multi-index whose linearly scanned delta grew (a little, in a quiet spell)."""
    if isinstance(index, LinearHammingIndex):
        return len(index) >= TABLES_FROM
    pending = getattr(index, "pending", 0)
    if idle:
        return bool(pending >= _TIDY_FROM)
    eighth = getattr(index, "tabled", 0) // 8
    return bool(pending >= max(_REBUILD_FROM, min(_REBUILD_BY, eighth)))


class Shortlister(Protocol):
    """Where a matcher's derivative candidates come from when it holds no shortlist: the
    shards (`counterfake.shards.Shards`), each a `Matcher` given a `part`."""

    def shortlisted(
        self, views: Sequence[np.ndarray], banks: Collection[str] | None = None
    ) -> list[tuple[str, int, float, int]]: ...


@dataclasses.dataclass(frozen=True)
class MatchResult:
    matches: list[Match]
    notes: list[str]


class Matcher:
    """Matches image hashes against the active entries of some banks (all banks by default)."""

    def __init__(
        self,
        store: Store,
        banks: Sequence[str] | None = None,
        *,
        min_quality: int = DEFAULTS["pdq_min_quality"],
        refresh_interval: float = 0.5,
        part: tuple[int, int] | None = None,
        shards: Shortlister | None = None,
    ) -> None:
        if part is not None and not 0 <= part[0] < part[1]:
            raise UsageError(f"part must be (k, n) with 0 <= k < n, not {part}")
        self._store = store
        # A shard (`part`, k of n) holds the shortlists of its photos (`part_of`) and nothing
        # else; a matcher given `shards` holds no shortlist and asks them.
        self._part = part
        self._shards = shards
        self._bank_names = list(banks) if banks is not None else None
        self._min_quality = min_quality
        self._refresh_interval = refresh_interval
        # Lock order: _following (one reader of the change log at a time), then _lock (held
        # while the indexes change, by searches, and by `derivatives` taking candidates).
        self._following = threading.Lock()
        self._lock = threading.RLock()
        self._passed = threading.Condition(threading.Lock())
        # The signal type whose entries are protected photos' signatures (kind "local").
        self._local_type = next(
            (n for n, t in signal_types().items() if t.kind == "local"), "derivative"
        )
        self._follower: threading.Thread | None = None
        self._builder: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        # This process's last write, and its last write to a bank itself (`expire`).
        self._written_at = self._bank_written_at = float("-inf")
        self._behind = False
        self._failing = False
        self._pass_began = self._drained_at = float("-inf")
        self._last_refresh = self._last_refresh_at = 0.0
        self.reload()

    # loading and following the store ---------------------------------------------------------

    def reload(self) -> None:
        """Load every active entry of the banks from the store, then catch up on changes."""
        with self._following:
            with self._lock:
                self._load()
            self._catch_up()

    def _load(self) -> None:
        low_water = max(0, self._store.last_change() - _REPLAY)
        banks = {b.name: b for b in self._store.list_banks(counts=False)}
        for name in self._bank_names or ():
            if name not in banks:
                self._store.get_bank(name)  # raises bank_not_found
        self._banks = {
            name: bank
            for name, bank in banks.items()
            if self._bank_names is None or name in self._bank_names
        }
        # Exact signals: value -> {entry id: bank}. Hamming signals: one index per bank, so a
        # hit's bank is known without a per-entry map (10M entries would cost a gigabyte).
        self._exact: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
        self._hamming: dict[str, dict[str, HammingIndex]] = defaultdict(dict)
        # Local features: per bank, its protected photos' entry ids and a shortlist of them
        # (the first keypoints of each signature; not with `shards`). Whole signatures, for
        # verification, stay in the store: a photo costs the shortlist's share of memory only.
        self._photos: dict[str, set[int]] = {}
        self._shortlists: dict[str, KeypointShortlist] = {}
        # One batch of the change log, read without the lock and applied under it (`_flush`):
        # Hamming changes in one pass over an index; other changes in order.
        self._adding: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
        self._removing: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._staged: list[Callable[[], None]] = []
        self._incoming: dict[str, Bank] = {}  # banks created or updated in the batch
        # Indexes being rebuilt in the background: what was applied to the old one meanwhile.
        self._journal: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray | None]]] = {}
        for bank in self._banks:
            ids: dict[str, list[np.ndarray]] = defaultdict(list)
            codes: dict[str, list[np.ndarray]] = defaultdict(list)
            protects = False
            for signal_type, chunk_ids, values, qualities in self._store.active_columns(bank):
                kind = _kind(signal_type)
                if kind is None or (self._part is not None and kind != "local"):
                    continue
                if kind == "local" and self._shards is not None:
                    self._photos.setdefault(bank, set()).update(chunk_ids)  # ids only
                    continue
                if kind == "exact":
                    for entry_id, value in zip(chunk_ids, values, strict=True):
                        self._exact[(signal_type, value)][entry_id] = bank
                    continue
                if kind == "local":
                    protects = True  # their signatures are read below, in one query
                    continue
                keep = [i for i, q in enumerate(qualities) if q is None or q >= self._min_quality]
                if len(keep) < len(qualities):
                    chunk_ids = [chunk_ids[i] for i in keep]
                    values = [values[i] for i in keep]
                if chunk_ids:
                    ids[signal_type].append(np.asarray(chunk_ids, dtype=np.int64))
                    codes[signal_type].append(codes_from_hex(values))
            for signal_type in ids:
                self._hamming[signal_type][bank] = self._new_index(
                    np.concatenate(ids[signal_type]), np.concatenate(codes[signal_type])
                )
                ids[signal_type].clear()
                codes[signal_type].clear()
            if protects:
                self._add_signatures(bank, self._store.signatures(bank, part=self._part))
        release_freed_memory()
        if self._shortlists:  # their tables, built before the first query needs them
            shortlists = list(self._shortlists.values())

            def prepare() -> None:
                for shortlist in shortlists:
                    shortlist.prepare()
                release_freed_memory()  # the build's scratch, freed on this thread's heap

            threading.Thread(target=prepare, name="counterfake-shortlist", daemon=True).start()
        self._low_water = self._high_water = low_water
        self._seen: set[int] = set()
        self._gap_since: dict[int, float] = {}
        self._needs_reload = False

    @staticmethod
    def _new_index(ids: np.ndarray, codes: np.ndarray) -> HammingIndex:
        if ids.shape[0] >= TABLES_FROM:
            from .index.mih import MultiIndexHammingIndex

            return MultiIndexHammingIndex(ids, codes, merge=False)  # the matcher rebuilds
        index = LinearHammingIndex()
        if ids.shape[0]:
            index.add(ids.tolist(), codes)
        return index

    def refresh(self) -> int:
        """Apply the changes committed since the last refresh; returns how many were new.
        Searches wait only while a batch is applied, not while the log is read."""
        with self._following:
            return self._catch_up()

    def _catch_up(self) -> int:
        began = time.monotonic()
        self._last_refresh = began
        self._last_refresh_at = time.time()
        applied = 0
        if self._seen:
            # Changes above a hole were applied; look again for the hole's late commits.
            late = [
                c
                for c in self._store.changes_since(self._low_water)
                if c.seq <= self._high_water and c.seq not in self._seen
            ]
            for change in late:
                self._apply(change)
            with self._lock:
                self._flush()
                self._seen.update(c.seq for c in late)
            applied += len(late)
        while True:
            batch = self._store.changes_since(self._high_water, limit=_BATCH)
            for change in batch:
                self._apply(change)
            with self._lock:
                self._flush()
                for change in batch:
                    self._seen.add(change.seq)
                    self._high_water = change.seq
                self._advance()
                if self._needs_reload:
                    self._load()
                    continue
            applied += len(batch)
            if len(batch) < _BATCH:
                break
            self._behind = True  # a backlog: not ready until it is read to the end
        with self._passed:
            self._behind = False
            self._pass_began = began
            self._drained_at = time.monotonic()
            self._passed.notify_all()
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
        """Stage one change (without the lock: the indexes are not touched until `_flush`)."""
        if change.op in ("bank_create", "bank_update"):
            if self._bank_names is None or change.bank in self._banks:
                try:
                    bank = self._store.get_bank(change.bank)
                except NotFoundError:
                    return  # deleted since; its bank_delete change follows
                self._incoming[change.bank] = bank
            return
        if change.bank not in self._banks and change.bank not in self._incoming:
            return
        if change.op == "bank_delete":
            self._staged.append(lambda: setattr(self, "_needs_reload", True))
        elif change.op == "add" and change.value is not None and change.signal_type:
            if not change.withdrawn and change.entry_id is not None:
                self._add(
                    change.entry_id, change.bank, change.signal_type, change.value, change.quality
                )
        elif change.op == "withdraw" and change.entry_id is not None:
            self._remove(change.entry_id, change.bank, change.signal_type, change.value)

    def _add_signatures(self, bank: str, signatures: Iterable[tuple[int, bytes]]) -> None:
        if bank not in self._shortlists:
            self._shortlists[bank] = KeypointShortlist(share_votes=True, nearby_keys=True)
        shortlist, photos = self._shortlists[bank], self._photos.setdefault(bank, set())
        for entry_id, data in signatures:
            photo = Features.from_bytes(data)
            photos.add(entry_id)
            shortlist.add(entry_id, photo.descriptors[:SHORTLISTED])

    def _add(
        self, entry_id: int, bank: str, signal_type: str, value: str, quality: int | None
    ) -> None:
        kind = _kind(signal_type)
        if kind is None or (self._part is not None and kind != "local"):
            return
        if kind == "local":
            if self._shards is not None:
                self._staged.append(lambda: self._photos.setdefault(bank, set()).add(entry_id))
            elif self._part is None or part_of(entry_id, self._part[1]) == self._part[0]:
                found = list(self._store.signatures(bank, [entry_id]))
                self._staged.append(lambda: self._add_signatures(bank, found))
        elif kind == "exact":
            self._staged.append(
                lambda: self._exact[(signal_type, value)].__setitem__(entry_id, bank)
            )
        elif quality is None or quality >= self._min_quality:
            self._removing.get((signal_type, bank), set()).discard(entry_id)
            self._adding[(signal_type, bank)][entry_id] = value

    def _remove(self, entry_id: int, bank: str, signal_type: str | None, value: str | None) -> None:
        if not (signal_type and value):
            return

        def remove_now() -> None:
            self._exact.get((signal_type, value), {}).pop(entry_id, None)
            if bank in self._shortlists:
                self._shortlists[bank].remove([entry_id])
            self._photos.get(bank, set()).discard(entry_id)

        self._staged.append(remove_now)
        self._adding.get((signal_type, bank), {}).pop(entry_id, None)
        self._removing[(signal_type, bank)].add(entry_id)

    def _flush(self) -> None:
        """Apply the staged batch (under the lock): other changes in order, then the Hamming
        removals and adds (so that the batch's last word on an entry wins). An index that
        grew enough is rebuilt: at once without a follower, else in the background."""
        self._banks.update(self._incoming)
        self._incoming.clear()
        for step in self._staged:
            step()
        self._staged.clear()
        for (signal_type, bank), gone in self._removing.items():
            index = self._hamming.get(signal_type, {}).get(bank)
            if index is not None and gone:
                removed = np.fromiter(gone, dtype=np.int64, count=len(gone))
                index.remove(removed.tolist())
                if (signal_type, bank) in self._journal:
                    self._journal[(signal_type, bank)].append((removed, None))
        for (signal_type, bank), values in self._adding.items():
            if not values or bank not in self._banks:
                continue
            index = self._hamming[signal_type].get(bank)
            if index is None:
                index = self._hamming[signal_type][bank] = LinearHammingIndex()
            ids = np.fromiter(values, dtype=np.int64, count=len(values))
            codes = codes_from_hex(list(values.values()))
            index.add(ids.tolist(), codes)
            if (signal_type, bank) in self._journal:
                self._journal[(signal_type, bank)].append((ids, codes))
            if _due(index, idle=False):
                self._rebuild(signal_type, bank)
            elif getattr(index, "scanned", 0) >= MAX_SCANNED:
                self._rebuild(signal_type, bank, seal=True)
        self._removing.clear()
        self._adding.clear()

    def _rebuild(self, signal_type: str, bank: str, *, seal: bool = False) -> None:
        """Replace an index by a new one of its live codes (under the lock): at once without a
        follower, else on the builder's thread from what is taken now. With `seal`, a
        multi-index keeps its tables and gives its delta tables of its own."""
        index = self._hamming[signal_type][bank]
        if self._follower is not None and (
            self._builder is not None or (signal_type, bank) in self._journal
        ):
            return  # one build at a time; asked again at the next change or quiet spell
        rebuilder = getattr(index, "rebuilder", None)  # a multi-index folds its delta in
        if rebuilder is not None:
            build = rebuilder(seal=seal)
        else:
            copy_out = index.snapshot()

            def build() -> HammingIndex:
                return self._new_index(*copy_out())

        if self._follower is None:
            self._hamming[signal_type][bank] = build()
            return
        self._journal[(signal_type, bank)] = []
        self._builder = threading.Thread(
            target=self._build_and_swap,
            args=(signal_type, bank, index, build),
            name="counterfake-index-build",
            daemon=True,
        )
        self._builder.start()

    def _build_and_swap(
        self,
        signal_type: str,
        bank: str,
        old: HammingIndex,
        build: Callable[[], HammingIndex],
    ) -> None:
        try:
            built = _below_lookups(build)
            del build
            with self._lock:
                journal = self._journal.pop((signal_type, bank), [])
                if self._hamming.get(signal_type, {}).get(bank) is old:  # not reloaded since
                    for changed, added in journal:
                        if added is None:
                            built.remove(changed.tolist())
                        else:
                            built.add(changed.tolist(), added)
                    self._hamming[signal_type][bank] = built
        except Exception:  # the old index keeps serving; the next change asks again
            log.exception("rebuilding the %s index of bank %r failed", signal_type, bank)
            with self._lock:
                self._journal.pop((signal_type, bank), None)
        finally:
            self._builder = None
            release_freed_memory()

    # the background follower -------------------------------------------------------------------

    def follow(self) -> None:
        """Follow the change log on a background thread from now on (a long-running process):
        every `refresh_interval`, or at once when a lookup after this process's own write
        asks (`sync`). Requests then never catch up."""
        if self._follower is not None:
            return
        from .index.mih import MultiIndexHammingIndex

        MultiIndexHammingIndex.warm_up()  # no request compiles a kernel when a bank grows
        self.refresh()  # caught up as of now: the warm-up may take seconds on a cold cache
        self._stop.clear()
        self._follower = threading.Thread(
            target=self._follow, name="counterfake-follower", daemon=True
        )
        self._follower.start()

    def stop(self) -> None:
        """Stop the follower (and wait for it and for an index build in progress)."""
        follower, self._follower = self._follower, None
        if follower is not None:
            self._stop.set()
            self._wake.set()
            follower.join()
        builder = self._builder
        if builder is not None:
            builder.join()

    def _follow(self) -> None:
        quiet_since = time.monotonic()
        failing = False
        while not self._stop.is_set():
            self._wake.wait(self._refresh_interval)
            self._wake.clear()
            try:
                applied = self.refresh()
            except Exception as exc:  # the store is unreachable: serve what is held
                if not failing:
                    log.warning("following the change log failed: %s", exc)
                failing = self._failing = True
                continue
            failing = self._failing = False
            now = time.monotonic()
            if applied:
                quiet_since = now
            elif now - quiet_since >= _TIDY_AFTER:
                self._tidy()

    def _tidy(self) -> None:
        """In a quiet spell, fold remaining deltas into the tables, as a restart would."""
        with self._lock:
            for signal_type, by_bank in self._hamming.items():
                for bank, index in by_bank.items():
                    if _due(index, idle=True):
                        self._rebuild(signal_type, bank)
                        return

    @property
    def following(self) -> bool:
        return self._follower is not None

    @property
    def caught_up(self) -> bool:
        """Whether this matcher has read the change log to its end recently and is not working
        through a backlog: with a follower, within four refresh intervals (at least 2 s);
        without one, always."""
        if self._follower is None:
            return True
        recent = time.monotonic() - self._drained_at <= max(2.0, 4 * self._refresh_interval)
        return recent and not self._behind

    def expire(self, *, bank: bool = False) -> None:
        """Make the next match read the change log first: after a write in this process, so
        that it reads its own writes (`bank`: a bank was created, changed or deleted, so its
        held copy is not to be used until then). Safe to call from any thread."""
        self._written_at = time.monotonic()  # a follower is woken by the lookup that needs it
        if bank:
            self._bank_written_at = self._written_at
        if self._follower is None:
            self._last_refresh = float("-inf")

    @property
    def _unread_write(self) -> bool:
        """A write in this process since the last read of the change log began."""
        return self._pass_began < self._written_at

    def refresh_if_due(self) -> None:
        """Before a match: without a follower, catch up if the interval passed; with one,
        only after this process's own write, wait (up to a refresh interval) for the
        follower's next pass."""
        if self._follower is None:
            if time.monotonic() - self._last_refresh >= self._refresh_interval:
                self.refresh()
        elif self._unread_write:
            self.sync()

    def sync(self) -> None:
        """Apply everything committed before now: directly, or with a follower by waiting
        (at most _SYNC_WAIT s; a refresh interval while it fails) for a pass that began after
        now."""
        if self._follower is None:
            self.refresh()
            return
        asked = time.monotonic()
        self._wake.set()
        limit = self._refresh_interval if self._failing else max(_SYNC_WAIT, self._refresh_interval)
        with self._passed:
            self._passed.wait_for(lambda: self._pass_began >= asked, limit)

    # matching ----------------------------------------------------------------------------------

    @property
    def local_type(self) -> str:
        """The signal type of protected photos' signatures (derivative matches)."""
        return self._local_type

    @property
    def banks(self) -> list[str]:
        return sorted(self._banks)

    def bank(self, name: str) -> Bank:
        """A bank as of the last refresh: its threshold, owner and who it is shared with."""
        try:
            return self._banks[name]
        except KeyError:
            raise NotFoundError(f"no bank named {name!r}", code="bank_not_found") from None

    def held_bank(self, name: str) -> Bank | None:
        """The bank as of the last refresh, if this matcher holds it (safe from any thread);
        None after this process changed a bank and has not read the change yet (`expire`)."""
        return None if self._pass_began < self._bank_written_at else self._banks.get(name)

    @property
    def change_seq(self) -> int:
        """The newest change applied: how fresh the indexes are."""
        return self._high_water

    @property
    def refreshed_at(self) -> float:
        """Unix time of the last look at the change log."""
        return self._last_refresh_at

    def sizes(self, banks: Collection[str] | None = None) -> dict[str, int]:
        """Active entries held per signal type (in `banks` only, if given)."""
        out: dict[str, int] = defaultdict(int)
        for (signal_type, _), holders in self._exact.items():
            if banks is None:
                out[signal_type] += len(holders)
            else:
                out[signal_type] += sum(bank in banks for bank in holders.values())
        for signal_type, by_bank in self._hamming.items():
            out[signal_type] += sum(
                len(i) for b, i in by_bank.items() if banks is None or b in banks
            )
        for bank, photos in self._photos.items():
            if banks is None or bank in banks:
                out[self._local_type] += len(photos)
        return dict(out)

    def __len__(self) -> int:
        """Active entries held (PDQ entries too low in quality to match are not)."""
        return sum(self.sizes().values())

    def protects_photos(self, banks: Collection[str] | None = None) -> bool:
        """Whether any of the banks (all by default) holds derivative signatures: then
        derivatives can be searched (`features` in `match`, or `derivatives`)."""
        return any(
            photos for bank, photos in self._photos.items() if banks is None or bank in banks
        )

    def match(
        self,
        hashes: ImageHashes,
        *,
        banks: Collection[str] | None = None,
        features: Features | Callable[[], Features] | None = None,
    ) -> MatchResult:
        """Every entry the image matches: exact digests, then PDQ (and its dihedral variants),
        then, only if those found nothing and `features` (signals.keypoints.image_features)
        are given, derivatives of protected photos. Pass `features` as a function to have them
        computed only then: they cost more than hashing. `banks` narrows the search."""
        notes: list[str] = []
        exact: dict[str, str] = {}
        hamming: dict[str, dict[str, str]] = {}
        for name, value in hashes.signals.items():
            kind = get_signal_type(name).kind
            if kind == "exact":
                exact[name] = value
            elif kind == "hamming256" and name != "pdq":
                hamming[name] = {"original": value}
        # PDQ's own quality and dihedral variants travel in ImageHashes.
        if hashes.quality < self._min_quality:
            notes.append(
                f"pdq quality {hashes.quality} is below {self._min_quality}: not matched on PDQ"
            )
        elif "pdq" in hashes.signals:
            hamming["pdq"] = {"original": hashes.signals["pdq"], **(hashes.dihedral or {})}
        matches = self._search(exact, hamming, banks)
        if not matches and features is not None and self.protects_photos(banks):
            query = features() if callable(features) else features
            matches = self.derivatives(query, banks=banks)
        return MatchResult(matches, notes)

    def derivatives(self, query: Features, *, banks: Collection[str] | None = None) -> list[Match]:
        """Derivatives of protected photos only (what `match` adds when PDQ and digests find
        nothing). Safe to call from a worker thread while the owning thread matches and
        refreshes: candidates come from `shortlisted` (this matcher's shortlists, or its
        shards'), then are read from the store and verified without the lock."""
        descriptors = [view.features.descriptors for view in query.views]
        asked = self if self._shards is None else self._shards
        tries: dict[tuple[str, int], list[int]] = {}
        voted: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
        for bank, entry_id, votes, number in asked.shortlisted(descriptors, banks):
            if number < 0:
                tries[(bank, entry_id)] = []  # a bank of few photos: every one, every view
            else:
                voted[bank].append((-votes, entry_id, number))
        for bank, ranked in voted.items():
            # The photos with most votes over all views (and all shards), each verified
            # against the views that shortlisted it (a view of the wrong shape or side votes
            # little).
            ranked.sort()
            most = -ranked[0][0]
            for negated, entry_id, number in ranked[:_SHORTLIST]:
                if -negated * _VOTE_SHARE >= most:
                    tries.setdefault((bank, entry_id), []).append(number)
        sources: dict[tuple[str, int], Features] = {}
        for bank in {bank for bank, _ in tries}:
            ids = [entry_id for held, entry_id in tries if held == bank]
            for entry_id, data in self._store.signatures(bank, ids):
                sources[(bank, entry_id)] = Features.from_bytes(data)
        found = []
        for (bank, entry_id), views in tries.items():
            source = sources.get((bank, entry_id))
            if source is None:  # withdrawn meanwhile
                continue
            evidence = verify(source, query, views=views or None)
            if evidence is not None:
                found.append(
                    Match(
                        bank,
                        entry_id,
                        self._local_type,
                        0,
                        score=evidence.score,
                        changed_fraction=evidence.changed_fraction,
                        matched_part=evidence.matched_part,
                        evidence=evidence,
                    )
                )
        return sorted(found, key=lambda m: (-(m.score or 0), m.bank, m.entry_id))

    def shortlisted(
        self, views: Sequence[np.ndarray], banks: Collection[str] | None = None
    ) -> list[tuple[str, int, float, int]]:
        """Candidates of this matcher's own shortlists for a query's views' descriptors:
        (bank, entry id, votes, view), each view's best `_SHORTLIST`; view -1 (votes 0) for
        every photo of a bank that holds few, to be verified against every view. What a shard
        answers a worker."""
        held: list[tuple[str, KeypointShortlist, list[int] | None]] = []
        with self._lock:
            for bank, shortlist in self._shortlists.items():
                photos = self._photos.get(bank, set())
                if banks is None or bank in banks:
                    few = sorted(photos) if len(photos) <= _VERIFY_ALL_UP_TO else None
                    held.append((bank, shortlist, few))
        # Not under the lock, which the lookups of every other request need: a shortlist
        # answers while photos are added. The photos added lately are built here; a merge or
        # fold of them into its bigger tiers is not waited for.
        found: list[tuple[str, int, float, int]] = []
        for bank, shortlist, few in held:
            if few is not None:
                found.extend((bank, entry_id, 0.0, -1) for entry_id in few)
                continue
            shortlist.prepare(fold=False)
            if shortlist.fold_due and not shortlist.folding:
                _fold_later(shortlist)
            for number, descriptors in enumerate(views):
                found.extend(
                    (bank, entry_id, votes, number)
                    for entry_id, votes in shortlist.candidates(descriptors, _SHORTLIST)
                )
        return found

    def match_signal(
        self, signal_type: str, value: str, *, banks: Collection[str] | None = None
    ) -> list[Match]:
        """Entries matching one signal value (normalised first; SignalError if invalid)."""
        kind = get_signal_type(signal_type)
        value = kind.normalize(value)
        if kind.kind == "exact":
            return self._search({signal_type: value}, {}, banks)
        if kind.kind == "hamming256":
            return self._search({}, {signal_type: {"original": value}}, banks)
        return []  # a signature is found by verification, not by its value

    def _threshold(self, bank: str, signal_type: str) -> int:
        if signal_type == "pdq":
            return self._banks[bank].pdq_threshold
        return get_signal_type(signal_type).threshold

    def _search(
        self,
        exact: dict[str, str],
        hamming: dict[str, dict[str, str]],
        banks: Collection[str] | None,
    ) -> list[Match]:
        self.refresh_if_due()
        found: dict[int, Match] = {}
        with self._lock:  # lookups may run on several threads while one of them refreshes
            for signal_type, value in exact.items():
                for entry_id, bank in self._exact.get((signal_type, value), {}).items():
                    if banks is None or bank in banks:
                        found[entry_id] = Match(bank, entry_id, signal_type, 0)
            for signal_type, variants in hamming.items():
                names = list(variants)
                codes = codes_from_hex([variants[n] for n in names])
                for bank, index in self._hamming.get(signal_type, {}).items():
                    if banks is not None and bank not in banks:
                        continue
                    results = index.search(codes, self._threshold(bank, signal_type))
                    for name, hits in zip(names, results, strict=True):
                        for entry_id, distance in hits:
                            previous = found.get(entry_id)
                            if previous is None or distance < previous.distance:
                                variant = None if name == "original" else name
                                found[entry_id] = Match(
                                    bank, entry_id, signal_type, distance, variant
                                )
        return sorted(found.values(), key=lambda m: (m.distance, m.bank, m.entry_id))

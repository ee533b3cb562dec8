"""The shortlist for derivative matching: which protected photos share descriptors with an
upload, without comparing the upload to every photo.

Locality-sensitive hashing on ORB descriptors: each descriptor is filed under four keys of
20 to 24 bits (bits of four disjoint byte ranges; wider as the tables grow). A true
correspondence (typically under 40 bits apart) shares at least one key often enough, or, for
a query's strongest descriptors in a bank (`nearby_keys`), a key one bit away; every
descriptor found under a shared key is then compared in full, and only those within 40 bits
vote, once per query descriptor and photo.
Random collisions, which drown true ones in the buckets of common texture, are thrown out
there: at 64 bits the true source of a derivative with 40% replaced was among a 100-photo
bank's first 8 candidates 89% of the time, at 40 bits 96%. The photos with most votes are
verified geometrically (derivatives.verify).

In a bank of distinct photos (`share_votes=True`), a query descriptor found in several photos
shares its one vote among them. The outlines of objects against plain backgrounds (a cup, a
tool, a bird on a white wall) give descriptors that are found in many photos: counted whole,
they made a few such photos outvote the true source of a derivative with 60% replaced for a
quarter of the tuning half's queries that verification finds, in a 122-photo bank; shared,
for a seventh (benchmarks/derivatives.py). There a vote also counts by how close its
descriptors are (e^(-bits/8)): what survives of the photo in a derivative is the same pixels,
a few bits apart, while chance likenesses sit at 25-40 bits; weighted, the true sources of
derivatives with 60% replaced were among the 16 verified for 80.3% of the tuning half's
queries, counted alike for 77.3% (verification alone 84.7%). An archive's images
(investigations) share content for real, so there every vote counts whole.

The shortlist holds the descriptors themselves (one array for all photos), a 4-byte row number
and a check byte (the byte after the key's) per descriptor and table, and per table a bucket
offset per key (2^20 to 2^24). Photos added since those tables were built sit in smaller tiers
of the same rows and check bytes, sorted by key and searched by binary search (no offsets
table): the *recent* photos, in tiers of at most `_RECENT_ROWS` rows of which `candidates`
rebuilds only the last after adds, and the *delta*, into which `prepare` merges them. Once
the delta holds an eighth of the tables' rows, `prepare` folds both into new tables instead
(a full rebuild: about 15 s at 100,000 photos). `candidates` goes on answering from the tiers
as they were meanwhile, and `prepare` swaps the new ones in when they are ready. A matcher
builds the first tables in the background after loading, and merges and folds on a
background thread of its own once the recent photos hold `_RECENT_ROWS` rows, so that no
query waits for more than the last recent tier's build.

A shortlist too big for a worker's memory is written to files (`write`) and mapped (`open`),
one shard of the bank per process; README, "Beyond one machine", has the plan and the
figures of one shard of a million photos (benchmarks/shortlist_shard.py).
"""

from __future__ import annotations

import json
import math
import mmap
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import numpy as np

from . import _kernels

__all__ = ["KeypointShortlist"]

_TABLES: Final = 4
#: Query descriptors looked up: the first 1,000 (a query lists them rank by rank over its grid,
#: every cell's strongest first, so they cover the whole upload), then a third of the rest.
#: Verification uses all of them.
_ASKED: Final = 1000
#: Keys are 20 to 24 bits wide, chosen when the tables are built so that a bucket holds
#: about 16 rows (photos of 512 rows: 20 bits up to 45,000, 22 at 100,000, 24 from 370,000): more
#: rows crowd the buckets of common texture past `_CROWDED`, fewer lose the true pairs that
#: differ in a key's bits. At 100,000 photos, 22 bits found 82% of the tuning half's
#: derivatives with 60% replaced, 24 bits 80%, 20 bits 73% (verification alone 90%;
#: benchmarks/shortlist_shard.py --half tune).
_KEY_BITS: Final = (20, 24)
_BUCKET_ROWS: Final = 16
_CLOSE: Final = 40  # bits: a descriptor this close is a vote
#: In a bank of distinct photos a vote weighs e^(-bits apart / this).
_CLOSENESS: Final = 8.0
#: Most bits a bucket row's check byte may differ by before the full comparison: a descriptor
#: 40 bits of 256 away passes 97% of the time, 25 bits away 99.6%, a random one 36%.
_CHECK_BITS: Final = 3
#: One descriptor in common is chance: at 100,000 photos, leaving out single-vote photos cut
#: verifications per query from 25 to 7 and lost 1% of derivatives (the scale benchmark).
_MIN_VOTES: Final = 2
#: Buckets fuller than this (the keys of common texture) are not read: they cost most of the
#: time and hold few true correspondences.
_CROWDED: Final = 256
#: The delta is folded into the tables once it holds 1/this of their rows.
_DELTA_SHARE: Final = 8
#: Photos added lately sit in small tiers of their own of at most this many rows, of which a
#: query rebuilds only the last after adds (about 0.1 s for this many), until a background
#: thread merges them into the delta (and, past an eighth, folds both into new tables); while
#: a merge lags behind the adds, they fill tier after tier.
_RECENT_ROWS: Final = 1 << 17
#: With `nearby_keys`, the first this many query descriptors (the strongest 2 of each cell of
#: the query's grid) also read the buckets of every key one bit away from theirs (multi-probe
#: LSH): 23 buckets instead of 1 per table at 22-bit keys. A surviving keypoint's descriptor
#: differs from its source's in about 38 bits of 256 after the heavier edits, so most pairs
#: differ somewhere in a 22-bit key, and the true sources of derivatives with 60% replaced
#: drew fewer than the 2 votes asked. At 100,000 photos (tuning half) probing the first 128
#: found 90.0% of them, as many as verification alone, against 81.7%, for 2.4x the
#: shortlist's time (56 against 24 ms at p50); the first 256, the same for 3.7x; all 1,667
#: asked, the same for 21x (benchmarks/shortlist_shard.py).
_PROBED: Final = 128
#: ... and more of them while their nearby buckets hold, on average, fewer rows than this per
#: table: sparse tables (a bank of a few thousand photos) cost little to probe. In a bank of
#: 122 photos (tuning half, 60% replaced, the shortlist's own code), all 1,667 found the true
#: source for 918 of the 930 queries that verification finds, the first 128 for 905, none
#: for 882.
_PROBED_ROWS: Final = 32768
#: Descriptor rows read at a time while a written shortlist's tables are built (32 MB).
_PIECE_ROWS = 1 << 20


def _check_byte(table: int) -> int:
    """The descriptor byte a table keeps beside each row: the one after its key's bytes."""
    return 8 * table + 3


def _read_in_pieces(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, the next rows) of a file of descriptors, read (not mapped: the pages of a
    mapping count against the process until it lets go of it)."""
    with path.open("rb") as fh:
        first = 0
        while piece := fh.read(32 * _PIECE_ROWS):
            chunk = np.frombuffer(piece, np.uint8).reshape(-1, 32)
            yield first, chunk
            first += len(chunk)


def _mapped(path: Path, dtype: type, shape: tuple[int, int]) -> np.ndarray:
    """A file's bytes as a read-only array, its pages read only when touched and one at a
    time: a query touches a few bytes here and there, and the kernel's read-ahead (128 KB
    per touch) made a shard bigger than memory read 500 MB/s from disk and evict the pages
    other queries needed."""
    with path.open("rb") as fh:
        mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    mapping.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapping, dtype).reshape(shape)


def _key_bits(rows: int) -> int:
    """The key width that leaves about `_BUCKET_ROWS` rows in a bucket of tables of `rows`."""
    fewest, most = _KEY_BITS
    return min(most, max(fewest, round(math.log2(max(rows, 1) / _BUCKET_ROWS))))


def _keys(descriptors: np.ndarray, key_bits: int) -> np.ndarray:
    """(n, 32) uint8 -> (tables, n) uint32 keys."""
    return _kernels.byte_keys(np.ascontiguousarray(descriptors, dtype=np.uint8), _TABLES, key_bits)


def _rows(descriptors: np.ndarray) -> np.ndarray:
    """A tier's descriptors as (n, 32) bytes."""
    return descriptors.view(np.uint8).reshape(-1, 32)


def _end(tier: _Tier) -> int:
    """The number of the photo after a tier's last."""
    return tier.first_photo + len(tier.counts)


def _rebuilt(tier: _Tier, key_bits: int) -> _Tier:
    """A tier of the same photos with keys of another width."""
    return _Tier(
        tier.first_photo, _rows(tier.descriptors), tier.counts, offsets=False, key_bits=key_bits
    )


class _Tier:
    """Rows of some photos, grouped by key per table: the tables (bucket offsets), or the
    delta or the recent photos (sorted keys, binary search)."""

    def __init__(
        self,
        first_photo: int,
        descriptors: np.ndarray,
        counts: np.ndarray,
        *,
        offsets: bool,
        key_bits: int,
        built: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.first_photo = first_photo
        self.key_bits = key_bits
        self.counts = counts  # rows per photo
        self.first_rows = np.cumsum(counts) - counts  # photo (from first_photo) -> first row
        self.descriptors = descriptors.view(np.uint64).reshape(-1, 4)  # 256 bits per row
        if built is not None:  # tables saved before (`KeypointShortlist.open`)
            self.rows: np.ndarray = built["rows"]
            self.checks: np.ndarray = built["checks"]
            self.offsets: np.ndarray | None = built["offsets"]
            self.keys: np.ndarray = np.empty((_TABLES, 0), np.uint32)
            return
        keys = _keys(descriptors, key_bits)
        size = descriptors.shape[0]
        self.rows = np.empty((_TABLES, size), np.uint32)
        self.checks = np.empty((_TABLES, size), np.uint8)
        self.keys = np.empty((_TABLES, 0 if offsets else size), np.uint32)
        self.offsets = np.empty((_TABLES, (1 << key_bits) + 1), np.uint32) if offsets else None
        for t in range(_TABLES):
            if self.offsets is not None:
                # A counting sort (keys are 20-24 bits): NumPy's stable argsort took most of
                # the 50 s that building the tables of 100,000 photos took.
                order, self.offsets[t] = _kernels.counting_sort(keys[t], 1 << key_bits)
            else:  # a delta: small, and its time must not grow with the number of buckets
                order = np.argsort(keys[t], kind="stable").astype(np.uint32)
                self.keys[t] = keys[t][order]
            self.rows[t] = order
            self.checks[t] = descriptors[order, _check_byte(t)]

    def bucket(self, table: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each key's rows start in this table's order, and how many there are."""
        if self.offsets is not None:
            start = self.offsets[table][keys].astype(np.int64)
            return start, self.offsets[table][keys + 1].astype(np.int64) - start
        start = np.searchsorted(self.keys[table], keys, side="left").astype(np.int64)
        return start, np.searchsorted(self.keys[table], keys, side="right") - start

    def photos(self, rows: np.ndarray) -> np.ndarray:
        """Photo numbers of rows (numbered from this tier's first row)."""
        return self.first_photo + np.searchsorted(self.first_rows, rows, side="right") - 1


class KeypointShortlist:
    """Photos (by entry id) and their descriptors; `candidates` ranks them for a query.
    Buckets holding more than `crowded` rows (common texture) are not read. Keys take
    `key_bits` (8-24) bits of each table's three bytes, or by default as many as the size of
    the tables calls for when they are built (20-24). With `nearby_keys`, a query's strongest
    descriptors also read the buckets of keys one bit away from theirs (`_PROBED`)."""

    def __init__(
        self,
        *,
        share_votes: bool = False,
        crowded: int = _CROWDED,
        key_bits: int | None = None,
        nearby_keys: bool = False,
    ) -> None:
        if key_bits is not None and not 8 <= key_bits <= 24:
            raise ValueError(f"key_bits must be 8 to 24, not {key_bits}")
        self._share_votes = share_votes
        self._nearby_keys = nearby_keys
        self._crowded = crowded
        self._key_bits = key_bits
        self._entries: list[int] = []  # photo number -> entry id
        self._number: dict[int, int] = {}
        self._removed = bytearray()
        self._pending: list[np.ndarray] = []  # descriptors of photos added since the last build
        self._tables: _Tier | None = None
        self._delta: _Tier | None = None
        # Photos added lately: tiers of at most `_RECENT_ROWS` rows each (more of them only
        # while a merge lags behind the adds), oldest first.
        self._recent: tuple[_Tier, ...] = ()
        # Adds and removals take `_state` briefly; a build of the recent photos' tier (or of
        # the first tables) holds `_building` throughout and `_state` only to take the pending
        # photos. A merge or fold holds `_folding` throughout and `_building` only to take the
        # tiers it reads and to swap the new ones in.
        self._state = threading.Lock()
        self._building = threading.Lock()
        self._folding = threading.Lock()

    def __len__(self) -> int:
        return len(self._number)

    @property
    def prepared(self) -> bool:
        """Whether every photo added is in one of the tiers (no build is due or under
        way)."""
        return not self._pending and not self._building.locked()

    @property
    def fold_due(self) -> bool:
        """Whether the photos added lately hold `_RECENT_ROWS` rows: `prepare` merges them
        into the delta, or folds both into new tables."""
        return sum(t.descriptors.shape[0] for t in self._recent) >= _RECENT_ROWS

    @property
    def folding(self) -> bool:
        """Whether a merge or fold is under way (in `prepare`, on another thread)."""
        return self._folding.locked()

    def add(self, entry_id: int, descriptors: np.ndarray) -> None:
        # A copy: a view would keep its base alive (a signature's 1,024 descriptors for 512).
        kept = np.array(descriptors, dtype=np.uint8, order="C")
        with self._state:
            if entry_id in self._number:
                return
            self._number[entry_id] = len(self._entries)
            self._entries.append(entry_id)
            self._removed.append(0)
            self._pending.append(kept)

    def remove(self, entry_ids: Iterable[int]) -> None:
        with self._state:
            for entry_id in entry_ids:
                number = self._number.pop(entry_id, None)
                if number is not None:
                    self._removed[number] = 1

    @classmethod
    def write(
        cls,
        folder: Path,
        photos: Iterable[tuple[int, np.ndarray]],
        *,
        share_votes: bool = False,
        crowded: int = _CROWDED,
        key_bits: int | None = None,
        nearby_keys: bool = False,
    ) -> None:
        """Writes a shortlist of `photos` (distinct entry ids, each with its descriptors) to
        `folder` for `open`, without holding it: the descriptors go to a file as they come,
        then each table is built from that file in turn. Built in memory, the shortlist of an
        investigation's 100,000 images held 3 GB at once (descriptors, then every table's keys,
        rows and check bytes together); written this way, one table's keys and rows (about 0.4
        GB)."""
        cls(key_bits=key_bits)  # the same checks as a shortlist held in memory
        folder.mkdir(parents=True, exist_ok=True)
        entries, counts = [], []
        with (folder / "descriptors.bin").open("wb") as out:
            for entry_id, descriptors in photos:
                block = np.ascontiguousarray(descriptors, np.uint8)
                out.write(block.data)
                entries.append(entry_id)
                counts.append(block.shape[0])
        size = sum(counts)
        key_bits = key_bits or _key_bits(size)
        offsets = np.zeros((_TABLES, (1 << key_bits) + 1), np.uint32)
        with (
            (folder / "rows.bin").open("wb") as row_file,
            (folder / "checks.bin").open("wb") as check_file,
        ):
            for t in range(_TABLES):
                keys, column = np.empty(size, np.uint32), np.empty(size, np.uint8)
                for first, chunk in _read_in_pieces(folder / "descriptors.bin"):
                    piece = slice(first, first + len(chunk))
                    key_bytes = np.ascontiguousarray(chunk[:, 8 * t : 8 * t + 3])
                    keys[piece] = _kernels.byte_keys(key_bytes, 1, key_bits)[0]
                    column[piece] = chunk[:, _check_byte(t)]
                order, offsets[t] = _kernels.counting_sort(keys, 1 << key_bits)
                del keys
                row_file.write(order.data)
                check_file.write(column[order].data)
        np.save(folder / "entries.npy", np.array(entries, np.int64))
        np.save(folder / "counts.npy", np.array(counts, np.int64))
        np.save(folder / "offsets.npy", offsets)
        settings = {
            "version": 2,
            "share_votes": share_votes,
            "crowded": crowded,
            "key_bits": key_bits,
            "nearby_keys": nearby_keys,
        }
        (folder / "shortlist.json").write_text(json.dumps(settings))

    @classmethod
    def open(cls, folder: Path) -> KeypointShortlist:
        """The shortlist `write` wrote to `folder`, its tables mapped read-only from the files
        (processes that open one folder share its pages); what is added to it later is held
        in memory."""
        settings = json.loads((folder / "shortlist.json").read_text())
        key_bits = settings.get("key_bits", _KEY_BITS[0])  # written before keys widened
        shortlist = cls(
            share_votes=settings["share_votes"],
            crowded=settings["crowded"],
            key_bits=key_bits,
            nearby_keys=settings.get("nearby_keys", False),  # written before they were read
        )
        entries = np.load(folder / "entries.npy").tolist()
        counts = np.load(folder / "counts.npy")
        shortlist._entries = entries
        shortlist._removed = bytearray(len(entries))
        shortlist._number = {e: n for n, e in enumerate(entries)}
        size = int(counts.sum())
        if size:  # a file of no bytes cannot be mapped
            built = {
                "rows": _mapped(folder / "rows.bin", np.uint32, (_TABLES, size)),
                "checks": _mapped(folder / "checks.bin", np.uint8, (_TABLES, size)),
                "offsets": np.load(folder / "offsets.npy", mmap_mode="r"),
            }
            descriptors = _mapped(folder / "descriptors.bin", np.uint8, (size, 32))
            shortlist._tables = _Tier(
                0, descriptors, counts, offsets=True, key_bits=key_bits, built=built
            )
        return shortlist

    def prepare(self, *, fold: bool = True) -> None:
        """Builds the photos added since the last build into the last tier of recent photos,
        or the first tables, so that no query waits for it; with `fold`, then merges the recent
        photos into the delta, and folds the delta into new tables once it holds an eighth of
        their rows (15 s at 100,000 photos), unless that is under way already. Meanwhile
        `candidates` answers from the tiers as they were, photos added included. A service
        calls it in the background."""
        self._prepared()
        if not fold or not self._recent or not self._folding.acquire(blocking=False):
            return
        try:
            self._fold()
        finally:
            self._folding.release()

    def _fold(self) -> None:
        with self._building:  # the tiers as they are now (another fold may have run)
            tables, delta, recent = self._tables, self._delta, self._recent
        if tables is None or not recent:
            return
        parts = [delta, *recent] if delta is not None else list(recent)
        descriptors = np.concatenate([_rows(t.descriptors) for t in parts])
        counts = np.concatenate([t.counts for t in parts])
        bits = tables.key_bits
        if descriptors.shape[0] * _DELTA_SHARE > tables.descriptors.shape[0]:  # a fold
            descriptors = np.concatenate([_rows(tables.descriptors), descriptors])
            counts = np.concatenate([tables.counts, counts])
            bits = self._key_bits or _key_bits(descriptors.shape[0])
            tables = _Tier(0, descriptors, counts, offsets=True, key_bits=bits)
            delta = None
        else:  # the recent photos merged into the delta
            delta = _Tier(parts[0].first_photo, descriptors, counts, offsets=False, key_bits=bits)
        del descriptors
        merged = _end(recent[-1])  # the first photo not merged
        while True:
            # The recent photos as queries built them meanwhile: the merged ones (the last
            # tier perhaps grown), then those added since, which stay recent; rebuilt here and
            # swapped in under the lock if no query built them again meanwhile.
            with self._building:
                now = self._recent
            rest = [t for t in now if t.first_photo >= merged]
            grown = next((t for t in now if t.first_photo < merged < _end(t)), None)
            if grown is not None:
                skip = merged - grown.first_photo
                first_row = int(grown.counts[:skip].sum())
                rest.insert(
                    0,
                    _Tier(
                        merged,
                        _rows(grown.descriptors)[first_row:],
                        grown.counts[skip:],
                        offsets=False,
                        key_bits=bits,
                    ),
                )
            if any(t.key_bits != bits for t in rest):  # the fold widened the keys
                rest = [_rebuilt(t, bits) for t in rest]
            with self._building:
                if self._recent is now:
                    self._tables, self._delta, self._recent = tables, delta, tuple(rest)
                    return

    def _prepared(self) -> tuple[_Tier | None, ...]:
        """The tiers with every photo added so far, the recent photos' or the first tables
        built if need be; taken while no other build runs, so a build under way is never seen
        half done."""
        with self._building:
            with self._state:
                chunks, self._pending = self._pending, []
                first_photo = len(self._entries) - len(chunks)
            if chunks:
                self._build(chunks, first_photo)
            return (self._tables, self._delta, *self._recent)

    def _build(self, chunks: list[np.ndarray], first_photo: int) -> None:
        added = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        counts = np.array([len(d) for d in chunks], np.int64)
        if self._tables is None:  # the first tables
            bits = self._key_bits or _key_bits(added.shape[0])
            self._tables = _Tier(0, added, counts, offsets=True, key_bits=bits)
            return
        kept = self._recent
        last = kept[-1] if kept else None
        if last is not None and last.descriptors.shape[0] + added.shape[0] <= _RECENT_ROWS:
            # The last tier so far, then the new photos (a tier past the limit is left as it
            # is: while a merge lags behind the adds, a query builds no more than that).
            first_photo = last.first_photo
            added = np.concatenate([_rows(last.descriptors), added])
            counts = np.concatenate([last.counts, counts])
            kept = kept[:-1]
        bits = self._tables.key_bits
        self._recent = (*kept, _Tier(first_photo, added, counts, offsets=False, key_bits=bits))

    def _probed(self, tiers: tuple[_Tier | None, ...], asked: int) -> int:
        """How many of a query's first descriptors read nearby keys: `_PROBED`, or more while
        the rows they read stay under `_PROBED_ROWS` a table; counted on the tables (the
        smaller tiers, searched key by key, cost more per key than they hold rows)."""
        if not self._nearby_keys:
            return 0
        tier = next((t for t in tiers if t is not None), None)
        if tier is None:
            return 0
        per_bucket = tier.rows.shape[1] / (1 << tier.key_bits)
        affordable = _PROBED_ROWS / (tier.key_bits * max(per_bucket, 1e-9))
        return min(asked, max(_PROBED, int(affordable)))

    def candidates(self, descriptors: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """Up to `limit` (entry id, votes), most first; photos found by fewer than 2 query
        descriptors are left out."""
        tiers = self._prepared()
        with self._state:  # photos added from here on are not in these tiers
            held, removed = len(self._entries), bytes(self._removed)
        if descriptors.shape[0] > _ASKED:
            descriptors = np.concatenate([descriptors[:_ASKED], descriptors[_ASKED::3]])
        if not self._number or descriptors.shape[0] == 0:
            return []
        query = np.ascontiguousarray(descriptors, dtype=np.uint8).view(np.uint64)
        keys = {t.key_bits: _keys(descriptors, t.key_bits) for t in tiers if t is not None}
        checks = [np.ascontiguousarray(descriptors[:, _check_byte(t)]) for t in range(_TABLES)]
        probed = self._probed(tiers, len(query))
        pairs, apart = [], []
        for tier in tiers:
            if tier is None:
                continue
            # Who asks each key: every query descriptor its own, then the first `probed`
            # the keys one bit away from theirs, bit by bit.
            flips = np.uint32(1) << np.arange(tier.key_bits, dtype=np.uint32)
            who = np.r_[np.arange(len(query)), np.tile(np.arange(probed), tier.key_bits)]
            asked = query[who] if probed else query  # no copies where nothing is probed
            for t in range(_TABLES):
                own = keys[tier.key_bits][t]
                keys_asked = np.r_[own, (own[:probed] ^ flips[:, None]).ravel()] if probed else own
                start, lengths = tier.bucket(t, keys_asked)
                lengths[lengths > self._crowded] = 0
                asking, rows, bits = _kernels.close_rows(
                    start,
                    lengths,
                    tier.rows[t],
                    tier.checks[t],
                    tier.descriptors,
                    asked,
                    checks[t][who] if probed else checks[t],
                    _CHECK_BITS,
                    _CLOSE,
                )
                pairs.append(who[asking] * held + tier.photos(rows))
                apart.append(bits)
        both = np.concatenate(pairs) if pairs else np.zeros(0, np.int64)
        if both.size == 0:
            return []
        # One vote per query descriptor and photo (weighed by its closest pair).
        if self._share_votes:
            bits = np.concatenate(apart)
            order = np.lexsort((bits, both))
            both, bits = both[order], bits[order]
            first = np.flatnonzero(np.r_[True, both[1:] != both[:-1]])
            found, weight = both[first], np.exp(-bits[first] / _CLOSENESS)
        else:
            found = np.unique(both)
            weight = np.ones(found.size)
        voters, photos = np.divmod(found, held)
        kept = np.frombuffer(removed, np.uint8)[photos] == 0
        voters, photos, weight = voters[kept], photos[kept], weight[kept]
        counted = np.bincount(photos, minlength=held)
        if self._share_votes:
            share = weight / np.bincount(voters)[voters]
            votes = np.bincount(photos, weights=share, minlength=held)
        else:
            votes = counted.astype(float)
        voted = np.flatnonzero(counted >= _MIN_VOTES)
        if voted.size > limit:  # only the best `limit` are ordered, not every photo
            voted = voted[np.argpartition(-votes[voted], limit - 1)[:limit]]
        best = voted[np.lexsort((voted, -votes[voted]))]
        return [(self._entries[n], round(float(votes[n]), 6)) for n in best]

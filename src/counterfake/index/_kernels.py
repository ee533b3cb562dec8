"""Compiled loops of the multi-index Hamming search and of the keypoint shortlist (Numba;
compiled once, cached on disk). They release the GIL: a lookup goes on while another thread
builds an index."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK = 16  # keys per stored table offset (_bucket shifts by 4)


@njit(cache=True, inline="always")
def popcount64(x: np.uint64) -> np.int64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, inline="always")
def distance(codes: np.ndarray, slot: np.int64, query: np.ndarray) -> np.int64:
    return (
        popcount64(codes[slot, 0] ^ query[0])
        + popcount64(codes[slot, 1] ^ query[1])
        + popcount64(codes[slot, 2] ^ query[2])
        + popcount64(codes[slot, 3] ^ query[3])
    )


@njit(cache=True, nogil=True)
def substring_keys(codes: np.ndarray, bitpos: np.ndarray, table: int) -> np.ndarray:
    """Key of every code in one table: the code's bits at bitpos[table], packed low to high."""
    n = codes.shape[0]
    bits = bitpos.shape[1]
    keys = np.zeros(n, dtype=np.uint32)
    words = bitpos[table] >> 6
    shifts = (bitpos[table] & 63).astype(np.uint64)
    for i in range(n):
        key = np.uint32(0)
        for j in range(bits):
            bit = (codes[i, words[j]] >> shifts[j]) & np.uint64(1)
            key |= np.uint32(bit) << np.uint32(j)
        keys[i] = key
    return keys


@njit(cache=True, nogil=True)
def key_counts(keys: np.ndarray, buckets: int) -> np.ndarray:
    """How many codes have each key (NumPy's bincount would hold the GIL meanwhile)."""
    counts = np.zeros(buckets, dtype=np.int64)
    for key in keys:
        counts[key] += 1
    return counts


@njit(cache=True, nogil=True)
def fill_members(keys: np.ndarray, first: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
    """Counting sort of slots by key; each slot split into its low 16 bits and the rest."""
    fill = first.copy()
    for slot in range(keys.shape[0]):
        at = fill[keys[slot]]
        fill[keys[slot]] += 1
        low[at] = slot & 0xFFFF
        high[at] = slot >> 16


@njit(cache=True, nogil=True)
def fold_table(
    starts: np.ndarray,
    ends: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    keys: np.ndarray,
    first_slot: int,
    new_starts: np.ndarray,
    new_ends: np.ndarray,
    new_low: np.ndarray,
    new_high: np.ndarray,
) -> int:
    """One table with codes appended at slots `first_slot` onwards (their `keys` in slot
    order): each key's old members copied in order, then its new ones, as `fill_members`
    over all slots would place them. Returns the largest end within a block, which the
    caller checks against `new_ends`' type (written modulo it)."""
    order, first = counting_sort(keys, ends.shape[0])
    added = 0  # new members placed so far: old members move up by this much
    copied = 0  # old members copied so far
    largest = 0
    for block in range(ends.shape[0] // BLOCK):
        block_start = np.int64(starts[block])
        new_starts[block] = block_start + added
        added_before = added
        for key in range(block * BLOCK, (block + 1) * BLOCK):
            if first[key + 1] > first[key]:
                end = block_start + np.int64(ends[key])
                new_low[copied + added : end + added] = low[copied:end]
                new_high[copied + added : end + added] = high[copied:end]
                copied = end
                for i in range(first[key], first[key + 1]):
                    slot = first_slot + np.int64(order[i])
                    new_low[end + added] = slot & 0xFFFF
                    new_high[end + added] = slot >> 16
                    added += 1
            within = np.int64(ends[key]) + added - added_before
            new_ends[key] = within
            largest = max(largest, within)
    old = low.shape[0]
    new_low[copied + added : old + added] = low[copied:old]
    new_high[copied + added : old + added] = high[copied:old]
    new_starts[ends.shape[0] // BLOCK] = old + added
    return largest


@njit(cache=True, inline="always")
def _member(low: np.ndarray, high: np.ndarray, i: np.int64) -> np.int64:
    return np.int64(low[i]) | (np.int64(high[i]) << 16)


@njit(cache=True, inline="always")
def is_alive(alive: np.ndarray, slot: np.int64) -> bool:
    return (alive[slot >> 3] >> (slot & 7)) & 1 != 0


_PENDING = 1024  # candidate slots gathered before they are checked


@njit(cache=True, inline="always")
def _bucket(key: np.int64, starts: np.ndarray, counts: np.ndarray) -> tuple[np.int64, np.int64]:
    # Offsets are kept per block of 16 keys, each key's end relative to its block's start.
    block_start = np.int64(starts[key >> 4])
    begin = block_start if key & 15 == 0 else block_start + np.int64(counts[key - 1])
    return begin, block_start + np.int64(counts[key])


@njit(cache=True, inline="always")
def _verify(
    pending: np.ndarray,
    n_pending: int,
    codes: np.ndarray,
    alive: np.ndarray,
    query: np.ndarray,
    radius: int,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
    found: int,
) -> int:
    """Check gathered candidates. Decoding slots first and checking them in a tight loop lets
    the processor fetch many codes from memory at once: that fetch is the search's real cost."""
    for c in range(n_pending):
        slot = pending[c]
        d = distance(codes, slot, query)
        # Tombstones are rare: checking them only for hits saves a memory access per candidate.
        if d <= radius and is_alive(alive, slot):
            duplicate = False
            for j in range(min(found, out_slots.shape[0])):
                if out_slots[j] == slot:
                    duplicate = True
                    break
            if not duplicate:
                # Past the buffer we only count; the caller retries with room for all.
                if found < out_slots.shape[0]:
                    out_slots[found] = slot
                    out_dist[found] = d
                found += 1
    return found


@njit(cache=True, nogil=True)
def search_table(
    t: int,
    query: np.ndarray,
    radius: int,
    rho: int,
    bitpos: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    codes: np.ndarray,
    alive: np.ndarray,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
    found: int,
) -> int:
    """Probe every key of table t within rho of the query's key."""
    if rho < 0:
        return found
    bits = bitpos.shape[1]
    base = np.int64(0)
    for j in range(bits):
        bit = (query[bitpos[t, j] >> 6] >> np.uint64(bitpos[t, j] & 63)) & np.uint64(1)
        base |= np.int64(bit) << j
    table_starts, table_counts, table_low, table_high = starts[t], counts[t], low[t], high[t]
    pending = np.empty(_PENDING, dtype=np.int64)
    n_pending = 0
    flips = np.zeros(max(rho, 1), dtype=np.int64)
    # Key 0 is the query's own; then every set of 1..rho distinct bit flips, in order.
    for k in range(0, rho + 1):
        for i in range(k):
            flips[i] = i
        while True:
            key = base
            for i in range(k):
                key ^= np.int64(1) << flips[i]
            begin, end = _bucket(key, table_starts, table_counts)
            for i in range(begin, end):
                if n_pending == _PENDING:
                    found = _verify(
                        pending,
                        n_pending,
                        codes,
                        alive,
                        query,
                        radius,
                        out_slots,
                        out_dist,
                        found,
                    )
                    n_pending = 0
                pending[n_pending] = _member(table_low, table_high, i)
                n_pending += 1
            if k == 0:
                break
            i = k - 1
            while i >= 0 and flips[i] == bits - k + i:
                i -= 1
            if i < 0:
                break
            flips[i] += 1
            for j in range(i + 1, k):
                flips[j] = flips[j - 1] + 1
    return _verify(pending, n_pending, codes, alive, query, radius, out_slots, out_dist, found)


@njit(cache=True, nogil=True)
def search_one(
    query: np.ndarray,
    radius: int,
    rhos: np.ndarray,
    bitpos: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    codes: np.ndarray,
    alive: np.ndarray,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
) -> int:
    """Every live slot within `radius` (pigeonhole over the tables), without duplicates."""
    found = 0
    for t in range(bitpos.shape[0]):
        found = search_table(
            t,
            query,
            radius,
            rhos[t],
            bitpos,
            starts,
            counts,
            low,
            high,
            codes,
            alive,
            out_slots,
            out_dist,
            found,
        )
    return found


@njit(cache=True, parallel=True, nogil=True)
def search_split(
    query: np.ndarray,
    radius: int,
    rhos: np.ndarray,
    bitpos: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    codes: np.ndarray,
    alive: np.ndarray,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
    out_count: np.ndarray,
) -> None:
    """One query, its tables spread over the cores; row t holds table t's hits (the same slot
    may appear in several rows: the caller removes duplicates)."""
    for t in prange(bitpos.shape[0]):
        out_count[t] = search_table(
            t,
            query,
            radius,
            rhos[t],
            bitpos,
            starts,
            counts,
            low,
            high,
            codes,
            alive,
            out_slots[t],
            out_dist[t],
            0,
        )


@njit(cache=True, nogil=True)
def scan(
    codes: np.ndarray,
    alive: np.ndarray,
    count: int,
    query: np.ndarray,
    radius: int,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
) -> int:
    """Brute force over the first `count` slots (the delta buffer, or any radius)."""
    found = 0
    for slot in range(count):
        if not is_alive(alive, slot):
            continue
        d = distance(codes, slot, query)
        if d <= radius:
            if found < out_slots.shape[0]:
                out_slots[found] = slot
                out_dist[found] = d
            found += 1
    return found


@njit(cache=True, inline="always")
def _search_row(
    queries: np.ndarray,
    radius: int,
    rhos: np.ndarray,
    bitpos: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    codes: np.ndarray,
    alive: np.ndarray,
    use_tables: bool,
    limit: int,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
    out_count: np.ndarray,
    q: int,
) -> None:
    if use_tables:
        out_count[q] = search_one(
            queries[q],
            radius,
            rhos,
            bitpos,
            starts,
            counts,
            low,
            high,
            codes,
            alive,
            out_slots[q],
            out_dist[q],
        )
    else:
        out_count[q] = scan(codes, alive, limit, queries[q], radius, out_slots[q], out_dist[q])


@njit(cache=True, nogil=True)
def search_serial(
    queries: np.ndarray,
    radius: int,
    rhos: np.ndarray,
    bitpos: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    codes: np.ndarray,
    alive: np.ndarray,
    use_tables: bool,
    limit: int,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
    out_count: np.ndarray,
) -> None:
    """search_many without the thread start-up: for one query or a handful."""
    for q in range(queries.shape[0]):
        _search_row(
            queries,
            radius,
            rhos,
            bitpos,
            starts,
            counts,
            low,
            high,
            codes,
            alive,
            use_tables,
            limit,
            out_slots,
            out_dist,
            out_count,
            q,
        )


@njit(cache=True, parallel=True, nogil=True)
def search_many(
    queries: np.ndarray,
    radius: int,
    rhos: np.ndarray,
    bitpos: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    codes: np.ndarray,
    alive: np.ndarray,
    use_tables: bool,
    limit: int,
    out_slots: np.ndarray,
    out_dist: np.ndarray,
    out_count: np.ndarray,
) -> None:
    """Batched search over the queries in parallel; row q of the outputs holds query q's hits."""
    for q in prange(queries.shape[0]):
        _search_row(
            queries,
            radius,
            rhos,
            bitpos,
            starts,
            counts,
            low,
            high,
            codes,
            alive,
            use_tables,
            limit,
            out_slots,
            out_dist,
            out_count,
            q,
        )


@njit(cache=True, nogil=True)
def close_rows(
    starts: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    checks: np.ndarray,
    descriptors: np.ndarray,
    query: np.ndarray,
    query_checks: np.ndarray,
    check_bits: int,
    close: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (query descriptor, row, bits apart) of the rows within `close` bits, of those in
    each query descriptor's bucket (`starts`, `lengths`) whose check byte is within
    `check_bits`.

    Two passes: the check bytes are read in bucket order, then the full descriptors of those
    that pass, one random read each, with no branch between reads so that the processor
    keeps several in flight (3.6x NumPy's gather at 100,000 photos)."""
    total = 0
    for i in range(starts.shape[0]):
        total += lengths[i]
    asking = np.empty(total, np.int64)
    found = np.empty(total, np.int64)
    n = 0
    for i in range(starts.shape[0]):
        check = np.uint64(query_checks[i])
        for at in range(starts[i], starts[i] + lengths[i]):
            asking[n] = i
            found[n] = rows[at]
            n += popcount64(np.uint64(checks[at]) ^ check) <= check_bits
    kept = 0
    bits = np.empty(n, np.int64)
    for k in range(n):
        apart = distance(descriptors, found[k], query[asking[k]])
        if apart <= close:
            asking[kept] = asking[k]
            found[kept] = found[k]
            bits[kept] = apart
            kept += 1
    return asking[:kept], found[:kept], bits[:kept]


@njit(cache=True, nogil=True)
def counting_sort(keys: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """The stable order of `keys` (each below `buckets`), and where each key's run starts in
    it (`buckets` + 1 offsets, the last the total)."""
    starts = np.zeros(buckets + 1, np.int64)
    starts[1:] = np.cumsum(key_counts(keys, buckets))
    fill = starts[:-1].copy()
    order = np.empty(keys.shape[0], np.uint32)
    for i in range(keys.shape[0]):
        key = keys[i]
        order[fill[key]] = i
        fill[key] += 1
    return order, starts


@njit(cache=True, nogil=True)
def byte_keys(descriptors: np.ndarray, tables: int, bits: int) -> np.ndarray:
    """(n, 32) uint8 -> (tables, n) keys: the first `bits` bits of bytes 8t, 8t+1, 8t+2 for
    table t, in one pass over the rows (NumPy, column by column, took 4 s at 50M rows)."""
    n = descriptors.shape[0]
    keys = np.empty((tables, n), np.uint32)
    shift = 24 - bits
    for i in range(n):
        for t in range(tables):
            b = 8 * t
            value = (
                (np.uint32(descriptors[i, b]) << 16)
                | (np.uint32(descriptors[i, b + 1]) << 8)
                | np.uint32(descriptors[i, b + 2])
            )
            keys[t, i] = value >> shift
    return keys

"""Multi-index hashing returns exactly what brute force returns: any radius, adds, removals,
duplicates, the delta buffer and merges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterfake.index import LinearHammingIndex, MultiIndexHammingIndex
from counterfake.index import hamming as hamming_module
from counterfake.index import mih as mih_module


def _flip(code: np.ndarray, bits: list[int]) -> np.ndarray:
    out = code.copy()
    for bit in bits:
        out[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return out


def _clustered(rng: np.random.Generator, n: int, centres: int = 5) -> np.ndarray:
    """Codes bunched around a few centres, the shape real banks have."""
    base = rng.integers(0, 2**64 - 1, size=(centres, 4), dtype=np.uint64, endpoint=True)
    codes = base[rng.integers(0, centres, size=n)].copy()
    for row in codes:
        for bit in rng.choice(256, size=rng.integers(0, 40), replace=False):
            row[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return codes


def _same(a: list[list[tuple[int, int]]], b: list[list[tuple[int, int]]]) -> bool:
    return [sorted(x) for x in a] == [sorted(x) for x in b]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    radius=st.integers(0, 70),
    removed=st.sets(st.integers(0, 299), max_size=60),
    clustered=st.booleans(),
)
def test_search_equals_brute_force(
    seed: int, n: int, radius: int, removed: set[int], clustered: bool
) -> None:
    rng = np.random.default_rng(seed)
    codes = (
        _clustered(rng, n)
        if clustered
        else rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)
    )
    ids = rng.permutation(10_000)[:n]
    index = MultiIndexHammingIndex(ids, codes)
    brute = LinearHammingIndex()
    brute.add(ids.tolist(), codes)
    gone = [int(ids[i]) for i in removed if i < n]
    index.remove(gone)
    brute.remove(gone)
    queries = np.stack(
        [
            _flip(codes[i % n], list(rng.choice(256, size=rng.integers(0, 41), replace=False)))
            for i in range(20)
        ]
        if n
        else [rng.integers(0, 2**63, size=4, dtype=np.uint64)]
    )
    assert len(index) == len(brute)
    assert _same(index.search(queries, radius), brute.search(queries, radius))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 60))
def test_incremental_adds_and_removes_track_brute_force(seed: int, steps: int) -> None:
    rng = np.random.default_rng(seed)
    start = _clustered(rng, 100)
    index = MultiIndexHammingIndex(np.arange(100), start)
    brute = LinearHammingIndex()
    brute.add(list(range(100)), start)
    next_id = 100
    for _ in range(steps):
        action = rng.integers(0, 3)
        if action == 0:  # add a new code near an existing one
            code = _flip(start[rng.integers(0, 100)], list(rng.choice(256, 10, replace=False)))
            index.add([next_id], code[None, :])
            brute.add([next_id], code[None, :])
            next_id += 1
        elif action == 1:  # remove some id (maybe already gone, maybe never there)
            victim = int(rng.integers(0, next_id + 5))
            index.remove([victim])
            brute.remove([victim])
        else:  # re-add an existing id with a new code: it replaces the old one
            victim = int(rng.integers(0, next_id))
            code = rng.integers(0, 2**63, size=(1, 4), dtype=np.uint64)
            index.add([victim], code)
            brute.add([victim], code)
        query = start[rng.integers(0, 100)][None, :]
        assert _same(index.search(query, 31), brute.search(query, 31))
        assert len(index) == len(brute)


def test_duplicate_codes_under_different_ids_are_all_found() -> None:
    code = np.array([[7, 7, 7, 7]], dtype=np.uint64)
    index = MultiIndexHammingIndex([1, 2, 3], np.repeat(code, 3, axis=0))
    assert sorted(index.search(code, 0)[0]) == [(1, 0), (2, 0), (3, 0)]


def test_merge_keeps_everything_and_removals_stay_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mih_module, "_MIN_DELTA", 10)
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 2**63, size=(200, 4), dtype=np.uint64)
    index = MultiIndexHammingIndex(np.arange(100), codes[:100])
    index.remove([5])
    index.add(list(range(100, 200)), codes[100:])  # past the delta limit: merged
    assert index._delta_n == 0
    assert len(index) == 199
    assert index.search(codes[5:6], 0) == [[]]
    assert index.search(codes[150:151], 0) == [[(150, 0)]]


def test_a_delta_past_its_bound_is_merged_however_large_the_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every search scans the delta, so it is merged at `MAX_DELTA` codes even while that is
    under an eighth of the tables."""
    monkeypatch.setattr(mih_module, "_MIN_DELTA", 10)
    monkeypatch.setattr(hamming_module, "MAX_DELTA", 50)
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 2**63, size=(1060, 4), dtype=np.uint64)
    index = MultiIndexHammingIndex(np.arange(1000), codes[:1000])  # an eighth: 125
    index.add(list(range(1000, 1040)), codes[1000:1040])
    assert index.pending == 40  # under the bound: scanned
    index.add(list(range(1040, 1060)), codes[1040:1060])
    assert index.pending == 0 and index.tabled == 1060
    assert index.search(codes[1050:1051], 0) == [[(1050, 0)]]


def test_many_hits_for_one_query_are_all_returned() -> None:
    code = np.array([[1, 2, 3, 4]], dtype=np.uint64)
    index = MultiIndexHammingIndex(np.arange(500), np.repeat(code, 500, axis=0))
    assert len(index.search(code, 0)[0]) == 500


def test_large_radius_falls_back_to_a_scan_and_stays_exact() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 2**63, size=(300, 4), dtype=np.uint64)
    index = MultiIndexHammingIndex(np.arange(300), codes)
    brute = LinearHammingIndex()
    brute.add(list(range(300)), codes)
    assert _same(index.search(codes[:3], 120), brute.search(codes[:3], 120))


@pytest.mark.parametrize("kind", [LinearHammingIndex, MultiIndexHammingIndex])
def test_a_snapshot_copies_out_the_index_as_it_was_when_taken(kind: type) -> None:
    """A rebuild takes a snapshot under the matcher's lock and copies it out later: changes
    made in between (adds, removals from the tables and from the delta) are not in it."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 2**63, size=(3000, 4), dtype=np.int64).view(np.uint64)
    index = kind() if kind is LinearHammingIndex else kind(np.arange(2000), codes[:2000])
    if kind is LinearHammingIndex:
        index.add(list(range(2000)), codes[:2000])
    index.add(list(range(2000, 2500)), codes[2000:2500])
    index.remove([5, 2005])
    expected_ids, expected_codes = (a.copy() for a in index.arrays())
    snapshot = index.snapshot()
    index.add(list(range(2500, 3000)), codes[2500:])
    index.remove([7, 2007, 2600])
    ids, codes_out = snapshot()
    order, expected = np.argsort(ids), np.argsort(expected_ids)
    assert np.array_equal(ids[order], expected_ids[expected])
    assert np.array_equal(codes_out[order], expected_codes[expected])
    assert len(ids) == 2498 and 7 in ids and 2007 in ids and 2600 not in ids


def _slots(index: MultiIndexHammingIndex) -> int:
    """Slots in the tables, tombstones included: a fold keeps them, a build drops them."""
    return int(index._ids.size)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rounds=st.lists(
        st.tuples(st.integers(1, 400), st.integers(0, 60), st.booleans(), st.booleans()),
        min_size=1,
        max_size=4,
    ),
)
def test_a_rebuilt_index_answers_as_brute_force_sealed_folded_or_built_afresh(
    seed: int, rounds: list[tuple[int, int, bool, bool]]
) -> None:
    """Rounds of adds (new ids, or sometimes an id held already) and removals from the tables
    and the delta, each followed by a rebuild that gives the delta tables of its own (sealed:
    the main tables and their slots stay as they were, nothing is left to scan) or folds it
    in or builds afresh, then more removals (from the tables or the sealed delta): the index
    answers exactly as a scan does."""
    rng = np.random.default_rng(seed)
    codes = _clustered(rng, 2000)
    index = MultiIndexHammingIndex(np.arange(2000), codes, merge=False)
    brute = LinearHammingIndex()
    brute.add(list(range(2000)), codes)
    next_id = 2000
    for added, removed, reuse, seal in rounds:
        ids = list(range(next_id, next_id + added))
        if reuse:  # an id held already, in the tables or the delta
            ids[0] = int(rng.integers(0, next_id))
        next_id += added
        new = _clustered(rng, added)
        index.add(ids, new)
        brute.add(ids, new)
        gone = rng.integers(0, next_id, size=removed).tolist()
        index.remove(gone)
        brute.remove(gone)
        slots = _slots(index)
        index = index.rebuilder(seal=seal)()
        if seal:
            assert index.scanned == 0 and _slots(index) == slots
            assert index.tabled + index.pending == len(index) == len(brute)
        else:
            assert index.pending == 0 and index.tabled == len(brute)
        gone = rng.integers(0, next_id, size=removed).tolist()
        index.remove(gone)
        brute.remove(gone)
        assert len(index) == len(brute)
        queries = np.concatenate([codes[:5], new[:5]])
        for radius in (0, 12, 31):
            assert _same(index.search(queries, radius), brute.search(queries, radius))


def test_a_delta_whose_scanned_tail_reaches_its_bound_gets_tables_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every search scans the delta's tail: at `MAX_SCANNED` codes the whole delta is given
    tables of its own, long before it is folded into the main ones."""
    monkeypatch.setattr(hamming_module, "MAX_SCANNED", 50)
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 2**63, size=(1101, 4), dtype=np.int64).view(np.uint64)
    index = MultiIndexHammingIndex(np.arange(1000), codes[:1000])
    index.add(list(range(1000, 1040)), codes[1000:1040])
    assert index.scanned == index.pending == 40
    index.add(list(range(1040, 1060)), codes[1040:1060])
    assert index.scanned == 0 and index.pending == 60 and index.tabled == 1000
    assert _slots(index) == 1000  # the main tables as they were

    index.remove([1010])
    index.add([1020], codes[1100:1101])  # a new code for an id in the sealed delta
    assert index.pending == 59 and index.scanned == 1 and len(index) == 1059
    assert index.search(codes[[1010, 1020, 1100, 1050, 5]], 0) == [
        [],
        [],
        [(1020, 0)],
        [(1050, 0)],
        [(5, 0)],
    ]

    build = index.rebuilder(seal=True)  # taken now; changes after it are the owner's to replay
    index.remove([1050])
    sealed = build()
    assert sealed.scanned == 0 and sealed.pending == 59
    assert sealed.search(codes[[1050, 1100]], 0) == [[(1050, 0)], [(1020, 0)]]
    assert index.search(codes[1050:1051], 0) == [[]]
    merged = sealed.rebuilder()()
    assert merged.pending == 0 and merged.tabled == 1059
    assert merged.search(codes[[1010, 1050, 1100]], 0) == [[], [(1050, 0)], [(1020, 0)]]


def test_a_delta_of_new_ids_is_folded_into_the_tables_and_others_are_built_afresh() -> None:
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 2**63, size=(7000, 4), dtype=np.int64).view(np.uint64)
    index = MultiIndexHammingIndex(np.arange(5000), codes[:5000], merge=False)
    index.remove([10, 20])
    index.add(list(range(5000, 5500)), codes[5000:5500])
    folded = index.rebuilder()()
    assert _slots(folded) == 5500 and len(folded) == 5498  # tombstones kept: a fold

    folded.add([30], codes[6000:6001])  # an id the tables hold, with a new code
    rebuilt = folded.rebuilder()()
    assert _slots(rebuilt) == len(rebuilt) == 5498  # tombstones dropped: a build
    assert rebuilt.search(codes[6000:6001], 0) == [[(30, 0)]]

    # The same table shape (8-bit substrings up to 1,024 codes), but over twice the codes
    # its substrings' bits were chosen from: built afresh, the bits chosen again.
    small = MultiIndexHammingIndex(np.arange(300), codes[:300], merge=False)
    small.remove([0])
    small.add(list(range(300, 700)), codes[300:700])
    small = small.rebuilder()()
    assert _slots(small) == 699
    small.remove([1])
    small.add(list(range(700, 800)), codes[700:800])
    assert _slots(small.rebuilder()()) == 799  # within twice: folded, the tombstone kept


def test_a_rebuilder_builds_the_index_as_it_was_when_taken() -> None:
    """Taken under the owner's lock, built off it: changes in between are not in the result
    (the matcher replays them from its journal)."""
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 2**63, size=(3000, 4), dtype=np.int64).view(np.uint64)
    index = MultiIndexHammingIndex(np.arange(2000), codes[:2000], merge=False)
    index.add(list(range(2000, 2500)), codes[2000:2500])
    index.remove([5, 2005])
    build = index.rebuilder()
    index.add(list(range(2500, 3000)), codes[2500:])
    index.remove([7, 2007])
    built = build()
    assert len(built) == 2498 and built.pending == 0
    found = {hit for row in built.search(codes[[5, 7, 2005, 2007, 2600]], 0) for hit, _ in row}
    assert found == {7, 2007}


def test_adding_what_the_tables_hold_leaves_it_there_and_the_delta_foldable() -> None:
    """A matcher replays the last changes after it loads: entries its tables hold already
    stay in place (the ids below the tables' last would stop a fold); a changed code moves."""
    rng = np.random.default_rng(10)
    codes = rng.integers(0, 2**63, size=(6001, 4), dtype=np.int64).view(np.uint64)
    index = MultiIndexHammingIndex(np.arange(5000), codes[:5000], merge=False)
    index.add(list(range(4990, 5100)), codes[4990:5100])
    assert index.pending == 100 and index.tabled == 5000
    assert _slots(index.rebuilder()()) == 5100  # folded

    index.add([7], codes[6000:6001])
    assert index.pending == 101 and index.tabled == 4999
    assert index.search(codes[[7, 6000]], 0) == [[], [(7, 0)]]

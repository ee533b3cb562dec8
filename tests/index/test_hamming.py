"""The Hamming index returns exactly what brute force returns, through adds and removals."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from counterfake.index import LinearHammingIndex

WORD = st.integers(min_value=0, max_value=2**64 - 1)
CODE = st.tuples(WORD, WORD, WORD, WORD)


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum((x ^ y).bit_count() for x, y in zip(a, b, strict=True))


@settings(max_examples=60, deadline=None)
@given(
    codes=st.lists(CODE, min_size=0, max_size=40),
    removed=st.sets(st.integers(min_value=0, max_value=39)),
    flips=st.lists(st.integers(min_value=0, max_value=255), max_size=40),
    radius=st.integers(min_value=0, max_value=128),
)
def test_search_equals_brute_force(
    codes: list[tuple[int, ...]], removed: set[int], flips: list[int], radius: int
) -> None:
    index = LinearHammingIndex()
    ids = list(range(len(codes)))
    if codes:
        index.add(ids, np.array(codes, dtype=np.uint64))
    index.remove(removed)
    live = {i: c for i, c in enumerate(codes) if i not in removed}
    assert len(index) == len(live)
    query = list(codes[0]) if codes else [0, 0, 0, 0]
    for bit in flips:
        query[bit // 64] ^= 1 << (bit % 64)
    [hits] = index.search(np.array([query], dtype=np.uint64), radius)
    expected = sorted(
        ((i, _distance(tuple(query), c)) for i, c in live.items()),
        key=lambda pair: (pair[1], pair[0]),
    )
    expected = [pair for pair in expected if pair[1] <= radius]
    assert sorted(hits, key=lambda p: (p[1], p[0])) == expected
    assert [d for _, d in hits] == sorted(d for _, d in hits)


def test_duplicate_codes_are_all_returned_and_readding_an_id_replaces_it() -> None:
    index = LinearHammingIndex()
    code = np.array([[1, 2, 3, 4]], dtype=np.uint64)
    index.add([7, 8], np.repeat(code, 2, axis=0))
    assert sorted(i for i, _ in index.search(code, 0)[0]) == [7, 8]
    index.add([7], np.array([[0, 0, 0, 0]], dtype=np.uint64))
    assert len(index) == 2
    assert [i for i, _ in index.search(code, 0)[0]] == [8]


def test_removed_id_never_returns() -> None:
    index = LinearHammingIndex()
    index.add([1], np.array([[5, 5, 5, 5]], dtype=np.uint64))
    index.remove([1])
    assert index.search(np.array([[5, 5, 5, 5]], dtype=np.uint64), 256) == [[]]

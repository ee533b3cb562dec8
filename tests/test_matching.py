"""Matching: thresholds per bank, withdrawals, low quality, exact digests, dihedral variants."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import ImageOps

from counterfake import Matcher, NewEntry, NotFoundError, PdqHash, Store, bank_entries, hash_bytes
from tests.held_tables import hold_new_tables
from tests.images import encode, photo_like

IMAGE = photo_like(640, 480, seed=31)
ORIGINAL = encode(IMAGE, "JPEG", quality=95)


def _flip_bits(hex_value: str, n: int) -> str:
    value = PdqHash.from_hex(hex_value).value
    for bit in range(n):
        value ^= 1 << (bit * 7)
    return PdqHash(value).hex


@pytest.fixture
def banked(store: Store) -> Store:
    store.create_bank("victims")
    store.add_entries("victims", bank_entries(hash_bytes(ORIGINAL), source_name="p.jpg"))
    return store


def test_exact_copy_matches_every_signal(banked: Store) -> None:
    result = Matcher(banked).match(hash_bytes(ORIGINAL))
    assert {(m.bank, m.signal, m.distance) for m in result.matches} == {
        ("victims", "pdq", 0),
        ("victims", "md5", 0),
        ("victims", "sha256", 0),
    }


def test_re_encoded_copy_matches_on_pdq_only(banked: Store) -> None:
    copy = encode(IMAGE.resize((480, 360)), "JPEG", quality=50)
    [match] = Matcher(banked).match(hash_bytes(copy)).matches
    assert match.signal == "pdq"
    assert 0 < match.distance <= 31


def test_threshold_is_per_bank(store: Store) -> None:
    hashes = hash_bytes(ORIGINAL)
    near = _flip_bits(hashes.signals["pdq"], 20)
    store.create_bank("strict", threshold=10)
    store.create_bank("loose", threshold=31)
    for bank in ("strict", "loose"):
        store.add_entries(bank, [NewEntry("pdq", near, quality=100)])
    result = Matcher(store).match(hashes)
    assert [(m.bank, m.distance) for m in result.matches] == [("loose", 20)]


def test_only_the_banks_asked_for_are_searched(banked: Store) -> None:
    banked.create_bank("other")
    banked.add_entries("other", bank_entries(hash_bytes(ORIGINAL)))
    matches = Matcher(banked, ["other"]).match(hash_bytes(ORIGINAL)).matches
    assert {m.bank for m in matches} == {"other"}
    with pytest.raises(NotFoundError):
        Matcher(banked, ["missing"])


def test_one_matcher_narrows_each_search_to_some_banks(banked: Store) -> None:
    banked.create_bank("other")
    banked.add_entries("other", bank_entries(hash_bytes(ORIGINAL)))
    matcher = Matcher(banked)
    everywhere = matcher.match(hash_bytes(ORIGINAL)).matches
    assert {m.bank for m in everywhere} == {"victims", "other"}
    assert {m.bank for m in matcher.match(hash_bytes(ORIGINAL), banks={"other"}).matches} == {
        "other"
    }
    assert matcher.match(hash_bytes(ORIGINAL), banks=set()).matches == []


def test_a_signal_value_is_matched_on_its_own(banked: Store) -> None:
    hashes = hash_bytes(ORIGINAL)
    matcher = Matcher(banked)
    near = _flip_bits(hashes.signals["pdq"], 5).upper()  # normalised first
    [pdq] = matcher.match_signal("pdq", near)
    assert (pdq.bank, pdq.signal, pdq.distance) == ("victims", "pdq", 5)
    [md5] = matcher.match_signal("md5", hashes.signals["md5"], banks={"victims"})
    assert md5.signal == "md5"
    assert matcher.match_signal("md5", hashes.signals["md5"], banks={"nothing"}) == []


def test_a_threshold_update_reaches_a_running_matcher(banked: Store) -> None:
    hashes = hash_bytes(ORIGINAL)
    near = _flip_bits(hashes.signals["pdq"], 20)
    matcher = Matcher(banked)
    assert matcher.match_signal("pdq", near)
    banked.update_bank("victims", threshold=10)
    matcher.expire()
    assert matcher.match_signal("pdq", near) == []
    assert matcher.bank("victims").pdq_threshold == 10


def test_withdrawn_entries_never_match(banked: Store) -> None:
    for entry in list(banked.iter_entries("victims")):
        banked.withdraw("victims", entry.id)
    assert Matcher(banked).match(hash_bytes(ORIGINAL)).matches == []


def test_low_quality_query_never_matches_on_pdq(store: Store) -> None:
    flat = encode(photo_like(64, 64, seed=1).resize((1, 1)).resize((300, 300)), "PNG")
    hashes = hash_bytes(flat)
    assert hashes.quality < 50
    store.create_bank("b")
    store.add_entries("b", [NewEntry("pdq", hashes.signals["pdq"], quality=100)])
    result = Matcher(store).match(hashes)
    assert result.matches == []
    assert "not matched on PDQ" in result.notes[0]


def test_low_quality_entries_never_match(store: Store) -> None:
    hashes = hash_bytes(ORIGINAL)
    store.create_bank("b")
    store.add_entries("b", [NewEntry("pdq", hashes.signals["pdq"], quality=10)])
    assert Matcher(store).match(hashes).matches == []


def test_flipped_copy_matches_only_with_dihedral(banked: Store) -> None:
    flipped = encode(ImageOps.mirror(IMAGE), "JPEG", quality=90)
    matcher = Matcher(banked)
    assert matcher.match(hash_bytes(flipped)).matches == []
    [match] = matcher.match(hash_bytes(flipped, dihedral=True)).matches
    assert match.variant == "flipy"
    assert match.distance <= 31


def test_reload_sees_later_changes(banked: Store) -> None:
    matcher = Matcher(banked)
    other = encode(photo_like(640, 480, seed=99), "PNG")
    assert matcher.match(hash_bytes(other)).matches == []
    banked.add_entries("victims", bank_entries(hash_bytes(other)))
    matcher.reload()
    assert len(matcher.match(hash_bytes(other)).matches) == 3


# --- following the store's change log ----------------------------------------------------------


def test_follows_adds_and_withdrawals_made_through_another_handle(store_url: str) -> None:
    reader, writer = Store.open(store_url), Store.open(store_url)
    writer.create_bank("victims")
    matcher = Matcher(reader, refresh_interval=0)
    hashes = hash_bytes(ORIGINAL)
    assert matcher.match(hashes).matches == []
    added = writer.add_entries("victims", bank_entries(hashes))
    assert len(matcher.match(hashes).matches) == 3
    for result in added:
        writer.withdraw("victims", result.entry_id)
    assert matcher.match(hashes).matches == []
    writer.add_entries("victims", bank_entries(hashes))  # reinstated
    assert len(matcher.match(hashes).matches) == 3


def test_a_new_bank_joins_and_a_deleted_bank_leaves(store: Store) -> None:
    matcher = Matcher(store, refresh_interval=0)
    store.create_bank("later", threshold=12)
    store.add_entries("later", bank_entries(hash_bytes(ORIGINAL)))
    assert {m.bank for m in matcher.match(hash_bytes(ORIGINAL)).matches} == {"later"}
    store.delete_bank("later")
    assert matcher.match(hash_bytes(ORIGINAL)).matches == []
    assert matcher.banks == []


def test_large_banks_use_the_multi_index(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import counterfake.matching as matching

    monkeypatch.setattr(matching, "TABLES_FROM", 1)
    store.create_bank("big")
    store.add_entries("big", bank_entries(hash_bytes(ORIGINAL)))
    matcher = Matcher(store, refresh_interval=0)
    from counterfake.index.mih import MultiIndexHammingIndex

    assert isinstance(matcher._hamming["pdq"]["big"], MultiIndexHammingIndex)
    [entry] = [e for e in store.iter_entries("big") if e.signal_type == "pdq"]
    copy = encode(IMAGE, "JPEG", quality=60)
    assert [m.entry_id for m in matcher.match(hash_bytes(copy)).matches] == [entry.id]
    store.withdraw("big", entry.id)
    assert matcher.match(hash_bytes(copy)).matches == []


def _add_then_withdraw(url: str, data: bytes, go: Any, added: Any, withdraw: Any) -> None:
    with Store.open(url) as store:
        go.wait()
        results = store.add_entries("victims", bank_entries(hash_bytes(data)))
        added.set()
        withdraw.wait()
        for result in results:
            store.withdraw("victims", result.entry_id)
        added.clear()


def _visible_within(matcher: Matcher, hashes: Any, expected: int, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < 5:
        if len(matcher.match(hashes).matches) == expected:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"never saw {expected} matches")


def test_another_process_changes_are_visible_within_a_second(store_url: str) -> None:
    store = Store.open(store_url)
    store.create_bank("victims")
    matcher = Matcher(store, refresh_interval=0.2)
    hashes = hash_bytes(ORIGINAL)
    context = multiprocessing.get_context("spawn")
    go, added, withdraw = context.Event(), context.Event(), context.Event()
    writer = context.Process(
        target=_add_then_withdraw, args=(store_url, ORIGINAL, go, added, withdraw)
    )
    writer.start()
    try:
        go.set()
        assert added.wait(60)
        assert _visible_within(matcher, hashes, 3, 5) <= 1.0
        withdraw.set()
        while added.is_set():
            time.sleep(0.005)
        assert _visible_within(matcher, hashes, 0, 5) <= 1.0
    finally:
        writer.join(60)
    assert writer.exitcode == 0


def test_a_late_commit_below_a_seen_change_is_not_missed(postgres_url: str) -> None:
    """PostgreSQL hands out sequence numbers before commit: 41 may commit after 42."""
    store = Store.open(postgres_url)
    store.create_bank("victims")
    matcher = Matcher(store, refresh_interval=0)
    slow = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    first, second = hash_bytes(ORIGINAL), hash_bytes(encode(photo_like(seed=77), "PNG"))
    try:
        with slow.connect() as conn:
            transaction = conn.begin()
            bank_id = conn.exec_driver_sql("SELECT id FROM banks WHERE name='victims'").scalar()
            entry_id = conn.exec_driver_sql(
                "INSERT INTO entries (bank_id, signal_type, value, quality, source, metadata,"
                " created_at) VALUES (%s, 'pdq', %s, 100, 'test', '{}', now()) RETURNING id",
                (bank_id, first.signals["pdq"]),
            ).scalar()
            conn.exec_driver_sql(
                "INSERT INTO changes (at, op, bank, entry_id) VALUES (now(), 'add', 'victims', %s)",
                (entry_id,),
            )
            store.add_entries("victims", bank_entries(second))  # takes a later seq, commits
            assert len(matcher.match(second).matches) == 3
            transaction.commit()
        assert [m.entry_id for m in matcher.match(first).matches] == [entry_id]
    finally:
        slow.dispose()


def test_derivative_features_are_asked_for_only_when_nothing_else_matched(
    banked: Store, corpus_dir: Any
) -> None:
    from counterfake.protect import protect_bytes

    asked: list[int] = []

    def features() -> Any:
        asked.append(1)
        from counterfake.signals.keypoints import image_features

        return image_features(encode(photo_like(320, 240, seed=77)), query=True)

    other = hash_bytes(encode(photo_like(320, 240, seed=77)))
    Matcher(banked).match(other, features=features)
    assert asked == []  # no bank protects photos: nothing to compare local features with
    photo = next(iter(sorted(corpus_dir.glob("*.jpg")))).read_bytes()
    banked.add_entries("victims", protect_bytes(photo).entries())
    matcher = Matcher(banked)
    assert matcher.match(hash_bytes(ORIGINAL), features=features).matches  # PDQ matched
    assert asked == []
    assert matcher.match(other, features=features).matches == []
    assert asked == [1]


def test_a_bank_that_grows_while_followed_gets_the_multi_index_and_the_last_word_wins(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes are applied a batch at a time: a withdrawal and a reinstatement of one entry in
    the same batch leave it matching, and a bank that grows past TABLES_FROM while followed
    gets the index it would have had on a restart."""
    import numpy as np

    import counterfake.matching as matching
    from counterfake.index.mih import MultiIndexHammingIndex

    monkeypatch.setattr(matching, "TABLES_FROM", 200)
    store.create_bank("grows")
    matcher = Matcher(store, refresh_interval=0)
    rng = np.random.default_rng(7)
    values = [rng.bytes(32).hex() for _ in range(300)]
    added = store.add_entries("grows", [NewEntry("pdq", v) for v in values])
    first, second = added[0].entry_id, added[1].entry_id
    store.withdraw("grows", first)
    store.add_entries("grows", [NewEntry("pdq", values[0])])  # reinstated
    store.withdraw("grows", second)  # withdrawn for good
    assert "grows" not in matcher._hamming.get("pdq", {})  # empty when loaded; not yet read
    assert [m.entry_id for m in matcher.match_signal("pdq", values[0])] == [first]
    assert isinstance(matcher._hamming["pdq"]["grows"], MultiIndexHammingIndex)
    assert matcher.match_signal("pdq", values[1]) == []
    assert [m.entry_id for m in matcher.match_signal("pdq", values[299])] == [added[299].entry_id]
    assert matcher.sizes()["pdq"] == 299


def _random_values(n: int, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.bytes(32).hex() for _ in range(n)]


def _until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _growing(store: Store, monkeypatch: pytest.MonkeyPatch, values: list[str]) -> Matcher:
    """A followed matcher of bank "grows" holding `values[:2000]` in a multi-index's tables
    (from 200 codes), whose delta is folded by the growth rule only (no quiet spell)."""
    import counterfake.matching as matching

    monkeypatch.setattr(matching, "TABLES_FROM", 200)
    monkeypatch.setattr(matching, "_REBUILD_FROM", 50)
    monkeypatch.setattr(matching, "_TIDY_AFTER", 3600.0)
    store.create_bank("grows")
    store.add_entries("grows", [NewEntry("pdq", v) for v in values[:2000]])
    matcher = Matcher(store, refresh_interval=0.05)
    matcher.follow()
    return matcher


def test_a_follower_applies_other_writers_changes_without_any_request(store: Store) -> None:
    store.create_bank("b")
    matcher = Matcher(store, refresh_interval=0.05)
    matcher.follow()
    try:
        value = _random_values(1, seed=3)[0]
        (added,) = store.add_entries("b", [NewEntry("pdq", value)])  # as another process would
        # Nothing asks the matcher to refresh: its held index changes by itself.
        assert _until(lambda: matcher.sizes().get("pdq") == 1)
        assert matcher.caught_up
        assert [m.entry_id for m in matcher.match_signal("pdq", value)] == [added.entry_id]
        store.withdraw("b", added.entry_id)
        assert _until(lambda: matcher.sizes().get("pdq", 0) == 0)
    finally:
        matcher.stop()


def test_with_a_follower_a_write_here_is_matched_by_the_next_lookup(store: Store) -> None:
    """Read-your-writes: after this process's own write, the next match waits for the
    follower's next pass (not for the refresh interval)."""
    store.create_bank("b")
    matcher = Matcher(store, refresh_interval=30)  # the follower would not look for 30 s
    matcher.follow()
    try:
        time.sleep(0.1)  # its first pass is done; the next is 30 s away
        value = _random_values(1, seed=4)[0]
        (added,) = store.add_entries("b", [NewEntry("pdq", value)])
        matcher.expire()
        started = time.monotonic()
        assert [m.entry_id for m in matcher.match_signal("pdq", value)] == [added.entry_id]
        assert time.monotonic() - started < 5
    finally:
        matcher.stop()


def test_a_rebuild_in_the_background_keeps_what_changed_while_it_ran(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A followed bank that outgrows its index gets a new one built off the lock; searches use
    the old one meanwhile, and adds and withdrawals made during the build are in the new one."""
    import threading

    import counterfake.matching as matching
    from counterfake.index.mih import MultiIndexHammingIndex

    monkeypatch.setattr(matching, "TABLES_FROM", 200)
    release, building = threading.Event(), threading.Event()
    new_index = Matcher._new_index

    def slow_new_index(ids: Any, codes: Any) -> Any:
        if threading.current_thread().name.startswith("counterfake-index-build"):
            building.set()
            release.wait(30)
        return new_index(ids, codes)

    monkeypatch.setattr(Matcher, "_new_index", staticmethod(slow_new_index))
    store.create_bank("grows")
    matcher = Matcher(store, refresh_interval=0.05)
    matcher.follow()
    try:
        values = _random_values(400, seed=5)
        first = store.add_entries("grows", [NewEntry("pdq", v) for v in values[:250]])
        assert building.wait(10)  # past TABLES_FROM: the build started and is held
        # Meanwhile the follower keeps applying changes and searches keep answering.
        during = store.add_entries("grows", [NewEntry("pdq", v) for v in values[250:]])
        store.withdraw("grows", first[0].entry_id)
        assert _until(lambda: matcher.sizes().get("pdq") == 399)
        assert [m.entry_id for m in matcher.match_signal("pdq", values[399])] == [
            during[-1].entry_id
        ]
        assert not isinstance(matcher._hamming["pdq"]["grows"], MultiIndexHammingIndex)
        release.set()
        assert _until(lambda: isinstance(matcher._hamming["pdq"]["grows"], MultiIndexHammingIndex))
        assert matcher.sizes()["pdq"] == 399
        assert matcher.match_signal("pdq", values[0]) == []  # withdrawn during the build
        for value, result in zip(values[1:], [*first[1:], *during], strict=True):
            assert [m.entry_id for m in matcher.match_signal("pdq", value)] == [result.entry_id]
    finally:
        release.set()
        matcher.stop()


def test_a_followed_index_ends_as_a_restarted_one_would_be(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a quiet spell the follower folds what is left in the linear delta into the
    tables, so a worker that took the adds while running searches like a restarted one."""
    import counterfake.matching as matching

    monkeypatch.setattr(matching, "TABLES_FROM", 200)
    monkeypatch.setattr(matching, "_TIDY_AFTER", 0.2)
    monkeypatch.setattr(matching, "_TIDY_FROM", 1)
    store.create_bank("grows")
    matcher = Matcher(store, refresh_interval=0.05)
    matcher.follow()
    try:
        values = _random_values(600, seed=6)
        for start in range(0, 600, 50):
            store.add_entries("grows", [NewEntry("pdq", v) for v in values[start : start + 50]])
        # Every add read, and nothing left in the delta (a slow run can tidy between adds).
        assert _until(
            lambda: (
                matcher.sizes().get("pdq") == 600
                and getattr(matcher._hamming["pdq"].get("grows"), "pending", 1) == 0
            )
        )
        restarted = Matcher(store)
        assert matcher.sizes() == restarted.sizes() == {"pdq": 600}
        for value in values[::37]:
            assert matcher.match_signal("pdq", value) == restarted.match_signal("pdq", value)
    finally:
        matcher.stop()


def test_a_growing_index_is_rebuilt_before_its_delta_slows_every_lookup(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lookup searches the delta of adds, so under steady adds it is folded into the
    tables at `_REBUILD_BY` codes at the latest, even while that is less than an eighth of
    them (at 10M codes an eighth was 1,250,000, and lookups took 6 times as long)."""
    import counterfake.matching as matching
    from counterfake.index.mih import MultiIndexHammingIndex

    monkeypatch.setattr(matching, "_REBUILD_BY", 100)
    values = _random_values(2120, seed=7)
    matcher = _growing(store, monkeypatch, values)

    def index() -> Any:
        return matcher._hamming["pdq"]["grows"]

    try:
        assert isinstance(index(), MultiIndexHammingIndex) and index().tabled == 2000
        store.add_entries("grows", [NewEntry("pdq", v) for v in values[2000:2090]])
        assert _until(lambda: matcher.sizes().get("pdq") == 2090)
        assert index().pending == 90  # under the cap: scanned
        store.add_entries("grows", [NewEntry("pdq", v) for v in values[2090:2120]])
        # 120 pending: past the cap of 100, though an eighth of the tables would be 250.
        assert _until(lambda: index().pending == 0 and index().tabled == 2120)
        restarted = Matcher(store)
        for value in values[::53]:
            assert matcher.match_signal("pdq", value) == restarted.match_signal("pdq", value)
    finally:
        matcher.stop()


def test_a_growing_index_gives_its_delta_tables_before_its_scan_slows_every_lookup(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between folds, each time the delta's linearly scanned tail reaches `MAX_SCANNED` codes,
    the builder's thread gives the whole delta tables of its own: the main tables stay as
    they were, and lookups find the new entries and not the withdrawn ones."""
    import counterfake.matching as matching

    monkeypatch.setattr(matching, "MAX_SCANNED", 40)
    values = _random_values(2070, seed=9)
    matcher = _growing(store, monkeypatch, values)

    def index() -> Any:
        return matcher._hamming["pdq"]["grows"]

    try:
        store.add_entries("grows", [NewEntry("pdq", v) for v in values[2000:2030]])
        assert _until(lambda: matcher.sizes().get("pdq") == 2030)
        assert index().scanned == 30 and index().tabled == 2000
        added = store.add_entries("grows", [NewEntry("pdq", v) for v in values[2030:2060]])
        # 60 in the delta: under an eighth of the tables (250), past the scan's bound of 40.
        assert _until(lambda: index().scanned == 0 and index().pending == 60)
        assert index().tabled == 2000 and index()._ids.size == 2000
        store.withdraw("grows", added[0].entry_id)
        store.add_entries("grows", [NewEntry("pdq", v) for v in values[2060:2070]])
        assert _until(lambda: index().pending == 69 and index().scanned == 10)
        assert matcher.match_signal("pdq", values[2030]) == []
        restarted = Matcher(store)
        for value in values[1990:2070]:
            assert matcher.match_signal("pdq", value) == restarted.match_signal("pdq", value)
    finally:
        matcher.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_a_followed_index_is_folded_on_a_thread_below_the_lookups_priority(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A matcher that loads replays the last changes: entries its index holds stay put (no
    rebuild for them). Past the cap, the delta is folded into the tables, tombstones kept,
    on a thread whose nice value is raised so that busy cores go to lookups; the thread that
    swaps the result in under the matcher's lock keeps theirs."""
    import counterfake.matching as matching
    from counterfake.index.mih import MultiIndexHammingIndex

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if own >= matching._BUILDER_NICE:
        pytest.skip("this process already runs at the builder's nice value")
    monkeypatch.setattr(matching, "TABLES_FROM", 200)
    monkeypatch.setattr(matching, "_REBUILD_FROM", 50)
    monkeypatch.setattr(matching, "_REBUILD_BY", 100)
    monkeypatch.setattr(matching, "_TIDY_AFTER", 3600.0)
    builds: list[int] = []
    rebuilder = MultiIndexHammingIndex.rebuilder

    def watched(index: MultiIndexHammingIndex, *, seal: bool = False) -> Any:
        build = rebuilder(index, seal=seal)

        def run() -> MultiIndexHammingIndex:
            builds.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return build()

        return run

    monkeypatch.setattr(MultiIndexHammingIndex, "rebuilder", watched)
    store.create_bank("grows")
    values = _random_values(2620, seed=8)
    added = store.add_entries("grows", [NewEntry("pdq", v) for v in values[:2500]])
    matcher = Matcher(store, refresh_interval=0.05)
    swaps: list[int] = []  # the nice value of the builder thread each time it takes the lock

    class Watched:
        def __init__(self, lock: Any) -> None:
            self.lock = lock

        def __enter__(self) -> Any:
            if threading.current_thread().name == "counterfake-index-build":
                swaps.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return self.lock.__enter__()

        def __exit__(self, *exc: Any) -> Any:
            return self.lock.__exit__(*exc)

    matcher._lock = Watched(matcher._lock)  # type: ignore[assignment]
    matcher.follow()

    def index() -> Any:
        return matcher._hamming["pdq"]["grows"]

    try:
        assert matcher.caught_up and index().pending == 0 and index().tabled == 2500
        store.withdraw("grows", added[0].entry_id)
        assert _until(lambda: index().tabled == 2499)
        store.add_entries("grows", [NewEntry("pdq", v) for v in values[2500:2620]])
        assert _until(lambda: index().pending == 0 and index().tabled == 2619)
        assert builds == [matching._BUILDER_NICE]  # one rebuild, at the builder's nice value
        assert swaps == [own]  # swapped in under the lock at the lookups' priority
        assert index()._ids.size == 2620  # folded: the withdrawn entry's slot kept
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
        restarted = Matcher(store)
        for value in values[::53]:
            assert matcher.match_signal("pdq", value) == restarted.match_signal("pdq", value)
    finally:
        matcher.stop()


def test_a_follower_that_cannot_read_the_store_is_not_caught_up(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from counterfake.errors import DatabaseError

    store.create_bank("b")
    matcher = Matcher(store, refresh_interval=0.05)
    matcher.follow()
    try:
        assert _until(lambda: matcher.caught_up)

        def unreachable(*_: Any, **__: Any) -> Any:
            raise DatabaseError("the store failed: OperationalError")

        monkeypatch.setattr(store, "changes_since", unreachable)
        assert _until(lambda: not matcher.caught_up, seconds=10)
        monkeypatch.undo()
        assert _until(lambda: matcher.caught_up)
    finally:
        matcher.stop()


def test_a_derivative_query_does_not_wait_for_the_shortlist_to_fold_its_delta(
    store: Store, corpus_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Photos added past an eighth of a bank's shortlist are folded into new tables on a
    thread of the matcher's own: derivative queries meanwhile answer from the old tiers, the
    photo just added included, and the new tables come in when built."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from counterfake.index import keypoints
    from counterfake.protect import protect_bytes
    from counterfake.signals.keypoints import image_features
    from tests.derivative_images import reencode, replace_region

    paths = sorted(corpus_dir.glob("*.jpg"))[:42]
    store.create_bank("victims")
    ids = [
        store.add_entries("victims", protect_bytes(p.read_bytes()).entries())[1].entry_id
        for p in paths[:36]
    ]
    matcher = Matcher(store, refresh_interval=0)
    shortlist = matcher._shortlists["victims"]
    assert _until(lambda: shortlist.prepared)
    tables = shortlist._tables
    started, release = hold_new_tables(monkeypatch)  # the fold's new tables wait
    monkeypatch.setattr(keypoints, "_RECENT_ROWS", 1)  # every add is merged or folded
    ids += [
        store.add_entries("victims", protect_bytes(p.read_bytes()).entries())[1].entry_id
        for p in paths[36:]
    ]
    photo = Image.open(paths[41]).convert("RGB")
    fake, _ = replace_region(photo, Image.open(paths[0]).convert("RGB"), 0.3)
    data = reencode(fake)

    def found() -> list[int]:
        result = matcher.match(hash_bytes(data), features=image_features(data, query=True))
        return [m.entry_id for m in result.matches]

    with ThreadPoolExecutor(1) as asking:
        try:
            assert asking.submit(found).result(timeout=20) == [ids[41]]  # from the delta
            assert started.wait(30) and shortlist.folding and shortlist._tables is tables
            assert asking.submit(found).result(timeout=20) == [ids[41]]  # still not waiting
        finally:
            release.set()
    assert _until(lambda: not shortlist.folding)
    assert shortlist._tables is not tables and len(shortlist._tables.counts) == 42
    assert shortlist._delta is None and shortlist._recent == ()
    assert found() == [ids[41]]


def test_lookups_go_on_while_a_derivative_query_asks_the_shortlist(
    store: Store, corpus_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The matcher's lock, which every lookup needs, is not held while a bank's shortlist
    counts a derivative query's votes (tens of milliseconds at 100,000 photos)."""
    from concurrent.futures import ThreadPoolExecutor

    from counterfake.index.keypoints import KeypointShortlist
    from counterfake.protect import protect_bytes
    from counterfake.signals.keypoints import image_features

    store.create_bank("victims")
    for path in sorted(corpus_dir.glob("*.jpg"))[:33]:  # past the bank verified whole
        store.add_entries("victims", protect_bytes(path.read_bytes()).entries())
    store.add_entries("victims", bank_entries(hash_bytes(ORIGINAL)))
    matcher = Matcher(store, refresh_interval=0)
    asked, release = threading.Event(), threading.Event()
    real = KeypointShortlist.candidates

    def held(self: KeypointShortlist, *args: Any, **kwargs: Any) -> Any:
        asked.set()
        assert release.wait(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(KeypointShortlist, "candidates", held)
    query = image_features(encode(photo_like(320, 240, seed=5)), query=True)
    with ThreadPoolExecutor(1) as asking, ThreadPoolExecutor(1) as looking:
        try:
            pending = asking.submit(matcher.derivatives, query)
            assert asked.wait(30)
            found = looking.submit(matcher.match, hash_bytes(ORIGINAL))
            assert found.result(timeout=10).matches  # answered while the votes are held
            assert not pending.done()
        finally:
            release.set()
        assert pending.result(timeout=30) == []

"""Matching: thresholds per bank, withdrawals, low quality, exact digests, dihedral variants."""

from __future__ import annotations

import pytest
from PIL import ImageOps

from counterfake import Matcher, NewEntry, NotFoundError, PdqHash, Store, bank_entries, hash_bytes
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

"""The core object is the one place the rules live: every face (CLI, HTTP, investigate, the
demo) calls these operations, so these tests are the rules."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from PIL import Image

from counterfake import Counterfake, MediaError, NotFoundError, load_settings, media
from counterfake import core as core_module
from counterfake.errors import AccessError
from counterfake.model import ApiKey
from tests.derivative_images import reencode, replace_region
from tests.images import encode


def _app(tmp_path: Path, **settings: object) -> Counterfake:
    return Counterfake(load_settings(home=tmp_path, **settings))


def _key(tenant: str, *scopes: str, key_id: str = "k1") -> ApiKey:
    from datetime import UTC, datetime

    return ApiKey(key_id, tenant, frozenset(scopes), "", datetime.now(UTC))


@pytest.fixture(scope="module")
def photos(corpus_dir: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(corpus_dir.glob("*.jpg"))[:6]]


def test_a_copy_is_found_by_its_hashes_and_a_write_is_matched_at_once(
    tmp_path: Path, photos: list[Image.Image]
) -> None:
    data = encode(photos[0], "JPEG", quality=90)
    with _app(tmp_path) as app:
        app.create_bank("b")
        assert app.lookup(data).matches == []  # the matcher is loaded, then the bank grows
        added = app.add_image("b", data, source_name="p0.jpg")
        assert added.created == 3
        found = app.lookup(data)
        assert {m.signal for m in found.matches} == {"pdq", "md5", "sha256"}
        app.withdraw("b", found.matches[0].entry_id)
        assert found.matches[0].entry_id not in {m.entry_id for m in app.lookup(data).matches}


def test_derivatives_are_searched_only_when_no_copy_matched_and_with_one_decode(
    tmp_path: Path, photos: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: list[int] = []
    real_decode, real_gray = core_module.decode, media.decode_gray
    monkeypatch.setattr(
        core_module, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k)
    )
    monkeypatch.setattr(
        media, "decode_gray", lambda *a, **k: decodes.append(2) or real_gray(*a, **k)
    )
    source = encode(photos[1], "JPEG", quality=95)
    fake, _ = replace_region(photos[1], photos[2], 0.3)
    with _app(tmp_path) as app:
        app.create_bank("protected")
        app.add_signatures("protected", [app.protect(source)])
        derivative = app.lookup(reencode(fake))
        assert [m.signal for m in derivative.matches] == ["derivative"]
        assert decodes == [1]  # PDQ and the local features from the same decode
        copy = app.lookup(source)
        assert [m.signal for m in copy.matches] == ["pdq"]  # found as a copy: no verification
        assert app.lookup(encode(photos[3])).matches == []


def test_tenants_see_their_own_banks_and_match_what_is_shared_with_them(tmp_path: Path) -> None:
    acme, beta = _key("acme", "curate", "match"), _key("beta", "curate", "match", key_id="k2")
    with _app(tmp_path) as app:
        app.create_bank("acme-bank", principal=acme, shared_with=["beta"])
        app.create_bank("acme-private", principal=acme)
        assert [b.name for b in app.banks(principal=beta)] == []
        with pytest.raises(NotFoundError) as info:
            app.bank("acme-bank", principal=beta)
        assert info.value.code == "bank_not_found"
        assert app.searchable(principal=beta) == {"acme:acme-bank"}  # by stored name
        with pytest.raises(NotFoundError):
            app.searchable(["acme-private"], principal=beta)
        with pytest.raises(AccessError):
            app.create_bank("for-beta", tenant="beta", principal=acme)
        assert app.bank("acme:acme-private").tenant == "acme"  # the operator sees every bank
        # Names are per tenant: beta may have its own acme-bank, and names acme's by owner.
        assert app.create_bank("acme-bank", principal=beta).name == "acme-bank"
        assert {b.name for b in app.banks(principal=beta)} == {"acme-bank"}
        assert app.searchable(["acme:acme-bank"], principal=beta) == {"acme:acme-bank"}


def test_a_submit_key_withdraws_only_what_it_submitted(tmp_path: Path) -> None:
    from counterfake import NewEntry

    mine, other = _key("acme", "submit"), _key("acme", "submit", key_id="k9")
    with _app(tmp_path) as app:
        app.create_bank("b", tenant="acme")
        (result,) = app.add_signals("b", [NewEntry("pdq", "ab" * 32)], principal=mine).results
        with pytest.raises(NotFoundError):
            app.withdraw("b", result.entry_id, principal=other)
        assert app.withdraw("b", result.entry_id, principal=mine).withdrawn_at is not None


def test_a_batch_of_files_is_hashed_on_processes_in_order(
    tmp_path: Path, photos: list[Image.Image]
) -> None:
    paths = []
    for i in range(40):
        path = tmp_path / f"{i:02d}.jpg"
        path.write_bytes(b"not an image" if i == 17 else encode(photos[i % 6], quality=60 + i))
        paths.append(path)
    with _app(tmp_path, hash_processes=2) as app:
        results = list(app.hash_files(paths))
        alone = [app.hash(app.read(p)) for p in paths if p.name != "17.jpg"]
    assert [p for p, _ in results] == paths
    error = results[17][1]
    assert isinstance(error, MediaError) and error.code == "unsupported_format"
    assert [r for _, r in results if not isinstance(r, MediaError)] == alone


def test_errors_keep_their_class_code_and_context_across_processes() -> None:
    error = NotFoundError("no bank named 'x'", code="bank_not_found", bank="x")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.code, copy.bank, copy.message) == (
        NotFoundError,
        "bank_not_found",
        "x",
        error.message,
    )


def test_concurrent_adds_share_transactions_and_keep_their_own_outcomes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from counterfake import NewEntry, SignalError
    from counterfake.store import entries as entries_module

    batches: list[int] = []
    real = entries_module.Entries.add_many

    def counting(self: object, requests: list[object]) -> object:
        batches.append(len(requests))
        return real(self, requests)  # type: ignore[arg-type]

    monkeypatch.setattr(entries_module.Entries, "add_many", counting)
    with _app(tmp_path) as app:
        app.create_bank("b")
        outcomes: dict[tuple[int, int], object] = {}

        def add(thread: int) -> None:
            for i in range(40):
                value = "nope" if (thread, i) == (3, 7) else f"{thread:02x}{i:02x}" * 16
                try:
                    outcomes[thread, i] = app.add_signals("b", [NewEntry("pdq", value)]).results
                except SignalError as exc:
                    outcomes[thread, i] = exc

        threads = [threading.Thread(target=add, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert isinstance(outcomes[3, 7], SignalError)  # its own error, nobody else's
        created = [o for o in outcomes.values() if not isinstance(o, Exception)]
        assert len(created) == 8 * 40 - 1
        assert all(r[0].status == "created" for r in created)  # type: ignore[index]
        assert len({r[0].entry_id for r in created}) == len(created)  # type: ignore[index]
        assert app.bank("b").active_entries == len(created)
    assert sum(batches) == 8 * 40 and max(batches) > 1  # some commits carried several adds


@pytest.mark.parametrize("shared", [True, False])
def test_adds_queued_behind_a_batch_that_finds_the_store_away_fail_with_it_at_once(
    shared: bool,
) -> None:
    """Group commit: while one batch waits out the store's deadline, the adds that queue
    behind it would each wait it out again; they get the same 503 instead. Any other failure
    of a whole batch leaves the queued adds their own attempt."""
    import threading

    from counterfake.errors import DatabaseError, UnavailableError

    entered, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def run(items: list[str]) -> list[str]:
        batches.append(items)
        if len(batches) == 1:
            entered.set()
            release.wait(10)
            raise (
                UnavailableError("away", code="store_unavailable")
                if shared
                else (DatabaseError("broken"))
            )
        return [f"done {item}" for item in items]

    group: core_module._Group[str, str] = core_module._Group(run, shared=UnavailableError)
    outcomes: dict[str, object] = {}

    def submit(item: str) -> None:
        try:
            outcomes[item] = group.submit(item)
        except Exception as exc:
            outcomes[item] = type(exc).__name__

    first = threading.Thread(target=submit, args=("a",))
    first.start()
    assert entered.wait(10)
    queued = [threading.Thread(target=submit, args=(item,)) for item in "bc"]
    for thread in queued:
        thread.start()
    while len(group._waiting) < 2:
        threading.Event().wait(0.01)
    release.set()
    for thread in [first, *queued]:
        thread.join(10)
    if shared:
        assert outcomes == dict.fromkeys("abc", "UnavailableError")
        assert batches == [["a"]]
    else:
        assert outcomes == {"a": "DatabaseError", "b": "done b", "c": "done c"}
        assert [sorted(batch) for batch in batches] == [["a"], ["b", "c"]]

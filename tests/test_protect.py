"""`counterfake protect`: signatures made here, a file with no pixels, ingested by a bank,
and derivatives of the protected photos found by `match`, with evidence for reviewers."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from counterfake import FormatError, InputError, Matcher, NewEntry, Store
from counterfake.cli import main
from counterfake.protect import (
    ProtectedPhoto,
    protect_bytes,
    read_signatures,
    write_signatures,
)
from tests.derivative_images import reencode, replace_region


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def photos(corpus_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    for path in sorted(corpus_dir.glob("*.jpg"))[20:24]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_the_signature_file_holds_no_pixels_and_no_names_unless_asked(
    photos: Path, tmp_path: Path
) -> None:
    run("protect", str(photos), "-o", str(tmp_path / "plain.jsonl"))
    run("protect", str(photos), "-o", str(tmp_path / "named.jsonl"), "--with-names")
    plain = (tmp_path / "plain.jsonl").read_text().splitlines()
    header = json.loads(plain[0])
    assert header == {"format": "counterfake-signatures", "version": 2, "features": "orb-480-2048"}
    records = [json.loads(line) for line in plain[1:]]
    assert len(records) == 4
    assert all(set(r) == {"pdq", "quality", "signature"} for r in records)
    named = [json.loads(line) for line in (tmp_path / "named.jsonl").read_text().splitlines()[1:]]
    assert [r["name"] for r in named] == sorted(p.name for p in photos.iterdir())
    for record, path in zip(records, sorted(photos.iterdir()), strict=True):
        original = path.read_bytes()
        signature = base64.b64decode(record["signature"])
        assert len(signature) <= 10 + 2048 * (4 + 32) + 1 + 4 * 8  # and up to 4 head boxes
        assert original[len(original) // 2 : len(original) // 2 + 32] not in signature
        assert path.name not in json.dumps(record)


def test_a_damaged_file_is_refused_line_by_line(photos: Path) -> None:
    photo = protect_bytes(next(photos.iterdir()).read_bytes())
    buffer = io.StringIO()
    write_signatures([photo, photo], buffer)
    lines = buffer.getvalue().splitlines()
    lines[2] = lines[2].replace('"signature": "', '"signature": "AAAA')
    items = list(read_signatures([*lines, "not json"]))
    assert isinstance(items[0], type(photo))
    assert [i.line for i in items if isinstance(i, FormatError)] == [3, 4]
    with pytest.raises(FormatError):
        list(read_signatures(['{"format": "something else"}']))


def test_a_version_1_file_is_still_read_and_its_photos_still_match(photos: Path) -> None:
    """Version 1 signatures (512 keypoints on the unenlarged image) from before round 2."""
    from counterfake.media import decode_gray
    from counterfake.signals.keypoints import source_features

    path = sorted(photos.iterdir())[0]
    old = source_features(decode_gray(path.read_bytes(), max_side=480), 512)
    v2 = old.to_bytes()
    v1 = b"CFK1" + v2[4:-1]  # version 1 ends after the descriptors
    header = {"format": "counterfake-signatures", "version": 1, "features": "orb-480-512"}
    _read_and_matched(photos, header, v1)
    with pytest.raises(FormatError):
        list(read_signatures([json.dumps({**header, "version": 3})]))


def test_a_version_2_file_of_1024_keypoints_is_still_read_and_its_photos_still_match(
    photos: Path,
) -> None:
    """Signatures made before they carried 2,048 keypoints: the same layout, fewer of them."""
    import dataclasses

    from counterfake.media import decode_gray
    from counterfake.signals.keypoints import (
        SOURCE_FEATURES,
        Features,
        source_features,
        working_gray,
    )

    path = sorted(photos.iterdir())[0]
    gray = working_gray(decode_gray(path.read_bytes(), max_side=480))
    new = Features.from_bytes(protect_bytes(path.read_bytes()).signature)
    old = dataclasses.replace(source_features(gray, 1024), subjects=new.subjects)
    assert len(old) == 1024 < len(new) <= SOURCE_FEATURES
    header = {"format": "counterfake-signatures", "version": 2, "features": "orb-480-1024"}
    photo = _read_and_matched(photos, header, old.to_bytes())
    assert len(Features.from_bytes(photo.signature)) == 1024


def _read_and_matched(photos: Path, header: dict[str, object], signature: bytes) -> ProtectedPhoto:
    """The first photo's `signature` in a file under `header`: read back, banked, and its
    derivative (30% replaced) matched through it."""
    from counterfake import hash_bytes
    from counterfake.signals.keypoints import image_features

    path = sorted(photos.iterdir())[0]
    pdq = protect_bytes(path.read_bytes()).pdq
    record = {"pdq": pdq, "quality": 100, "signature": base64.b64encode(signature).decode()}
    (photo,) = read_signatures([json.dumps(header), json.dumps(record)])
    assert isinstance(photo, ProtectedPhoto)

    store = Store.open("sqlite://")
    store.create_bank("protected")
    store.add_entries("protected", photo.entries())
    other = Image.open(sorted(photos.iterdir())[1]).convert("RGB")
    fake, _ = replace_region(Image.open(path).convert("RGB"), other, 0.3)
    data = reencode(fake)
    found = Matcher(store).match(hash_bytes(data), features=image_features(data, query=True))
    assert [m.signal for m in found.matches] == ["derivative"]
    return photo


def test_a_protected_photo_is_found_behind_a_replaced_region(
    photos: Path, tmp_path: Path, home: Path
) -> None:
    signatures = tmp_path / "sig.jsonl"
    run("protect", str(photos), "-o", str(signatures), "--with-names")
    run("bank", "create", "protected")
    added = [
        json.loads(x)
        for x in run(
            "bank", "add", "protected", "--signatures", str(signatures), "--json"
        ).splitlines()
    ]
    assert sorted(a["signal"] for a in added) == ["derivative"] * 4 + ["pdq"] * 4

    sources = sorted(photos.iterdir())
    fakes = tmp_path / "uploads"
    fakes.mkdir()
    for i, source in enumerate(sources):
        other = Image.open(sources[(i + 1) % len(sources)]).convert("RGB")
        fake, _ = replace_region(Image.open(source).convert("RGB"), other, 0.3)
        (fakes / f"fake{i}.jpg").write_bytes(reencode(fake))
    explain = tmp_path / "explain"
    lines = run("match", "--json", "--explain", str(explain), str(fakes)).splitlines()
    results = [json.loads(line) for line in lines]
    found = [r for r in results if r["matches"]]
    assert len(found) >= 3
    store = Store.open()
    for record in found:
        # The best match is the photo most of the upload comes from; the photo whose
        # content was pasted in can match too, with a lower score.
        match = record["matches"][0]
        assert match["signal"] == "derivative"
        assert 0.1 < match["changed_fraction"] < 0.6 and 0 < match["score"] <= 1
        assert "distance" not in match  # a score, not a distance (the table shows '-')
        entry = store.get_entry(match["entry_id"])
        expected = sources[int(Path(record["path"]).stem[4:])].name
        assert entry.metadata == {"source_name": expected}
    pictures = sorted(explain.glob("*.png"))
    explained = sum(len(r["matches"]) for r in found)
    assert len(pictures) == explained and len(list(explain.glob("*.json"))) == explained
    evidence = json.loads(next(explain.glob("*.json")).read_text())["evidence"]
    assert evidence["inliers"] >= 12 and len(evidence["changed_mask"]) == 12

    # Withdrawn, the derivative entry no longer matches.
    for record in found:
        for match in record["matches"]:
            run("bank", "withdraw", "protected", str(match["entry_id"]))
    again = [json.loads(x) for x in run("match", "--json", str(fakes)).splitlines()]
    assert all(not r["matches"] for r in again)
    store.close()


def test_signatures_are_stored_on_both_backends_and_follow_their_bank(
    store: Store, photos: Path
) -> None:
    photo = protect_bytes(next(photos.iterdir()).read_bytes(), name="me.jpg")
    store.create_bank("p")
    results = store.add_entries("p", photo.entries())
    derivative = next(r.entry_id for r in results if r.signal_type == "derivative")
    assert list(store.signatures("p")) == [(derivative, photo.signature)]
    matcher = Matcher(store)
    assert matcher.protects_photos() and matcher.sizes()["derivative"] == 1
    store.withdraw("p", derivative)
    assert list(store.signatures("p")) == []
    matcher.refresh()
    assert matcher.sizes().get("derivative", 0) == 0 and not matcher.protects_photos()
    with pytest.raises(InputError) as info:
        store.add_entries("p", [NewEntry("derivative", "0" * 64)])  # no signature with it
    assert info.value.code == "invalid_signature"
    store.delete_bank("p")
    store.create_bank("p")
    assert list(store.signatures("p")) == []


def test_a_protected_bank_travels_in_a_jsonl_export(
    photos: Path, tmp_path: Path, home: Path
) -> None:
    signatures = tmp_path / "sig.jsonl"
    run("protect", str(photos), "-o", str(signatures))
    run("bank", "create", "a")
    run("bank", "add", "a", "--signatures", str(signatures))
    exported = tmp_path / "a.jsonl"
    run("bank", "export", "a", "-o", str(exported))
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sum("signature" in r for r in records) == 4
    run("bank", "create", "b")
    run("bank", "import", "b", str(exported))
    store = Store.open()
    copied = sorted(sig for _, sig in store.signatures("b"))
    assert len(copied) == 4 and copied == sorted(sig for _, sig in store.signatures("a"))
    store.close()
    # A derivative record whose signature is missing or was tampered with is refused.
    broken = [r for r in records if "signature" in r][:2]
    del broken[0]["signature"]
    broken[1]["signature"] = broken[1]["signature"][:-8] + "AAAAAAA="
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in broken) + "\n")
    result = CliRunner().invoke(main, ["bank", "import", "b", str(bad), "--json"])
    assert result.exit_code == 1
    codes = [json.loads(x)["error"]["code"] for x in result.stdout.splitlines() if "error" in x]
    assert codes == ["invalid_signature", "invalid_signature"]

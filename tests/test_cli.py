"""The CLI is the library from the shell: each test checks the outcome through the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from counterfake import NotFoundError, Store, hash_file, load_settings
from counterfake.cli import main
from tests.images import encode, photo_like


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def lines(result: Result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def open_store() -> Store:
    return Store.open(settings=load_settings())


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for seed in range(3):
        target = folder / ("nested" if seed == 2 else "") / f"p{seed}.jpg"
        target.write_bytes(encode(photo_like(400, 300, seed=100 + seed), "JPEG", quality=92))
    (folder / "notes.txt").write_text("not an image, skipped when walking a folder")
    return folder


def test_hash_json_shape(home: Path, photos: Path) -> None:
    result = run("hash", "--json", str(photos))
    assert result.exit_code == 0, result.output
    records = lines(result)
    assert [Path(r["path"]).name for r in records] == ["p2.jpg", "p0.jpg", "p1.jpg"]
    first = records[0]
    assert set(first) == {"path", "width", "height", "pdq", "quality", "md5", "sha256"}
    assert first["pdq"] == hash_file(first["path"]).signals["pdq"]
    assert (first["width"], first["height"]) == (400, 300)


def test_hash_dihedral_lists_eight_variants(home: Path, photos: Path) -> None:
    [record] = lines(run("hash", "--json", "--dihedral", str(photos / "p0.jpg")))
    assert len(record["dihedral"]) == 8
    assert record["dihedral"]["original"] == record["pdq"]


def test_a_bad_file_does_not_stop_the_batch(home: Path, photos: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("definitely not a jpeg")
    result = run("hash", "--json", str(bad), str(photos / "p0.jpg"), str(tmp_path / "missing.jpg"))
    assert result.exit_code == 1
    records = lines(result)
    assert records[0] == {
        "path": str(bad),
        "error": {"code": "unsupported_format", "message": records[0]["error"]["message"]},
    }
    assert "pdq" in records[1]
    assert records[2]["error"]["code"] == "file_not_found"


def test_human_output_has_a_summary(home: Path, photos: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    result = run("hash", str(photos / "p0.jpg"), str(bad))
    assert result.exit_code == 1
    assert "1 ok, 1 failed" in result.stderr
    assert "empty_input" in result.stderr


def test_bank_lifecycle(home: Path, photos: Path) -> None:
    assert run("bank", "create", "mine", "--threshold", "24").exit_code == 0
    assert open_store().get_bank("mine").pdq_threshold == 24
    duplicate = run("bank", "create", "mine")
    assert duplicate.exit_code == 1
    assert "bank_exists" in duplicate.stderr

    added = run("bank", "add", "--json", "mine", str(photos))
    assert added.exit_code == 0, added.output
    records = lines(added)
    assert len(records) == 9
    assert {r["signal"] for r in records} == {"pdq", "md5", "sha256"}
    entry = open_store().get_entry(records[0]["entry_id"])
    assert entry.metadata == {"source_name": "p2.jpg"}

    listed = lines(run("bank", "list", "--json"))
    assert [(b["name"], b["active_entries"]) for b in listed] == [("mine", 9)]
    shown = lines(run("bank", "show", "--json", "mine"))[0]
    assert shown["pdq_threshold"] == 24

    assert run("bank", "delete", "--yes", "mine").exit_code == 0
    assert open_store().list_banks() == []


def test_bank_add_no_names(home: Path, photos: Path) -> None:
    run("bank", "create", "mine")
    records = lines(run("bank", "add", "--json", "--no-names", "mine", str(photos / "p0.jpg")))
    assert all(open_store().get_entry(r["entry_id"]).metadata == {} for r in records)


def test_bank_add_hashes_file(home: Path, tmp_path: Path) -> None:
    run("bank", "create", "known")
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"pdq {'a' * 64}\n{'b' * 64}\npdq nothex\n")
    result = run("bank", "add", "--json", "known", "--hashes", str(hashes))
    assert result.exit_code == 1
    records = lines(result)
    assert records[0]["error"]["code"] == "invalid_signal"
    assert records[0]["path"] == f"{hashes}:3"
    assert sorted(e.value for e in open_store().iter_entries("known")) == ["a" * 64, "b" * 64]
    again = lines(run("bank", "add", "--json", "known", "--hashes", str(hashes)))
    assert [r.get("status") for r in again if "error" not in r] == ["existing", "existing"]
    one = tmp_path / "one.txt"
    one.write_text(f"pdq {'c' * 64}\n")
    assert "1 entry added" in run("bank", "add", "known", "--hashes", str(one)).stdout


def test_withdraw_then_match_finds_nothing(home: Path, photos: Path) -> None:
    run("bank", "create", "mine")
    records = lines(run("bank", "add", "--json", "mine", str(photos / "p0.jpg")))
    matched = lines(run("match", "--json", str(photos / "p0.jpg")))[0]
    assert {m["signal"] for m in matched["matches"]} == {"pdq", "md5", "sha256"}
    assert set(matched["matches"][0]) == {"bank", "entry_id", "signal", "distance"}

    ids = [str(r["entry_id"]) for r in records]
    assert run("bank", "withdraw", "mine", *ids).exit_code == 0
    assert open_store().get_bank("mine").active_entries == 0
    assert lines(run("match", "--json", str(photos / "p0.jpg")))[0]["matches"] == []


def test_match_unknown_bank_is_an_error(home: Path, photos: Path) -> None:
    result = run("match", "--json", "--bank", "nope", str(photos / "p0.jpg"))
    assert result.exit_code == 1
    assert lines(result)[0]["error"]["code"] == "bank_not_found"


def test_match_reports_low_quality(home: Path, tmp_path: Path) -> None:
    run("bank", "create", "mine")
    flat = tmp_path / "flat.png"
    from PIL import Image

    Image.new("RGB", (300, 300), (90, 90, 90)).save(flat)
    record = lines(run("match", "--json", str(flat)))[0]
    assert record["quality"] < 50
    assert "not matched on PDQ" in record["notes"][0]


def test_export_and_import_between_banks(home: Path, photos: Path, tmp_path: Path) -> None:
    run("bank", "create", "a")
    records = lines(run("bank", "add", "--json", "a", str(photos)))
    run("bank", "withdraw", "a", str(records[0]["entry_id"]))
    exported = tmp_path / "a.jsonl"
    assert run("bank", "export", "a", "-o", str(exported)).exit_code == 0
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(rows) == 9
    assert {"entry_id", "signal", "value", "metadata", "withdrawn_at"} <= set(rows[0])

    run("bank", "create", "b")
    assert run("bank", "import", "b", str(exported)).exit_code == 0
    bank = open_store().get_bank("b")
    assert (bank.active_entries, bank.withdrawn_entries) == (8, 1)

    te = run("bank", "export", "a", "--format", "te")
    assert te.stdout.count("pdq ") == 3 - (records[0]["signal"] == "pdq")


def test_errors_for_missing_bank_in_json(home: Path) -> None:
    result = run("bank", "show", "--json", "ghost")
    assert result.exit_code == 1
    assert lines(result) == [
        {"error": {"code": "bank_not_found", "message": "no bank named 'ghost'"}}
    ]


def test_bank_add_warns_about_low_quality(home: Path, tmp_path: Path) -> None:
    from PIL import Image

    run("bank", "create", "mine")
    flat = tmp_path / "flat.png"
    Image.new("RGB", (300, 300), (90, 90, 90)).save(flat)
    result = run("bank", "add", "mine", str(flat))
    assert result.exit_code == 0
    assert "will not match" in result.stderr


def test_keys_are_created_listed_and_revoked(home: Path) -> None:
    created = run("key", "create", "--tenant", "acme", "--scope", "match", "--scope", "curate")
    secret = created.stdout.strip()
    assert secret.startswith("cfk_")
    key = open_store().keys.authenticate(secret)
    assert (key.tenant, key.scopes) == ("acme", {"match", "curate"})
    [listed] = lines(run("key", "list", "--json"))
    assert listed["key_id"] == key.key_id and "key" not in listed
    assert secret not in run("key", "list").stdout
    run("key", "revoke", key.key_id)
    assert lines(run("key", "list", "--json"))[0]["revoked_at"] is not None
    bad = CliRunner().invoke(main, ["key", "create", "--tenant", "acme", "--scope", "root"])
    assert bad.exit_code == 2


def test_a_keys_rate_limit_is_set_at_creation_and_changed_later(home: Path) -> None:
    made = lines(
        run("key", "create", "--tenant", "a", "--scope", "match", "--rate-limit", "40", "--json")
    )
    assert made[0]["rate_limit"] == 40
    key_id = made[0]["key_id"]
    assert "40/s" in run("key", "list").stdout
    run("key", "rate", key_id, "0")
    assert lines(run("key", "list", "--json"))[0]["rate_limit"] == 0
    run("key", "rate", key_id, "default")
    assert lines(run("key", "list", "--json"))[0]["rate_limit"] is None
    for bad in ("fast", "2000000"):
        refused = CliRunner().invoke(main, ["key", "rate", key_id, bad])
        assert refused.exit_code != 0 and "invalid_rate_limit" in refused.stderr
    assert lines(run("key", "list", "--json"))[0]["rate_limit"] is None


def test_banks_have_tenants_and_shares_from_the_cli(home: Path) -> None:
    made = lines(run("bank", "create", "s", "--tenant", "acme", "--share", "beta", "--json"))
    assert (made[0]["tenant"], made[0]["shared_with"]) == ("acme", ["beta"])
    # The operator names another tenant's bank by its owner; the default tenant may have its own.
    assert made[0]["name"] == "acme:s"
    assert lines(run("bank", "create", "s", "--json"))[0]["name"] == "s"
    updated = lines(
        run("bank", "update", "acme:s", "--threshold", "12", "--share", "gamma", "--json")
    )
    assert (updated[0]["pdq_threshold"], updated[0]["shared_with"]) == (12, ["gamma"])
    cleared = lines(run("bank", "update", "acme:s", "--unshare-all", "--json"))
    assert (cleared[0]["pdq_threshold"], cleared[0]["shared_with"]) == (12, [])


def test_bank_delete_without_yes_and_without_a_terminal_refuses(home: Path) -> None:
    run("bank", "create", "keep")
    for stdin in ("n\n", "", "y\n"):
        result = CliRunner().invoke(main, ["bank", "delete", "keep"], input=stdin)
        assert result.exit_code == 2
        assert "[confirmation_required]" in result.stderr
    assert open_store().get_bank("keep").name == "keep"


def test_bank_delete_at_a_terminal_asks_and_n_keeps_the_bank(home: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    run("bank", "create", "asked")
    command = [str(Path(sys.executable).with_name("counterfake")), "bank", "delete", "asked"]
    for answer, code in ((b"n\n", 1), (b"y\n", 0)):
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            command, stdin=follower, stdout=follower, stderr=follower, env=dict(os.environ)
        )
        os.close(follower)
        seen = b""
        while b"?" not in seen:
            seen += os.read(leader, 1024)
        os.write(leader, answer)
        assert process.wait(timeout=60) == code
        os.close(leader)
        assert b"Delete bank asked" in seen
        if code:
            assert open_store().get_bank("asked").name == "asked"
    with pytest.raises(NotFoundError):
        open_store().get_bank("asked")


def test_review_commands_claim_decide_and_export_the_decision_log(
    home: Path, tmp_path: Path
) -> None:
    with open_store() as store:
        for n in range(2):
            store.open_case(
                "default",
                bank="protected",
                signal="pdq",
                evidence=[{"bank": "protected", "entry_id": n + 1, "signal": "pdq", "distance": 2}],
                query=f"sha256:{n}",
                content_id=f"upload-{n}",
                content_url=None,
            )
    listed = lines(run("review", "list", "--status", "open", "--json"))
    assert [c["content_id"] for c in listed] == ["upload-0", "upload-1"]
    claimed = lines(run("review", "claim", "--json"))[0]
    assert claimed["claimed_by"] == "operator"
    decided = run(
        "review",
        "decide",
        str(claimed["id"]),
        "--decision",
        "confirm",
        "--action",
        "remove",
        "--policy",
        "ncii",
        "--reason",
        "the protected photo",
        "--json",
    )
    assert lines(decided)[0]["status"] == "decided"
    refused = run(
        "review",
        "decide",
        str(claimed["id"]),
        "--decision",
        "confirm",
        "--policy",
        "ncii",
        "--reason",
        "again",
        "--json",
    )
    assert refused.exit_code != 0 and lines(refused)[0]["error"]["code"] == "case_decided"
    out = tmp_path / "log.csv"
    exported = run("review", "export", "--format", "csv", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    text = out.read_text().splitlines()
    assert len(text) == 2 and "upload-0" in text[1] and "remove" in text[1]
    assert lines(run("review", "export"))[0]["decision"] == "confirm"

    made = lines(run("webhook", "add", "http://127.0.0.1:9/", "--event", "case.decided", "--json"))
    assert made[0]["secret"].startswith("whsec_")
    assert "secret" not in lines(run("webhook", "list", "--json"))[0]
    assert run("webhook", "remove", str(made[0]["id"])).exit_code == 0


def test_a_third_party_warning_stays_off_the_terminal(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.images import malformed_exif_jpeg

    image = tmp_path / "odd.jpg"
    image.write_bytes(malformed_exif_jpeg())
    counterfake = Path(sys.executable).with_name("counterfake")
    env = {**os.environ, "COUNTERFAKE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [str(counterfake), "hash", "--json", str(image)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and json.loads(done.stdout)["pdq"]
    assert "Warning" not in done.stderr and "Tag data" not in done.stderr


def test_a_hostile_tiff_is_refused_with_a_code_and_nothing_else_on_the_terminal(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    from tests.images import hostile_tiff

    hostile = {  # what libtiff (in C) and Pillow's logger would print to stderr
        "strip.tif": hostile_tiff("tiff_lzw", 273, None),  # LZW: Using code not yet in table
        "samples.tif": hostile_tiff("raw", 277, 20_000),  # More samples per pixel than ...
    }
    for name, data in hostile.items():
        (tmp_path / name).write_bytes(data)
    counterfake = Path(sys.executable).with_name("counterfake")
    env = {**os.environ, "COUNTERFAKE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [str(counterfake), "hash", *(str(tmp_path / name) for name in hostile)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode != 0
    said = done.stderr.splitlines()
    assert said[-1] == "0 ok, 2 failed"
    assert len(said) == 3 and all("[corrupt_image]" in line for line in said[:2]), said

"""Every CLI command given a path that is missing, a folder where a file belongs, or a file
where a folder belongs: a coded error and exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from counterfake.cli import main
from tests.images import encode, photo_like


@pytest.fixture
def place(home: Path, tmp_path: Path) -> Path:
    """A bank `b`, a photo, a folder and a plain file to get in the way."""
    (tmp_path / "photo.jpg").write_bytes(encode(photo_like(320, 240)))
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("in the way\n")
    (tmp_path / "archive").mkdir()
    assert CliRunner().invoke(main, ["bank", "create", "b"]).exit_code == 0
    return tmp_path


CASES = {
    "hash a missing file": (["hash", "{t}/missing.jpg"], "file_not_found"),
    "bank add a missing file": (["bank", "add", "b", "{t}/missing.jpg"], "file_not_found"),
    "bank add --hashes missing": (["bank", "add", "b", "--hashes", "{t}/no.txt"], "file_not_found"),
    "bank add --hashes a folder": (["bank", "add", "b", "--hashes", "{t}/folder"], None),
    "bank add --signatures missing": (
        ["bank", "add", "b", "--signatures", "{t}/no.jsonl"],
        "file_not_found",
    ),
    "bank import a missing file": (["bank", "import", "b", "{t}/no.jsonl"], "file_not_found"),
    "bank import a folder": (["bank", "import", "b", "{t}/folder"], None),
    "bank export into a missing folder": (
        ["bank", "export", "b", "-o", "{t}/no/such/dir/x.jsonl"],
        "unwritable_file",
    ),
    "bank export onto a folder": (["bank", "export", "b", "-o", "{t}/folder"], "unwritable_file"),
    "match a missing file": (["match", "{t}/missing.jpg"], "file_not_found"),
    "match --explain into a file": (
        ["match", "--explain", "{t}/file.txt/x", "{t}/photo.jpg"],
        "unwritable_file",
    ),
    "protect a missing file": (["protect", "{t}/missing.jpg", "-o", "{t}/s.jsonl"], None),
    "protect into a missing folder": (
        ["protect", "{t}/photo.jpg", "-o", "{t}/no/such/s.jsonl"],
        "unwritable_file",
    ),
    "investigate a missing archive": (
        ["investigate", "{t}/no-archive", "--out", "{t}/report"],
        "archive_not_found",
    ),
    "investigate into a file": (
        ["investigate", "{t}/archive", "--out", "{t}/file.txt"],
        "unwritable_file",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_bad_path_is_a_coded_error(place: Path, case: str) -> None:
    template, code = CASES[case]
    args = [a.replace("{t}", str(place)) for a in template]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert code is None or f"[{code}]" in result.stderr, result.stderr
    assert "[" in result.stderr  # every failure names its code


def test_a_store_that_cannot_be_made_is_a_coded_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("a file where the store's folder would go")
    monkeypatch.setenv("COUNTERFAKE_HOME", str(tmp_path / "file" / "home"))
    result = CliRunner().invoke(main, ["bank", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "[database_error]" in result.stderr

"""The outputs: one row per post, clusters with their evidence, a self-contained report whose
pictures are blurred (or absent), and the CLI that writes them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from counterfake.cli import main
from counterfake.investigate import BankSpec, Investigation, investigate, write_report
from counterfake.settings import load_settings

from .conftest import START, Archive, jpeg, stamped


def _spec(url: str) -> BankSpec:
    """Match against the archive's bank of protected photos, in the store at `url`."""
    return BankSpec(load_settings(database_url=url), ("protected",))


@pytest.fixture(scope="module")
def result(archive: Archive) -> Investigation:
    return investigate(archive.root, spec=_spec(archive.bank_url))


def test_messages_csv_has_every_post_with_its_cluster_and_flags(
    result: Investigation, tmp_path: Path
) -> None:
    written = write_report(result, tmp_path)
    with written["messages"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.posts) == 10
    for row, post, flags in zip(rows, result.posts, result.flags, strict=True):
        assert (row["chat_id"], int(row["message_id"])) == (post.chat_id, post.message_id)
        assert int(row["cluster"]) == flags.cluster and row["role"] == flags.role
        assert row["file"].startswith("photos/")
    assert rows[1]["via_bot"] == "@render_bot" and rows[2]["forwarded_from"] == "Requests"
    # An archive's text never becomes a spreadsheet formula.
    assert rows[3]["sender"] == '\'=HYPERLINK("x")'
    assert rows[9]["sender"] == "" and rows[9]["sender_id"] == "channel7"
    assert [r for r in rows if r["bank_matches"]] == rows[5:7]


def test_clusters_json_holds_targets_evidence_and_problems(
    result: Investigation, tmp_path: Path
) -> None:
    document = json.loads(write_report(result, tmp_path)["clusters"].read_text())
    assert document["summary"] == json.loads(json.dumps(result.summary()))
    targets = [c for c in document["clusters"] if c["target"]]
    assert len(targets) == 2
    assert sum(c["posts"] for c in document["clusters"]) == 10
    derivative_matches = [
        m for c in targets for m in c["bank_matches"] if m["signal"] == "derivative"
    ]
    assert len(derivative_matches) == 1
    assert len(derivative_matches[0]["evidence"]["changed_mask"]) == 12
    assert any(link["changed_fraction"] >= 0.25 for c in targets for link in c["links"])
    assert document["problems"] == []


def test_the_report_is_self_contained_and_blurred_by_default(
    result: Investigation, tmp_path: Path
) -> None:
    written = write_report(result, tmp_path)
    page = written["report"].read_text()
    assert "<script>" in page and "Requests &lt;script&gt;" in page  # escaped chat name
    assert "Requests <script>" not in page
    assert page.count("class='thumb'") >= 3  # target thumbnails and the evidence overlay
    assert "filter:blur(" in page and "data:image/jpeg;base64," in page
    assert "src='http" not in page and "href=" not in page  # nothing fetched from elsewhere
    for name in ("growth", "posters", "cluster_sizes"):
        assert written[f"plot_{name}"].read_bytes().startswith(b"\x89PNG")
        assert f"alt='{name}'" in page


def test_no_images_means_no_picture_of_anyone_in_the_outputs(
    result: Investigation, archive: Archive, tmp_path: Path
) -> None:
    write_report(result, tmp_path, images=False)
    page = (tmp_path / "report.html").read_text()
    assert "data:image/jpeg" not in page and "class='thumb'" not in page
    outputs = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for photo in (archive.root / "photos").iterdir():
        data = photo.read_bytes()
        for start in range(1000, len(data) - 64, len(data) // 5):
            assert data[start : start + 64] not in outputs


def test_the_cli_prints_a_summary_and_writes_the_report(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNTERFAKE_DATABASE_URL", archive.bank_url)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["investigate", str(archive.root), "--bank", "protected", "--out", str(out), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["distinct_targets"] == 2 and summary["image_posts"] == 10
    assert (out / "report.html").is_file() and (out / "messages.csv").is_file()

    human = CliRunner().invoke(main, ["investigate", str(archive.root), "--out", str(out)])
    assert human.exit_code == 0
    assert "distinct targets" in human.stdout and "report.html" in human.stdout

    missing = CliRunner().invoke(
        main, ["investigate", str(archive.root), "--bank", "nope", "--out", str(out), "--json"]
    )
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"]["code"] == "bank_not_found"


def test_the_report_explains_its_terms_and_counts_in_whole_numbers(
    result: Investigation, tmp_path: Path
) -> None:
    from counterfake.investigate.report import _monday

    page = write_report(result, tmp_path)["report"].read_text()
    for term in ("target", "derivative post", "original", "version", "role <code>copy</code>"):
        assert f"<dt>{term}</dt>" in page
    # Weeks start on Monday: 2020-07-01 was a Wednesday, its week began on 2020-06-29.
    wednesday = 1593561600  # 2020-07-01T00:00:00Z
    assert _monday(wednesday) == 1593388800  # 2020-06-29T00:00:00Z
    assert _monday(1593388800) == 1593388800


def test_a_derivative_of_a_protected_photo_is_one_whenever_it_was_posted(
    result: Investigation,
) -> None:
    matched = [
        n
        for n, flags in enumerate(result.flags)
        if any(m.signal == "derivative" for m in result.images[flags.image].record.matches)
    ]
    assert matched
    assert all(result.flags[n].role == "derivative" for n in matched)


@pytest.fixture(scope="module")
def stamped_channel(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Investigation:
    """A bot's output on eight different photos, each with the bot's corner logo."""
    root = tmp_path_factory.mktemp("stamped-export")
    (root / "photos").mkdir()
    messages = []
    for n, path in enumerate(sorted(corpus_dir.glob("*.jpg"))[60:68], start=1):
        photo = ImageOps.contain(Image.open(path).convert("RGB"), (800, 800))
        relative = f"photos/photo_{n}@01-06-2026_12-00-00.jpg"
        (root / relative).write_bytes(jpeg(stamped(photo), 85))
        messages.append({
            "id": n, "type": "message", "date_unixtime": str(START + 600 * n),
            "from": "user two", "from_id": "user2", "via_bot": "@stamp_bot",
            "photo": relative, "text": "",
        })  # fmt: skip
    document = {"name": "Gallery", "type": "public_channel", "id": 9, "messages": messages}
    (root / "result.json").write_text(json.dumps(document))
    return investigate(root)


def test_the_report_names_each_overlay_with_its_posts_and_a_blurred_picture(
    stamped_channel: Investigation, tmp_path: Path
) -> None:
    assert len(stamped_channel.overlays) == 1
    overlay = stamped_channel.overlays[0]
    assert overlay.bots == {"@stamp_bot": len(overlay.posts)} and len(overlay.posts) >= 6
    assert stamped_channel.summary()["distinct_targets"] == 8  # one per photo, none merged
    written = write_report(stamped_channel, tmp_path)
    document = json.loads(written["clusters"].read_text())
    assert document["overlays"][0]["posts"] == len(overlay.posts)
    assert document["overlays"][0]["bots"] == {"@stamp_bot": len(overlay.posts)}
    page = written["report"].read_text()
    assert "Overlays: stamps on many unrelated images (1)" in page
    assert "alt='overlay 1' src='data:image/png;base64," in page
    write_report(stamped_channel, tmp_path / "bare", images=False)
    assert "alt='overlay 1'" not in (tmp_path / "bare" / "report.html").read_text()

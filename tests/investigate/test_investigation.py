"""From an export to clusters, targets, flags and bank matches, in process and on Dask."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from counterfake.errors import FileInputError
from counterfake.investigate import BankSpec, Investigation, investigate
from counterfake.settings import load_settings

from .conftest import Archive


def _spec(url: str) -> BankSpec:
    """Match against the archive's bank of protected photos, in the store at `url`."""
    return BankSpec(load_settings(database_url=url), ("protected",))


@pytest.fixture(scope="module")
def result(archive: Archive) -> Investigation:
    return investigate(archive.root, spec=_spec(archive.bank_url))


def _by_label(result: Investigation, archive: Archive) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for n, post in enumerate(result.posts):
        out[archive.truth[post.key]].append(n)
    return out


def test_each_source_photo_is_one_cluster(result: Investigation, archive: Archive) -> None:
    labels = _by_label(result, archive)
    clusters = {label: {result.flags[n].cluster for n in posts} for label, posts in labels.items()}
    assert clusters["A-original"] == clusters["A-derivative"]
    assert all(len(c) == 1 for c in clusters.values())
    distinct = [clusters[k] for k in ("A-derivative", "B-derivative", "C", "D")]
    assert len(set().union(*distinct)) == 4


def test_clusters_with_derivatives_are_the_targets(result: Investigation, archive: Archive) -> None:
    labels = _by_label(result, archive)
    target = {label: result.flags[posts[0]].target for label, posts in labels.items()}
    assert target == {
        "A-original": True, "A-derivative": True, "B-derivative": True, "C": False, "D": False,
    }  # fmt: skip
    assert result.summary()["distinct_targets"] == 2


def test_roles_and_flags_per_post(result: Investigation, archive: Archive) -> None:
    labels = _by_label(result, archive)
    flags = result.flags
    assert flags[labels["A-original"][0]].role == "original"
    assert {flags[n].role for n in labels["A-derivative"] + labels["B-derivative"]} == {
        "derivative"
    }
    assert {flags[n].role for n in labels["C"] + labels["D"]} == {"copy"}
    bot, forward, stamped, repost = labels["A-derivative"]
    assert flags[bot].bot and not flags[bot].repost
    assert flags[forward].forward and flags[forward].repost
    assert flags[forward].image == flags[bot].image  # the same file: one image
    assert flags[repost].repost
    assert flags[stamped].stamp == "watermarked"
    assert flags[labels["C"][1]].repost and not flags[labels["C"][0]].repost


def test_a_protected_photo_is_found_through_its_derivatives(
    result: Investigation, archive: Archive
) -> None:
    labels = _by_label(result, archive)
    signals = []
    for n in labels["B-derivative"]:
        matches = result.images[result.flags[n].image].record.matches
        assert len(matches) == 1 and matches[0].entry_id in archive.protected_entries
        signals.append(matches[0].signal)
        if matches[0].signal == "derivative":
            assert matches[0].changed_fraction is not None and matches[0].changed_fraction > 0.1
    # The body smoothed over leaves PDQ close (a copy); the corner one needs local features.
    assert signals == ["pdq", "derivative"]
    others = labels["A-original"] + labels["A-derivative"] + labels["C"] + labels["D"]
    assert not any(result.images[result.flags[n].image].record.matches for n in others)
    assert result.summary()["targets_matching_banks"] == 1


def test_dask_gives_the_same_answer(result: Investigation, archive: Archive) -> None:
    on_dask = investigate(
        archive.root,
        spec=_spec(archive.bank_url),
        dask=True,
        workers=2,
    )
    assert [f.cluster for f in on_dask.flags] == [f.cluster for f in result.flags]
    assert [f.role for f in on_dask.flags] == [f.role for f in result.flags]
    # The same links too: the stages run the same calls, wherever they run.
    assert [(k.source, k.other, k.inliers) for k in on_dask.clustering.links] == [
        (k.source, k.other, k.inliers) for k in result.clustering.links
    ]
    assert [i.record.pdq for i in on_dask.images] == [i.record.pdq for i in result.images]
    assert on_dask.summary() == result.summary()


def test_undecodable_images_are_problems_not_failures(archive: Archive, tmp_path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    for n, path in enumerate(sorted((archive.root / "photos").iterdir())[:3]):
        (folder / f"{n}.jpg").write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(
        (archive.root / "photos").iterdir().__next__().read_bytes()[:500]
    )
    (folder / "empty.png").write_bytes(b"")
    result = investigate(folder)
    assert len(result.posts) == 5
    assert sorted(p.code for p in result.problems) == ["corrupt_image", "empty_input"]
    unreadable = [f for f in result.flags if f.role == "unreadable"]
    assert len(unreadable) == 2 and all(f.cluster == -1 for f in unreadable)


def test_a_missing_archive_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileInputError) as caught:
        investigate(tmp_path / "nothing")
    assert caught.value.code == "archive_not_found"


def test_the_signature_table_lives_in_the_work_folder_only_while_it_runs(
    result: Investigation, archive: Archive, tmp_path: Path
) -> None:
    work = tmp_path / "shared" / "work"
    again = investigate(archive.root, spec=_spec(archive.bank_url), work_dir=work)
    assert [f.cluster for f in again.flags] == [f.cluster for f in result.flags]
    assert work.is_dir() and list(work.iterdir()) == []
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(FileInputError) as caught:
        investigate(archive.root, work_dir=blocked / "work")
    assert caught.value.code == "work_dir_unusable"

"""Clustering an archive's images: overlays a channel stamps on many unrelated photos link
nothing, mirrored reposts are copies, and a shared bank entry joins what links missed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image, ImageFilter, ImageOps

from counterfake.investigate import overlays
from counterfake.investigate.clusters import Clustering, ImageFacts, cluster_images
from counterfake.investigate.images import analyse_image
from counterfake.investigate.table import TableWriter
from counterfake.signals.keypoints import SHORTLISTED

from .conftest import caption_stamped, diagonal_stamped, drawn, jpeg, smoothed, stamped


def _clustered(tmp: Path, images: list[bytes], **changed: dict[str, object]) -> Clustering:
    """The images analysed as an investigation does, posted in order, then clustered;
    `changed` replaces facts of some images (by number)."""
    writer = TableWriter(tmp / "table", len(images))
    facts = []
    files = []
    for n, data in enumerate(images):
        path = tmp / f"{n}.jpg"
        path.write_bytes(data)
        files.append(path)
        record = analyse_image(path, None)
        writer.add(n, record.features, record.thumb)
        fact = ImageFacts(
            pdq=record.pdq,
            mirror_pdq=record.mirror_pdq,
            quality=record.quality,
            first_seen=n,
            bots=(),
            protected_copy=False,
            protected_derivative=False,
        )
        facts.append(dataclasses.replace(fact, **changed.get(str(n), {})))  # type: ignore[arg-type]
    return cluster_images(facts, writer.close(), files=files)


@pytest.fixture(scope="module")
def photos(corpus_dir: Path) -> list[Image.Image]:
    paths = sorted(corpus_dir.glob("*.jpg"))[40:50]
    return [ImageOps.contain(Image.open(p).convert("RGB"), (800, 800)) for p in paths]


@pytest.fixture(scope="module")
def stamped_unrelated(
    photos: list[Image.Image], tmp_path_factory: pytest.TempPathFactory
) -> Clustering:
    images = [jpeg(stamped(p), 85) for p in photos]
    return _clustered(tmp_path_factory.mktemp("stamped"), images)


def test_a_stamp_on_many_unrelated_photos_is_found_as_an_overlay(
    stamped_unrelated: Clustering,
) -> None:
    assert len(stamped_unrelated.overlays) == 1
    overlay = stamped_unrelated.overlays[0]
    assert len(overlay.images) >= 8
    left, top, right, bottom = overlay.box
    assert 0.5 < left < right <= 1.0 and 0.6 < top < bottom <= 1.0  # the bottom right corner


def test_photos_that_share_only_a_stamp_are_never_linked(stamped_unrelated: Clustering) -> None:
    assert len(set(stamped_unrelated.cluster)) == 10
    assert not stamped_unrelated.targets


@pytest.fixture(scope="module")
def diagonal_unrelated(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Clustering:
    paths = sorted(corpus_dir.glob("*.jpg"))[100:124]
    # Fakes of 24 people: a large part of each smoothed over, then the bot's stamp.
    images = [
        jpeg(diagonal_stamped(smoothed(ImageOps.contain(Image.open(p).convert("RGB"), (800, 800)),
                                       (0.15, 0.3, 0.85, 1.0))), 85)
        for p in paths
    ]  # fmt: skip
    return _clustered(tmp_path_factory.mktemp("diagonal"), images)


def test_photos_that_share_only_a_diagonal_text_stamp_are_never_linked(
    diagonal_unrelated: Clustering,
) -> None:
    # Only some letters recur well enough to be found; the footprint covers the rest.
    assert len(diagonal_unrelated.overlays) >= 1
    assert len(set(diagonal_unrelated.cluster)) == 24
    assert not diagonal_unrelated.links


def test_small_fakes_whose_caption_took_their_keypoints_still_join_their_originals(
    corpus_dir: Path, tmp_path: Path
) -> None:
    # Enlarged to the working size, a caption's letters have the strongest corners: up to
    # 90% of a small fake's first signature lay on it. Signed again off it, all but one of 60
    # fakes join their original (posted smaller); left out afterwards, 4 did not.
    paths = sorted(corpus_dir.glob("*.jpg"))[100:160]
    photos = [ImageOps.contain(Image.open(p).convert("RGB"), (260, 260)) for p in paths]
    originals = [jpeg(p.resize((p.width * 3 // 5, p.height * 3 // 5))) for p in photos]
    fakes = [jpeg(caption_stamped(smoothed(p, (0.2, 0.35, 0.8, 0.8))), 80) for p in photos]
    clustering = _clustered(tmp_path, originals + fakes)
    assert len(clustering.overlays) == 1
    n = len(photos)
    apart = [k for k in range(n) if clustering.cluster[k] != clustering.cluster[n + k]]
    assert len(apart) <= 1
    assert len(set(clustering.cluster)) == n + len(apart)


def test_two_fakes_with_the_same_content_pasted_in_are_not_linked_by_it(
    corpus_dir: Path, tmp_path: Path
) -> None:
    first, second, filler = (
        ImageOps.fit(Image.open(p).convert("RGB"), (800, 600))
        for p in sorted(corpus_dir.glob("*.jpg"))[130:133]
    )
    box = (160, 200, 640, 600)  # the lower middle: where a body would be
    patch = filler.resize((box[2] - box[0], box[3] - box[1]))

    def pasted(photo: Image.Image) -> Image.Image:
        out = photo.copy()
        out.paste(patch, box[:2])
        return out

    images = [jpeg(first, 90), jpeg(second, 90), jpeg(pasted(first), 80), jpeg(pasted(second), 75)]
    clustering = _clustered(tmp_path, images)
    # Each fake is linked to its own photo; the two fakes agree only on what was pasted in.
    assert clustering.cluster[0] == clustering.cluster[2]
    assert clustering.cluster[1] == clustering.cluster[3]
    assert clustering.cluster[0] != clustering.cluster[1]
    assert {(k.source, k.other) for k in clustering.links} == {(0, 2), (1, 3)}


def test_a_photo_posted_in_many_versions_is_not_an_overlay(
    photos: list[Image.Image], tmp_path: Path
) -> None:
    photo = photos[0]
    w, h = photo.size
    versions = []
    for k in range(8):  # a different part smoothed away in each: each its own PDQ group
        x, y = (k % 4) * w // 4, (k // 4) * h // 2
        region = (x, y, x + w // 4, y + h // 2)
        out = photo.copy()
        out.paste(photo.crop(region).filter(ImageFilter.GaussianBlur(25)), region[:2])
        versions.append(jpeg(out, 80))
    clustering = _clustered(tmp_path, versions)
    assert clustering.overlays == []
    assert len(set(clustering.cluster)) == 1


def test_a_mirrored_repost_is_a_copy_of_the_photo(
    photos: list[Image.Image], tmp_path: Path
) -> None:
    photo = photos[1]
    mirrored = ImageOps.mirror(photo).resize((photo.width * 3 // 4, photo.height * 3 // 4))
    clustering = _clustered(tmp_path, [jpeg(photo, 90), jpeg(mirrored, 70)])
    assert clustering.cluster[0] == clustering.cluster[1]
    assert clustering.version[0] == clustering.version[1]


def test_images_matching_one_bank_entry_are_one_cluster_joined_by_the_bank(
    photos: list[Image.Image], tmp_path: Path
) -> None:
    images = [jpeg(photos[2], 90), jpeg(photos[3], 90), jpeg(photos[4], 90)]
    clustering = _clustered(
        tmp_path,
        images,
        **{
            "0": {"entries": ("protected:7",), "protected_copy": True},
            "1": {"entries": ("protected:7",), "protected_derivative": True},
        },
    )
    assert clustering.cluster[0] == clustering.cluster[1] != clustering.cluster[2]
    assert clustering.joined_by_bank == {clustering.cluster[0]}
    assert clustering.targets == {clustering.cluster[0]}


def test_unreadable_images_stay_out_of_every_cluster(tmp_path: Path) -> None:
    writer = TableWriter(tmp_path / "table", 1)
    writer.add(0, b"", b"")
    clustering = cluster_images([ImageFacts(None, 0, 0, (), False, False)], writer.close())
    assert clustering.cluster == [-1]
    assert clustering.overlays == []


def test_an_overlay_found_on_a_sample_is_looked_for_in_every_image(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = sorted(corpus_dir.glob("*.jpg"))[70:94]
    images = [jpeg(stamped(ImageOps.contain(Image.open(p).convert("RGB"), (800, 800))), 85)
              for p in paths]  # fmt: skip
    # Every other image sampled: the others carry it too, and are found by looking again.
    monkeypatch.setattr(overlays, "_SAMPLED_ROWS", 12 * SHORTLISTED)
    clustering = _clustered(tmp_path, images)
    assert len(clustering.overlays) == 1
    carriers = clustering.overlays[0].images
    assert len(carriers) >= 16
    assert sum(1 for i in carriers if i % 2) >= 8  # outside the sample
    assert len(set(clustering.cluster)) >= 23


def test_a_bots_stamp_is_found_when_its_output_is_a_small_part_of_the_archive(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = sorted(corpus_dir.glob("*.jpg"))[130:170]
    bot = [n for n in range(len(paths)) if n % 4 == 1]  # none in an even sample of every 2nd
    images = [
        jpeg((stamped if n in bot else lambda p: p)(ImageOps.contain(Image.open(p).convert("RGB"),
                                                                     (800, 800))), 85)
        for n, p in enumerate(paths)
    ]  # fmt: skip
    monkeypatch.setattr(overlays, "_SAMPLED_ROWS", 20 * SHORTLISTED)
    clustering = _clustered(tmp_path, images, **{str(n): {"bots": ("@bot",)} for n in bot})
    assert len(clustering.overlays) == 1
    assert len(set(clustering.overlays[0].images) & set(bot)) >= 8
    assert len({clustering.cluster[n] for n in bot}) == len(bot)


def test_corners_that_many_drawn_pictures_have_at_the_same_places_are_no_overlay(
    tmp_path: Path,
) -> None:
    # 200 pictures of rectangles, 24 of them with a logo: chance puts plain corners at the
    # same places in many of them. On f1ab640's rules the logo's overlay took 90 pictures
    # without it (its rounded corners are plain too) and a second overlay was carried by 84
    # pictures, 74 without the logo. A few pictures have two or three of its corners where
    # it lies.
    logo = set(range(0, 200, 8)) - {0}
    images = [jpeg(stamped(drawn(n)) if n in logo else drawn(n)) for n in range(200)]
    clustering = _clustered(tmp_path, images)
    assert len(clustering.overlays) == 1
    carriers = set(clustering.overlays[0].images)
    assert len(carriers & logo) >= 20 and len(carriers - logo) <= 5


def test_a_process_maps_the_saved_shortlist_only_while_candidates_are_sought(
    photos: list[Image.Image], tmp_path: Path
) -> None:
    """Built once and saved beside the table; a worker maps it for its candidate tasks and
    lets go of it when link verification starts (at 100,000 images it is gigabytes)."""
    from counterfake.investigate import clusters

    writer = TableWriter(tmp_path / "table", 3)
    for n, photo in enumerate(photos[:3]):
        path = tmp_path / f"{n}.jpg"
        path.write_bytes(jpeg(photo.resize((photo.width // 2, photo.height // 2)), 80))
        record = analyse_image(path, None)
        writer.add(n, record.features, record.thumb)
    table = writer.close()
    clusters._save_shortlist(table, (0, 1, 2))
    assert (table.folder / "shortlist" / "shortlist.json").exists()
    clusters._shortlist.cache_clear()
    clusters.candidates(table.folder, [0, 1])
    assert clusters._shortlist.cache_info().currsize == 1
    assert clusters.verify_pairs(table.folder, [], {}) == []
    assert clusters._shortlist.cache_info().currsize == 0

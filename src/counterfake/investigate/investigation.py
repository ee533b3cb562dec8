"""An investigation from start to end: read the archive, analyse each distinct image (here or on
Dask), cluster, and flag every post. The report module writes what this returns."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
from rich.progress import Progress

from ..errors import FileInputError
from ..media import Limits
from .archive import Post, Problem, read_archive
from .clusters import Clustering, ImageFacts, cluster_images
from .engines import Runner, analyse, dask_runner, run_here
from .images import BankSpec, ImageRecord
from .overlays import Overlay
from .table import TableWriter, forget_tables

__all__ = ["ChannelOverlay", "Image", "Investigation", "PostFlags", "investigate"]

_PICTURED: Final = 64  # carriers whose median pictures an overlay


@dataclasses.dataclass(frozen=True)
class Image:
    """A distinct image file (by SHA-256) and every post that carries it."""

    sha256: str
    path: Path
    record: ImageRecord
    posts: tuple[int, ...]  # post numbers, in time order


@dataclasses.dataclass(frozen=True)
class PostFlags:
    image: int
    cluster: int
    version: int
    role: str  # original, derivative, copy, unreadable
    target: bool
    repost: bool  # the same image or a near-duplicate was posted earlier
    bot: bool
    forward: bool
    stamp: str  # watermarked, clean or ""


@dataclasses.dataclass(frozen=True)
class ChannelOverlay:
    """A stamp that many unrelated images of the archive carry (a bot's watermark, a logo, a
    caption bar), and who posted them: evidence of who made them."""

    images: tuple[int, ...]
    posts: tuple[int, ...]  # post numbers, in time order
    box: tuple[float, float, float, float]  # left, top, right, bottom: fractions of the image
    bots: dict[str, int]  # via_bot -> posts
    senders: dict[str, int]  # sender -> posts
    #: Its main bot's other posts, where the stamp was not seen: left out of links as carriers.
    unseen_posts: tuple[int, ...] = ()
    #: The stamp's box on the median of up to 64 carriers' grey thumbnails, blurred: the
    #: stamp, not any one photo.
    picture: np.ndarray = dataclasses.field(
        repr=False, compare=False, default_factory=lambda: np.zeros((1, 1), np.uint8)
    )


@dataclasses.dataclass
class Investigation:
    archive: Path
    format: str
    posts: list[Post]
    flags: list[PostFlags]
    images: list[Image]
    clustering: Clustering
    problems: list[Problem]
    messages: int
    banks: tuple[str, ...]
    timings: dict[str, float]
    overlays: list[ChannelOverlay] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        targets = self.clustering.targets
        derivative_posts = sum(1 for f in self.flags if f.role == "derivative")
        protected = {
            c
            for image, c in zip(self.images, self.clustering.cluster, strict=True)
            if c in targets and image.record.matches
        }
        return {
            "messages": self.messages,
            "image_posts": len(self.posts),
            "distinct_images": len(self.images),
            "clusters": len({c for c in self.clustering.cluster if c >= 0}),
            "distinct_targets": len(targets),
            "derivative_posts": derivative_posts,
            "bot_posts": sum(1 for f in self.flags if f.bot),
            "forwards": sum(1 for f in self.flags if f.forward),
            "reposts": sum(1 for f in self.flags if f.repost),
            "posters": len({p.sender_id or p.sender or "unknown" for p in self.posts}),
            "images_matching_banks": sum(1 for i in self.images if i.record.matches),
            "targets_matching_banks": len(protected),
            "targets_joined_by_bank_match": len(self.clustering.joined_by_bank & targets),
            "overlays": len(self.overlays),
            "problems": len(self.problems),
        }


def _channel_overlay(
    overlay: Overlay, posts: list[Post], posts_of_image: list[list[int]], thumbs: np.ndarray
) -> ChannelOverlay:
    def in_order(images: tuple[int, ...]) -> tuple[int, ...]:
        found = (n for i in images for n in posts_of_image[i])
        return tuple(sorted(found, key=lambda n: (posts[n].timestamp, posts[n].key)))

    carried = in_order(overlay.images)
    # The carriers' median: the photos under the stamp differ and fade, the stamp stays.
    median = np.median(thumbs[list(overlay.images[:_PICTURED])], axis=0).astype(np.uint8)
    side = thumbs.shape[1]
    left, top, right, bottom = (
        int(np.clip(v * side + pad, 0, side))
        for v, pad in zip(overlay.box, (-4, -4, 4, 4), strict=True)
    )
    crop = median[top : max(bottom, top + 1), left : max(right, left + 1)]
    return ChannelOverlay(
        images=overlay.images,
        posts=carried,
        box=overlay.box,
        bots=dict(Counter(posts[n].via_bot or "" for n in carried if posts[n].via_bot)),
        senders=dict(Counter(posts[n].sender or posts[n].sender_id or "unknown" for n in carried)),
        picture=cv2.GaussianBlur(crop, (0, 0), 1.2),
        unseen_posts=in_order(overlay.unseen),
    )


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def investigate(
    archive: Path,
    *,
    spec: BankSpec | None = None,
    limits: Limits | None = None,
    dask: bool = False,
    scheduler: str | None = None,
    workers: int = 2,
    progress: Progress | None = None,
    work_dir: Path | None = None,
) -> Investigation:
    """Everything `counterfake investigate` reports about one archive. The signature table
    lives in a temporary folder under `work_dir` (every Dask worker must see it at the same
    path) while it runs."""
    if not archive.exists():
        raise FileInputError("no such archive", code="archive_not_found", path=str(archive))
    if work_dir is not None:
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileInputError(
                "the work folder cannot be made", code="work_dir_unusable", path=str(work_dir)
            ) from exc
    limits = limits or Limits()
    progress = progress or Progress(disable=True)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    reader = read_archive(archive)
    posts: list[Post] = []
    by_digest: dict[str, int] = {}
    paths: list[Path] = []
    image_of_post: list[int] = []
    task = progress.add_task("reading the archive", total=None)
    for post in reader.posts():
        digest = _sha256(post.path)
        if digest is None:
            reader.problems.append(Problem("unreadable_file", post.key, str(post.path)))
            continue
        if digest not in by_digest:
            by_digest[digest] = len(paths)
            paths.append(post.path)
        posts.append(post)
        image_of_post.append(by_digest[digest])
        progress.advance(task)
    progress.update(task, total=len(posts), completed=len(posts))
    timings["read"] = time.perf_counter() - started

    order = sorted(range(len(posts)), key=lambda n: (posts[n].timestamp, posts[n].key))
    posts_of_image: list[list[int]] = [[] for _ in paths]
    for n in order:
        posts_of_image[image_of_post[n]].append(n)
    with contextlib.ExitStack() as stack:
        run: Runner = run_here
        if dask or scheduler:
            run = stack.enter_context(dask_runner(scheduler, workers))
        folder = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="counterfake-", dir=work_dir))
        )
        stack.callback(forget_tables)
        started = time.perf_counter()
        task = progress.add_task("hashing and matching images", total=len(paths))
        writer = TableWriter(folder, len(paths))
        analysed: list[ImageRecord] = [ImageRecord()] * len(paths)

        def keep(image: int, record: ImageRecord) -> None:
            # The signature and thumbnail go to the table; the record keeps the rest.
            writer.add(image, record.features, record.thumb)
            analysed[image] = dataclasses.replace(record, features=b"", thumb=b"")
            progress.advance(task, 1)

        analyse(paths, spec, limits, run, keep)
        table = writer.close()
        records = analysed
        timings["analyse"] = time.perf_counter() - started

        facts = []
        for image, record in enumerate(records):
            matches = record.matches
            facts.append(
                ImageFacts(
                    pdq=record.pdq,
                    mirror_pdq=record.mirror_pdq,
                    quality=record.quality,
                    first_seen=posts[posts_of_image[image][0]].timestamp,
                    bots=tuple(
                        sorted({b for n in posts_of_image[image] if (b := posts[n].via_bot)})
                    ),
                    protected_copy=any(m.signal != "derivative" for m in matches),
                    protected_derivative=any(m.signal == "derivative" for m in matches),
                    entries=tuple(sorted({f"{m.bank}:{m.entry_id}" for m in matches})),
                )
            )
            if record.error:
                reader.problems.append(
                    Problem(record.error, str(paths[image]), record.error_message[:200])
                )

        started = time.perf_counter()
        task = progress.add_task("clustering", total=None)
        clustering = cluster_images(
            facts,
            table,
            run=run,
            progress=lambda done: progress.update(task, completed=done),
            files=paths,
            limits=limits,
        )
        progress.update(task, total=1, completed=1)
        timings["cluster"] = time.perf_counter() - started
        timings.update({f"cluster: {k}": v for k, v in clustering.timings.items()})
        assert table.thumbs is not None
        overlays = [
            _channel_overlay(overlay, posts, posts_of_image, table.thumbs)
            for overlay in clustering.overlays
        ]

    images = [
        Image(digest, paths[i], records[i], tuple(posts_of_image[i]))
        for digest, i in sorted(by_digest.items(), key=lambda kv: kv[1])
    ]
    flags: list[PostFlags | None] = [None] * len(posts)
    seen_versions: set[int] = set()
    for n in order:
        image = image_of_post[n]
        version = clustering.version[image]
        cluster = clustering.cluster[image]
        flags[n] = PostFlags(
            image=image,
            cluster=cluster,
            version=version,
            # A derivative of a protected photo is one whenever it was posted (even before the
            # photo itself appeared in the archive).
            role="derivative" if facts[image].protected_derivative else clustering.role[image],
            target=cluster in clustering.targets,
            repost=cluster >= 0 and version in seen_versions,
            bot=posts[n].via_bot is not None,
            forward=posts[n].forwarded_from is not None,
            stamp=clustering.stamp[image],
        )
        seen_versions.add(version)
    return Investigation(
        archive=archive,
        format=reader.format,
        posts=posts,
        flags=[f for f in flags if f is not None],
        images=images,
        clustering=clustering,
        problems=reader.problems,
        messages=reader.messages,
        banks=spec.banks if spec else (),
        timings=timings,
        overlays=overlays,
    )

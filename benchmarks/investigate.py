"""`counterfake investigate`: accuracy on an archive with known truth, and speed at scale.

    python benchmarks/investigate.py [--corpus ../shared/corpus/photos] [--scale 100000]

1. Evaluation. Writes a Telegram Desktop full export (three chats) from the corpus with known
   truth: targets whose original is posted as a request in a group, derivatives posted by a bot
   (`via_bot`) minutes later (30-50% of the photo replaced by a smooth fill, OpenCV inpainting,
   a heavy blur or a held-out photo's content; JPEG, resized), forwarded to a channel
   (`forwarded_from`, same file), watermarked versions of them posted by the channel, re-encoded
   reposts weeks later, targets whose original never appears, unrelated photos (some reposted),
   more new targets every week, and the exporter's traps (skipped media, a missing file, a
   corrupt JPEG, service messages, a sticker, text as arrays, `from: null`). A third of the
   targets are protected in a bank (`protect`, by the photo's owner, from the original file).
   Then `investigate` with the bank, and the result against the truth: distinct targets,
   derivative posts in their target's cluster, unrelated posts in target clusters, protected
   targets found.
2. Scale. An archive of `--scale` photos (corpus photos as tiles, crops, flips, re-encodes and
   resizes: each file distinct), investigated single-process and on a Dask LocalCluster with 2
   worker processes (the baseline is the single process, same archive, same run): wall time,
   photos/s, peak memory, and the time per stage.

Writes JSON and a Markdown table to benchmarks/results/ and keeps the evaluation archive's
report (report.html) there.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import json
import multiprocessing
import resource
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from counterfake import Store
from counterfake.investigate import BankSpec, investigate, write_report
from counterfake.protect import protect_bytes
from counterfake.settings import load_settings
from robustness import _crop, _fill, _jpeg, _region, _reload, _text

RESULTS = Path(__file__).resolve().parent / "results"
WEEK = 7 * 86400
START = 1_780_272_000  # 2026-06-01 00:00 UTC
SKIPPED = "(File not included. Change data exporting settings to download.)"
FILLS = ("smooth_fill", "inpaint", "heavy_blur", "other_photo")


def _spec(url: str) -> BankSpec:
    """Match against the archive's bank of protected photos, in the store at `url`."""
    return BankSpec(load_settings(database_url=url), ("protected",))


class _Export:
    """A Telegram Desktop full export being written: chats, messages, media files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.chats: list[dict[str, Any]] = []
        self.truth: dict[str, dict[str, Any]] = {}
        self.files = 0

    def chat(self, name: str, kind: str, chat_id: int) -> dict[str, Any]:
        chat = {"name": name, "type": kind, "id": chat_id, "messages": []}
        self.chats.append(chat)
        (self.root / f"chats/chat_{len(self.chats):03d}/photos").mkdir(parents=True)
        return chat

    def photo(self, chat: dict[str, Any], data: bytes, when: int) -> str:
        self.files += 1
        number = self.chats.index(chat) + 1
        stamp = time.strftime("%d-%m-%Y_%H-%M-%S", time.gmtime(when))
        relative = f"chats/chat_{number:03d}/photos/photo_{self.files}@{stamp}.jpg"
        (self.root / relative).write_bytes(data)
        return relative

    def post(
        self,
        chat: dict[str, Any],
        when: int,
        sender: tuple[str | None, str],
        media: str | None,
        truth: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        message: dict[str, Any] = {
            "id": len(chat["messages"]) + 1,
            "type": "message",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)),
            "date_unixtime": str(when),
            "from": sender[0],
            "from_id": sender[1],
            **extra,
        }
        if media is not None:
            message["photo"] = media
            message["width"], message["height"] = 800, 600
        message.setdefault("text", "")
        message["text_entities"] = []
        if truth is not None:
            message["_truth"] = truth
        chat["messages"].append(message)

    def write(self) -> Path:
        # Message ids grow with time, as Telegram's do; the truth follows its message.
        for chat in self.chats:
            chat["messages"].sort(key=lambda m: int(m["date_unixtime"]))
            for number, message in enumerate(chat["messages"], start=1):
                message["id"] = number
                truth = message.pop("_truth", None)
                if truth is not None:
                    self.truth[f"{chat['id']}/{number}"] = truth
        document = {
            "about": "Here is the data you requested.",
            "chats": {"about": "This is the list of chats.", "list": self.chats},
        }
        path = self.root / "result.json"
        path.write_text(json.dumps(document, ensure_ascii=False, indent=1))
        return path


def _load(path: Path, side: int = 1024) -> Image.Image:
    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side))
    return image


def _derive(original: Image.Image, filler: Image.Image, rng: np.random.Generator) -> Image.Image:
    fraction = float(rng.uniform(0.3, 0.5))
    region = "body" if rng.random() < 0.6 else "random"
    box = _region(original.width, original.height, fraction, region, rng)
    return _fill(original, filler, box, str(rng.choice(FILLS)))


def _encode(image: Image.Image, rng: np.random.Generator, scale: float = 1.0) -> bytes:
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    return _jpeg(image, int(rng.integers(60, 92)))


def build_truth_archive(
    corpus: list[Path], root: Path, *, targets: int, unrelated: int, seed: int = 7
) -> tuple[Path, dict[str, Any]]:
    """The evaluation archive and its truth (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if len(corpus) < targets + unrelated + 10:
        raise SystemExit("the corpus is too small for these numbers")
    originals = corpus[:targets]
    unrelated_photos = corpus[targets : targets + unrelated]
    fillers = corpus[targets + unrelated :]
    export = _Export(root)
    group = export.chat("Requests", "public_supergroup", 1001)
    channel = export.chat("Gallery", "public_channel", 1002)
    reposts = export.chat("Reposts", "public_supergroup", 1003)
    users = [(f"user {n}", f"user{5000 + n}") for n in range(25)]
    gallery = ("Gallery", "channel1002")
    bot = "@benign_render_bot"
    weeks = 12
    # More new targets every week: growth.
    weights = np.array([1.25**w for w in range(weeks)])
    week_of_target = np.sort(rng.choice(weeks, size=targets, p=weights / weights.sum()))
    protected: list[int] = []
    for t, path in enumerate(originals):
        original = _load(path)
        when = START + int(week_of_target[t]) * WEEK + int(rng.integers(0, WEEK - 86400))
        requester = users[int(rng.integers(len(users)))]
        if t % 3 == 0:
            protected.append(t)
        if rng.random() < 0.7:  # the original posted as a request
            media = export.photo(group, _encode(original, rng), when)
            export.post(
                group,
                when,
                requester,
                media,
                {"target": t, "kind": "original"},
                text=[{"type": "plain", "text": "please"}, " do this one"],
            )
        for d in range(int(rng.integers(1, 4))):
            filler = _load(fillers[int(rng.integers(len(fillers)))])
            derived = _derive(original, filler, rng)
            clean = _encode(derived, rng, scale=float(rng.uniform(0.6, 1.0)))
            at = when + 600 * (d + 1)
            media = export.photo(group, clean, at)
            export.post(
                group, at, requester, media, {"target": t, "kind": "derivative"}, via_bot=bot
            )
            if rng.random() < 0.6:  # forwarded to the channel: the same file
                at2 = at + int(rng.integers(3600, 3 * 86400))
                media = export.photo(channel, clean, at2)
                export.post(
                    channel,
                    at2,
                    gallery,
                    media,
                    {"target": t, "kind": "derivative"},
                    forwarded_from="Requests",
                )
            if rng.random() < 0.5:  # the channel's watermarked version
                at3 = at + int(rng.integers(86400, 5 * 86400))
                stamped = _text(_reload(clean), diagonal=True, alpha=110)
                media = export.photo(channel, _encode(stamped, rng), at3)
                export.post(
                    channel,
                    at3,
                    gallery,
                    media,
                    {"target": t, "kind": "derivative", "watermarked": True},
                )
            if rng.random() < 0.4:  # re-encoded repost, later
                at4 = at + int(rng.integers(3 * 86400, 20 * 86400))
                reposter = users[int(rng.integers(len(users)))]
                media = export.photo(reposts, _encode(_reload(clean), rng, 0.8), at4)
                export.post(reposts, at4, reposter, media, {"target": t, "kind": "derivative"})
    for u, path in enumerate(unrelated_photos):
        photo = _load(path)
        when = START + int(rng.integers(0, weeks * WEEK))
        chat = group if u % 2 else channel
        sender = users[int(rng.integers(len(users)))] if chat is group else gallery
        media = export.photo(chat, _encode(photo, rng), when)
        export.post(chat, when, sender, media, {"target": None, "kind": "unrelated"})
        if rng.random() < 0.3:
            at = when + int(rng.integers(86400, 10 * 86400))
            media = export.photo(reposts, _encode(_crop(photo, 0.04), rng, 0.8), at)
            reposter = users[int(rng.integers(len(users)))]
            export.post(reposts, at, reposter, media, {"target": None, "kind": "unrelated"})
    # The exporter's traps.
    t0 = START + 3 * WEEK
    export.post(group, t0, users[0], SKIPPED)
    export.post(group, t0 + 1, users[1], "chats/chat_001/photos/photo_gone@01-01-2026_00-00-00.jpg")
    broken = export.photo(group, _encode(_load(fillers[0]), rng)[:3000], t0 + 2)
    export.post(group, t0 + 2, users[2], broken)
    export.post(channel, t0 + 3, (None, "channel1002"), None, text="no media, from null")
    sticker = root / "chats/chat_002/stickers/sticker.webp"
    sticker.parent.mkdir(parents=True, exist_ok=True)
    _load(fillers[1], 256).save(sticker, "WEBP")
    export.post(
        channel,
        t0 + 4,
        gallery,
        None,
        file="chats/chat_002/stickers/sticker.webp",
        mime_type="image/webp",
        media_type="sticker",
    )
    group["messages"].append(
        {
            "id": 0,
            "type": "service",
            "date": "2026-06-02T10:00:00",
            "date_unixtime": str(START + 86400),
            "action": "join_group_by_link",
            "actor": "user 3",
            "actor_id": "user5003",
            "text": "",
        }
    )
    path = export.write()
    truth = {"messages": export.truth, "protected": protected, "targets": targets}
    return path, truth


def _protect_bank(url: str, corpus: list[Path], protected: list[int]) -> dict[int, int]:
    """The owners protect their originals; returns derivative and pdq entry id -> target."""
    owner_of: dict[int, int] = {}
    with Store.open(url) as store:
        store.create_bank("protected")
        for t in protected:
            data = _jpeg(_load(corpus[t]), 95)
            photo = protect_bytes(data, name=f"target-{t}")
            for result in store.add_entries("protected", photo.entries()):
                owner_of[result.entry_id] = t
    return owner_of


def evaluate(result: Any, truth: dict[str, Any], owner_of: dict[int, int]) -> dict[str, Any]:
    messages = truth["messages"]
    cluster_of = {p.key: f.cluster for p, f in zip(result.posts, result.flags, strict=True)}
    targets_truth = {m["target"] for m in messages.values() if m["kind"] == "derivative"}
    derivative_posts = [k for k, m in messages.items() if m["kind"] == "derivative"]
    home: dict[int, int] = {}
    for t in targets_truth:
        clusters = Counter(
            cluster_of.get(k) for k in derivative_posts if messages[k]["target"] == t
        )
        home[t] = clusters.most_common(1)[0][0] if clusters else -1
    in_home = sum(
        1
        for k in derivative_posts
        if cluster_of.get(k) == home[messages[k]["target"]]
        and home[messages[k]["target"]] in result.clustering.targets
    )
    unrelated_in_targets = sum(
        1
        for k, m in messages.items()
        if m["kind"] == "unrelated" and cluster_of.get(k) in result.clustering.targets
    )
    found = 0
    for t in truth["protected"]:
        members = [n for n, f in enumerate(result.flags) if f.cluster == home.get(t)]
        matched = {
            owner_of.get(m.entry_id)
            for n in members
            for m in result.images[result.flags[n].image].record.matches
        }
        found += t in matched
    merged_homes = len(targets_truth) - len({home[t] for t in targets_truth})
    stamped = [k for k, m in messages.items() if m.get("watermarked")]
    flagged = {
        p.key for p, f in zip(result.posts, result.flags, strict=True) if f.stamp == "watermarked"
    }
    return {
        "posts": len(result.posts),
        "truth_targets": len(targets_truth),
        "found_targets": len(result.clustering.targets),
        "target_count_error": (len(result.clustering.targets) - len(targets_truth))
        / len(targets_truth),
        "derivative_posts": len(derivative_posts),
        "derivative_posts_in_target_cluster": in_home / len(derivative_posts),
        "targets_sharing_a_cluster": merged_homes,
        "unrelated_posts_in_target_clusters": unrelated_in_targets,
        "protected_targets": len(truth["protected"]),
        "protected_targets_found": found,
        "watermarked_posts": len(stamped),
        "watermarked_flagged": len(set(stamped) & flagged),
        "flagged_watermarked_wrongly": len(flagged - set(stamped)),
        "problems": dict(Counter(p.code for p in result.problems)),
    }


def _scale_job(job: tuple[int, str, str, int]) -> None:
    number, source, target, seed = job
    rng = np.random.default_rng(seed)
    image = _load(Path(source))
    kind = number % 4
    if kind == 0:  # a tile
        w, h = image.size
        tw, th = int(w * rng.uniform(0.4, 0.7)), int(h * rng.uniform(0.4, 0.7))
        x, y = int(rng.integers(0, w - tw)), int(rng.integers(0, h - th))
        image = image.crop((x, y, x + tw, y + th))
    elif kind == 1:
        image = _crop(image, float(rng.uniform(0.02, 0.15)))
    elif kind == 2:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.resize(
        (
            max(64, int(image.width * rng.uniform(0.5, 1.0))),
            max(64, int(image.height * rng.uniform(0.5, 1.0))),
        )
    )
    Path(target).write_bytes(_jpeg(image, int(rng.integers(50, 95))))


def build_scale_archive(corpus: list[Path], root: Path, photos: int) -> Path:
    """One channel of `photos` image posts, a day apart in 10-minute steps."""
    chat_dir = root / "photos"
    chat_dir.mkdir(parents=True)
    jobs = []
    messages = []
    for n in range(photos):
        when = START + 600 * n
        stamp = time.strftime("%d-%m-%Y_%H-%M-%S", time.gmtime(when))
        relative = f"photos/photo_{n + 1}@{stamp}.jpg"
        jobs.append((n, str(corpus[n % len(corpus)]), str(root / relative), n))
        messages.append(
            {
                "id": n + 1,
                "type": "message",
                "date_unixtime": str(when),
                "from": "Gallery",
                "from_id": "channel1",
                "photo": relative,
                "text": "",
            }
        )
    with multiprocessing.get_context("spawn").Pool() as pool:
        pool.map(_scale_job, jobs, chunksize=64)
    path = root / "result.json"
    with path.open("w") as fh:
        json.dump({"name": "Gallery", "type": "public_channel", "id": 1, "messages": messages}, fh)
    return path


class _PeakMemory:
    """Peak resident memory of this process and its children (Dask workers), sampled."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _timed(archive: Path, dask: bool) -> dict[str, Any]:
    with _PeakMemory() as memory:
        started = time.perf_counter()
        result = investigate(archive, dask=dask, workers=2)
        wall = time.perf_counter() - started
    return {
        "engine": "dask-localcluster-2" if dask else "single-process",
        "photos": len(result.images),
        "wall_s": round(wall, 1),
        "photos_per_s": round(len(result.images) / wall, 1),
        "peak_memory_mb": round(memory.peak / 2**20),
        "stages_s": {k: round(v, 1) for k, v in result.timings.items()},
        "clusters": result.summary()["clusters"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument("--targets", type=int, default=60)
    parser.add_argument("--unrelated", type=int, default=120)
    parser.add_argument("--scale", type=int, default=100_000, help="photos; 0 skips the scale run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    corpus = sorted(args.corpus.glob("*.jpg"))
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"investigate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    work = out.with_suffix("")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    archive, truth = build_truth_archive(
        corpus, work / "truth-archive", targets=args.targets, unrelated=args.unrelated
    )
    (work / "truth.json").write_text(json.dumps(truth))
    url = f"sqlite:///{work / 'bank.db'}"
    owner_of = _protect_bank(url, corpus, truth["protected"])
    started = time.perf_counter()
    result = investigate(archive.parent, spec=_spec(url))
    write_report(result, work / "truth-report")
    evaluation = evaluate(result, truth, owner_of)
    evaluation["wall_s"] = round(time.perf_counter() - started, 1)

    scale: list[dict[str, Any]] = []
    if args.scale:
        started = time.perf_counter()
        big = build_scale_archive(corpus, work / "scale-archive", args.scale)
        generated = time.perf_counter() - started
        print(f"scale archive: {args.scale} photos in {generated:.0f} s", flush=True)
        scale = [_timed(big.parent, dask=False), _timed(big.parent, dask=True)]
        shutil.rmtree(big.parent)

    e = evaluation
    lines = [
        f"Evaluation archive: {e['posts']} image posts, {e['truth_targets']} targets,"
        f" {e['derivative_posts']} derivative posts, {e['protected_targets']} protected targets.",
        "",
        "| measure | truth | counterfake | target |",
        "|---|---|---|---|",
        f"| distinct targets | {e['truth_targets']} | {e['found_targets']}"
        f" ({e['target_count_error']:+.1%}) | within +-5% |",
        f"| derivative posts in their target's cluster | {e['derivative_posts']} |"
        f" {e['derivative_posts_in_target_cluster']:.1%} | >= 95% |",
        f"| unrelated posts in target clusters | 0 |"
        f" {e['unrelated_posts_in_target_clusters']} | 0 |",
        f"| protected targets found | {e['protected_targets']} | {e['protected_targets_found']}"
        " | all |",
        f"| targets sharing a cluster with another | 0 | {e['targets_sharing_a_cluster']} | - |",
        f"| watermarked posts flagged | {e['watermarked_posts']} | {e['watermarked_flagged']}"
        f" (+{e['flagged_watermarked_wrongly']} wrongly) | - |",
        "",
        f"Problems counted: {e['problems']}",
    ]
    if scale:
        base = scale[0]["wall_s"]
        lines += [
            "",
            "| engine | photos | wall s | photos/s | vs single | peak MB | read s | analyse s |"
            " cluster s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in scale:
            stages = row["stages_s"]
            lines.append(
                f"| {row['engine']} | {row['photos']} | {row['wall_s']} | {row['photos_per_s']} |"
                f" {base / row['wall_s']:.2f}x | {row['peak_memory_mb']} | {stages['read']} |"
                f" {stages['analyse']} | {stages['cluster']} |"
            )
    table = "\n".join(lines)
    report = {
        "evaluation": evaluation,
        "scale": scale,
        "cpu_count": os.cpu_count(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nJSON: {out}\ntable: {out.with_suffix('.md')}\nreport: {work / 'truth-report'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

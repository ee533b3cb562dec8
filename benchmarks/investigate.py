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
import subprocess
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
from PIL import ImageDraw

from counterfake import Store
from counterfake.investigate import BankSpec, investigate, write_report
from counterfake.protect import protect_bytes
from counterfake.settings import load_settings
from derivatives import _engine_src, half_of, jpeg, reload
from robustness import _crop, _fill, _font, _region, _text

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "5ed41f0"  # main before investigations round 2
WEEK = 7 * 86400
START = 1_780_272_000  # 2026-06-01 00:00 UTC
SKIPPED = "(File not included. Change data exporting settings to download.)"
FILLS = ("smooth_fill", "inpaint", "heavy_blur", "other_photo")
#: The bots that make the fakes, each stamping its free output its own way (the 2020 bot's
#: stamp was on every free output: that is the normal case).
BOTS = (
    ("@benign_render_bot", "diagonal"),
    ("@benign_studio_bot", "corner"),
    ("@benign_caption_bot", "caption"),
)
#: Share of a bot's output that is the free, stamped version.
STAMPED = 0.85


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


def _stamp(image: Image.Image, style: str, name: str) -> Image.Image:
    """A bot's stamp at a fixed place, sized to the image: diagonal text across it, a corner
    logo, or a caption bar."""
    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if style == "diagonal":  # centred, sized to the width, turned
        text, font = f"{name} free", _font(max(12, w // 11))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text(
            ((w - right + left) / 2, (h - bottom + top) / 2),
            text,
            fill=(255, 255, 255, 220),
            font=font,
            stroke_width=max(1, w // 300),
            stroke_fill=(0, 0, 0, 150),
        )
        layer = layer.rotate(28, center=(w / 2, h / 2))
    elif style == "corner":
        r = max(12, min(w, h) // 7)
        box = (w - 3 * r - 8, h - r - 8, w - 8, h - 8)
        draw.rounded_rectangle(box, radius=r // 4, fill=(25, 25, 35, 210))
        draw.ellipse((box[0] + 6, box[1] + 6, box[0] + r - 6, box[3] - 6), fill=(230, 60, 60, 230))
        draw.text(
            (box[0] + r, box[1] + r // 4),
            name[1:7].upper(),
            fill=(255, 255, 255, 230),
            font=_font(max(8, r // 2)),
        )
    else:
        top = int(h * 0.9)
        draw.rectangle((0, top, w, h), fill=(0, 0, 0, 170))
        draw.text(
            (w * 0.03, top + (h - top) // 5),
            f"{name} | free version | t.me/{name[1:]}",
            fill=(255, 255, 255, 235),
            font=_font(max(8, (h - top) // 2)),
        )
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _encode(image: Image.Image, rng: np.random.Generator, scale: float = 1.0) -> bytes:
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    return jpeg(image, int(rng.integers(60, 92)))


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
    weeks = 12
    # More new targets every week: growth.
    weights = np.array([1.25**w for w in range(weeks)])
    week_of_target = np.sort(rng.choice(weeks, size=targets, p=weights / weights.sum()))
    protected: list[int] = []
    for t, path in enumerate(originals):
        original = _load(path)
        when = START + int(week_of_target[t]) * WEEK + int(rng.integers(0, WEEK - 86400))
        requester = users[int(rng.integers(len(users)))]
        bot, style = BOTS[int(rng.integers(len(BOTS)))]
        if t % 3 == 0:
            protected.append(t)
        if rng.random() < 0.7:  # the original posted as a request, resized
            media = export.photo(group, _encode(original, rng, float(rng.uniform(0.5, 1.0))), when)
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
            stamped_by_bot = rng.random() < STAMPED
            if stamped_by_bot:
                derived = _stamp(derived, style, bot)
            clean = _encode(derived, rng, scale=float(rng.uniform(0.6, 1.0)))
            at = when + 600 * (d + 1)
            media = export.photo(group, clean, at)
            truth = {"target": t, "kind": "derivative", "bot": bot if stamped_by_bot else None}
            export.post(group, at, requester, media, truth, via_bot=bot)
            if rng.random() < 0.6:  # forwarded to the channel: the same file
                at2 = at + int(rng.integers(3600, 3 * 86400))
                media = export.photo(channel, clean, at2)
                export.post(channel, at2, gallery, media, truth, forwarded_from="Requests")
            if rng.random() < 0.5:  # the channel's watermarked version
                at3 = at + int(rng.integers(86400, 5 * 86400))
                stamped = _text(reload(clean), diagonal=True, alpha=110)
                media = export.photo(channel, _encode(stamped, rng), at3)
                export.post(channel, at3, gallery, media, {**truth, "watermarked": True})
            if rng.random() < 0.4:  # re-encoded repost, later; some mirrored
                at4 = at + int(rng.integers(3 * 86400, 20 * 86400))
                reposter = users[int(rng.integers(len(users)))]
                repost = reload(clean)
                mirrored = rng.random() < 0.3
                if mirrored:
                    repost = repost.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                media = export.photo(reposts, _encode(repost, rng, 0.8), at4)
                export.post(reposts, at4, reposter, media, {**truth, "mirror": mirrored})
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
            data = jpeg(_load(corpus[t]), 95)
            photo = protect_bytes(data, name=f"target-{t}")
            for result in store.add_entries("protected", photo.entries()):
                owner_of[result.entry_id] = t
    return owner_of


def outcome(result: Any) -> dict[str, Any]:
    """What the evaluation needs of an investigation, as JSON (any release's engine)."""
    posts = {}
    for post, flags in zip(result.posts, result.flags, strict=True):
        record = result.images[flags.image].record
        posts[post.key] = {
            "cluster": flags.cluster,
            "stamp": flags.stamp,
            "entries": sorted({m.entry_id for m in record.matches}),
        }
    overlays = getattr(result, "overlays", [])
    return {
        "posts": posts,
        "targets": sorted(result.clustering.targets),
        "overlays": [sorted(result.posts[n].key for n in o.posts) for o in overlays],
        "problems": dict(Counter(p.code for p in result.problems)),
        "timings": result.timings,
    }


def evaluate(
    found: dict[str, Any], truth: dict[str, Any], owner_of: dict[int, int]
) -> dict[str, Any]:
    messages = truth["messages"]
    posts = found["posts"]
    targets_found = set(found["targets"])
    cluster_of = {k: p["cluster"] for k, p in posts.items()}
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
        and home[messages[k]["target"]] in targets_found
    )
    unrelated_in_targets = sum(
        1
        for k, m in messages.items()
        if m["kind"] == "unrelated" and cluster_of.get(k) in targets_found
    )
    protected_found = 0
    for t in truth["protected"]:
        matched = {
            owner_of.get(e)
            for k, p in posts.items()
            if p["cluster"] == home.get(t)
            for e in p["entries"]
        }
        protected_found += t in matched
    targets_in_cluster: dict[int, set[int]] = {}
    for k, m in messages.items():
        if m["target"] is not None and k in cluster_of:
            targets_in_cluster.setdefault(cluster_of[k], set()).add(m["target"])
    mixed = [c for c, ts in targets_in_cluster.items() if len(ts) > 1]
    originals = [k for k, m in messages.items() if m["kind"] == "original"]
    mirrors = [k for k, m in messages.items() if m.get("mirror")]
    stamped = [k for k, m in messages.items() if m.get("watermarked")]
    flagged = {k for k, p in posts.items() if p["stamp"] == "watermarked"}
    overlays = []
    for bot, _ in BOTS:
        carried = {
            k for k, m in messages.items() if m.get("bot") == bot and m["kind"] != "original"
        }
        best = max(found["overlays"], key=lambda o: len(carried & set(o)), default=[])
        best = best if carried & set(best) else []
        overlays.append(
            {
                "bot": bot,
                "stamped_posts": len(carried),
                "found": len(carried & set(best)),
                "other_posts_in_it": len(set(best) - carried),
            }
        )
    return {
        "posts": len(posts),
        "truth_targets": len(targets_truth),
        "found_targets": len(targets_found),
        "target_count_error": (len(targets_found) - len(targets_truth)) / len(targets_truth),
        "derivative_posts": len(derivative_posts),
        "derivative_posts_in_target_cluster": in_home / len(derivative_posts),
        "clusters_holding_several_targets": len(mixed),
        "most_targets_in_one_cluster": max((len(targets_in_cluster[c]) for c in mixed), default=1),
        "originals": len(originals),
        "originals_with_their_derivatives": sum(
            1 for k in originals if cluster_of.get(k) == home.get(messages[k]["target"])
        ),
        "mirrors": len(mirrors),
        "mirrors_with_their_target": sum(
            1 for k in mirrors if cluster_of.get(k) == home.get(messages[k]["target"])
        ),
        "unrelated_posts_in_target_clusters": unrelated_in_targets,
        "protected_targets": len(truth["protected"]),
        "protected_targets_found": protected_found,
        "watermarked_posts": len(stamped),
        "watermarked_flagged": len(set(stamped) & flagged),
        "flagged_watermarked_wrongly": len(flagged - set(stamped)),
        "overlays_reported": len(found["overlays"]),
        "bot_overlays": overlays,
        "problems": found["problems"],
        "wall_s": found.get("wall_s"),
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
    Path(target).write_bytes(jpeg(image, int(rng.integers(50, 95))))


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


def _engine_only(archive: Path, url: str, out: Path, report: Path | None) -> None:
    """Investigate with whichever release is first on sys.path; its outcome as JSON."""
    started = time.perf_counter()
    result = investigate(archive, spec=_spec(url))
    if report is not None:
        write_report(result, report)
    found = outcome(result)
    found["wall_s"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(found))


def _run_engine(ref: str | None, archive: Path, url: str, work: Path) -> dict[str, Any]:
    """The outcome of `ref`'s engine (None: this tree) on the archive, in a process of its own."""
    name = ref or "this-tree"
    out = work / f"outcome-{name}.json"
    with _engine_src(ref) as src:
        command = [sys.executable, __file__, "--engine-only", str(archive), url, str(out)]
        if ref is None:
            command.append(str(work / "truth-report"))
        subprocess.run(command, env={**os.environ, "PYTHONPATH": src}, check=True)
    return json.loads(out.read_text())


def _evaluation_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    names = list(rows)
    first = rows[names[0]]
    lines = [
        f"Evaluation archive: {first['posts']} image posts, {first['truth_targets']} targets,"
        f" {first['derivative_posts']} derivative posts, {first['protected_targets']} protected"
        " targets, bots stamping "
        + ", ".join(f"{o['bot']} ({o['stamped_posts']} posts)" for o in first["bot_overlays"])
        + ".",
        "",
        "| measure | truth | " + " | ".join(names) + " | target |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]

    def row(label: str, truth: Any, cell: Any, target: str) -> None:
        lines.append(
            f"| {label} | {truth} | " + " | ".join(cell(rows[n]) for n in names) + f" | {target} |"
        )

    row(
        "distinct targets",
        first["truth_targets"],
        lambda e: f"{e['found_targets']} ({e['target_count_error']:+.1%})",
        "within +-5%",
    )
    row(
        "clusters holding several targets",
        0,
        lambda e: (
            f"{e['clusters_holding_several_targets']} (most {e['most_targets_in_one_cluster']})"
        ),
        "0",
    )
    row(
        "derivative posts in their target's cluster",
        first["derivative_posts"],
        lambda e: f"{e['derivative_posts_in_target_cluster']:.1%}",
        ">= 95%",
    )
    row(
        "originals with their derivatives",
        first["originals"],
        lambda e: str(e["originals_with_their_derivatives"]),
        "all",
    )
    row(
        "mirrored reposts with their target",
        first["mirrors"],
        lambda e: str(e["mirrors_with_their_target"]),
        "all",
    )
    row(
        "unrelated posts in target clusters",
        0,
        lambda e: str(e["unrelated_posts_in_target_clusters"]),
        "0",
    )
    row(
        "protected targets found",
        first["protected_targets"],
        lambda e: str(e["protected_targets_found"]),
        "all",
    )
    row(
        "watermarked posts flagged",
        first["watermarked_posts"],
        lambda e: f"{e['watermarked_flagged']} (+{e['flagged_watermarked_wrongly']} wrongly)",
        "-",
    )
    for n, o in enumerate(first["bot_overlays"]):
        row(
            f"{o['bot']}'s stamp: posts in its overlay",
            o["stamped_posts"],
            lambda e, n=n: (
                f"{e['bot_overlays'][n]['found']}"
                f" (+{e['bot_overlays'][n]['other_posts_in_it']} others)"
            ),
            "all",
        )
    row("wall s", "", lambda e: str(e["wall_s"]), "")
    return lines


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--engine-only":
        archive, url, out, *report = sys.argv[2:]
        _engine_only(Path(archive), url, Path(out), Path(report[0]) if report else None)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/photos"))
    parser.add_argument(
        "--half",
        choices=("tune", "report"),
        default="report",
        help="the corpus half the archive is made of (the split is fixed)",
    )
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--unrelated", type=int, default=90)
    parser.add_argument("--baseline", default=BASELINE, help="git ref; 'none' to skip")
    parser.add_argument("--scale", type=int, default=100_000, help="photos; 0 skips the scale run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    everything = sorted(args.corpus.glob("*.jpg"))
    corpus = [p for p in everything if half_of(p.name) == args.half]
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
    engines: dict[str, str | None] = {"this tree": None}
    if args.baseline != "none":
        engines = {f"previous ({args.baseline})": args.baseline, **engines}
    evaluation = {
        name: evaluate(_run_engine(ref, archive.parent, url, work), truth, owner_of)
        for name, ref in engines.items()
    }

    scale: list[dict[str, Any]] = []
    if args.scale:
        started = time.perf_counter()
        big = build_scale_archive(corpus, work / "scale-archive", args.scale)
        generated = time.perf_counter() - started
        print(f"scale archive: {args.scale} photos in {generated:.0f} s", flush=True)
        scale = [_timed(big.parent, dask=False), _timed(big.parent, dask=True)]
        shutil.rmtree(big.parent)

    lines = _evaluation_table(evaluation)
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

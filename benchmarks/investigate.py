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
   targets are protected in a bank (`protect`, by the photo's owner, from the original file;
   each release makes its own bank with its own code, since a store is only readable by the
   release that made it or a newer one).
   Then `investigate` with the bank, and the result against the truth: distinct targets,
   derivative posts in their target's cluster, unrelated posts in target clusters, protected
   targets found.
2. Scale. An archive of `--scale` photos (corpus photos as tiles, crops, flips, re-encodes and
   resizes: each file distinct), investigated single-process and on a Dask LocalCluster with 2
   worker processes (the baseline is the single process, same archive, same run), and the
   `--scale` archive on 2 workers by this tree and by `--baseline`: wall time, photos/s, peak
   memory, and the time per stage.

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
from derivatives import engine_src, half_of, jpeg, reload
from robustness import _crop, _fill, _font, _region, _text

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "ba114fb"  # main before the shortlist was written a table at a time
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
#: The channel that reposts everything, with its own caption bar on some.
CHANNEL = "@benign_gallery"


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
    # Each bot makes a third of the fakes, so that every stamp style has enough carriers to
    # be measured (drawn freely, one bot once got 5 of 40 targets).
    bot_of_target = rng.permutation(np.arange(targets) % len(BOTS))
    protected: list[int] = []
    for t, path in enumerate(originals):
        original = _load(path)
        when = START + int(week_of_target[t]) * WEEK + int(rng.integers(0, WEEK - 86400))
        requester = users[int(rng.integers(len(users)))]
        bot, style = BOTS[int(bot_of_target[t])]
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


def _protect_bank(url: str, corpus: list[str], protected: list[int]) -> dict[int, int]:
    """The owners protect their originals, with whichever release is first on sys.path (a
    store is only readable by the release that made it, or a newer one); returns derivative
    and pdq entry id -> target."""
    owner_of: dict[int, int] = {}
    with Store.open(url) as store:
        store.create_bank("protected")
        for t in protected:
            data = jpeg(_load(Path(corpus[t])), 95)
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
        "overlays_unseen": [
            sorted(result.posts[n].key for n in getattr(o, "unseen_posts", ())) for o in overlays
        ],
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
        seen = found["overlays"]
        unseen = found.get("overlays_unseen")  # None: a release that takes none
        best = max(range(len(seen)), key=lambda n: len(carried & set(seen[n])), default=None)
        if best is None or not carried & set(seen[best]):
            on, taken = set(), set()
        else:
            on, taken = set(seen[best]), set(unseen[best] if unseen else ())
        overlays.append(
            {
                "bot": bot,
                "stamped_posts": len(carried),
                "found": len(carried & on),
                "other_posts_in_it": len(on - carried),
                "taken": len(carried & taken) if unseen is not None else None,
                "other_posts_taken": len(taken - carried),
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


def _synthetic(seed: int, stamp: bool) -> Image.Image:
    """An unrelated, photo-sized picture no other image shares (benign: colour fields, shapes,
    grain), with the channel's caption bar when `stamp`."""
    rng = np.random.default_rng(seed)
    width, height = (int(v) for v in rng.choice([(800, 600), (600, 800), (720, 720), (960, 540)]))
    field = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(12, 30))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = float(rng.uniform(-0.1, 1.0)) * width, float(rng.uniform(-0.1, 1.0)) * height
        w, h = float(rng.uniform(0.03, 0.4)) * width, float(rng.uniform(0.03, 0.4)) * height
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        elif kind == 1:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            corners = rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * (w, h) + (x, y)
            draw.polygon([(float(a), float(b)) for a, b in corners], fill=colour)
    grain = rng.normal(0, 6, (height, width, 1))
    image = Image.fromarray(np.clip(np.asarray(image, np.float32) + grain, 0, 255).astype(np.uint8))
    return _stamp(image, "caption", CHANNEL) if stamp else image


def _scale_file(job: dict[str, Any]) -> None:
    """Writes one scale-archive image (to each of its paths: a forward is the same file)."""
    rng = np.random.default_rng(job["seed"])
    if job["kind"] == "unrelated":
        image = _synthetic(job["source_seed"], job["stamp"])
        data = _encode(image, rng, 0.8 if job["repost"] else 1.0)
    else:
        original = _load(Path(job["photo"]))
        if job["kind"] == "original":
            data = _encode(original, rng, float(rng.uniform(0.5, 1.0)))
        else:
            made = np.random.default_rng(job["derivative_seed"])  # the same for every variant
            derived = _derive(original, _synthetic(job["filler_seed"], False), made)
            if job["bot_style"]:
                derived = _stamp(derived, job["bot_style"], job["bot"])
            data = _encode(derived, made, float(made.uniform(0.6, 1.0)))
            if job["variant"] in ("repost", "mirror"):
                again = reload(data)
                if job["variant"] == "mirror":
                    again = again.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                data = _encode(again, rng, 0.8)
    for path in job["paths"]:
        Path(path).write_bytes(data)


def build_scale_archive(corpus: list[Path], root: Path, photos: int) -> tuple[Path, dict[str, Any]]:
    """A channel of about `photos` image posts that looks like one: every corpus photo a
    target (its request post, one to three bot outputs stamped by the bot that made them,
    forwards, reposts, some mirrored), the rest unrelated pictures of their own, a quarter of
    them with the channel's caption bar, some reposted. Returns the export and its truth."""
    rng = np.random.default_rng(11)
    (root / "photos").mkdir(parents=True)
    jobs: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    truth: dict[str, dict[str, Any]] = {}
    span = 12 * WEEK

    def post(when: int, truth_of: dict[str, Any], **extra: Any) -> str:
        number = len(messages) + 1
        stamp = time.strftime("%d-%m-%Y_%H-%M-%S", time.gmtime(when))
        relative = f"photos/photo_{number}@{stamp}.jpg"
        messages.append({"id": number, "type": "message", "date_unixtime": str(when),
                         "photo": relative, "text": "", **extra})  # fmt: skip
        truth[str(number)] = truth_of
        return str(root / relative)

    users = [{"from": f"user {n}", "from_id": f"user{5000 + n}"} for n in range(200)]
    gallery = {"from": "Gallery", "from_id": "channel1"}
    # What the bots paste in is their own, a picture no other image shares: two fakes that
    # share pasted content are linked by it (as they should be), and are not this test.
    targets = corpus
    for t, photo in enumerate(targets):
        when = START + int(rng.integers(0, span))
        user = users[int(rng.integers(len(users)))]
        bot, style = BOTS[int(rng.integers(len(BOTS)))]
        if rng.random() < 0.7:
            path = post(when, {"target": t, "kind": "original"}, **user)
            jobs.append({"kind": "original", "photo": str(photo), "seed": 7 * t, "paths": [path]})
        for d in range(int(rng.integers(1, 4))):
            stamped = rng.random() < STAMPED
            base = {"kind": "derivative", "photo": str(photo),
                    "filler_seed": 20_000_000 + 1000 * t + d,
                    "derivative_seed": 1000 * t + d, "bot": bot,
                    "bot_style": style if stamped else None}  # fmt: skip
            at = when + 600 * (d + 1)
            about = {"target": t, "kind": "derivative", "bot": bot if stamped else None}
            paths = [post(at, about, via_bot=bot, **user)]
            if rng.random() < 0.6:
                paths.append(post(at + 3600, about, forwarded_from="Requests", **gallery))
            jobs.append({**base, "variant": "as made", "seed": 0, "paths": paths})
            if rng.random() < 0.4:
                variant = "mirror" if rng.random() < 0.3 else "repost"
                later = at + int(rng.integers(3, 20)) * 86400
                path = post(later, {**about, "mirror": variant == "mirror"}, **users[d])
                jobs.append({**base, "variant": variant, "seed": 1000 * t + d + 1, "paths": [path]})
    n = 0
    while len(messages) < photos:
        when = START + int(rng.integers(0, span))
        stamp = rng.random() < 0.25
        job = {"kind": "unrelated", "source_seed": 10_000_000 + n, "stamp": stamp,
               "repost": False, "seed": n}  # fmt: skip
        about = {"target": None, "kind": "unrelated", "channel_stamp": stamp}
        jobs.append({**job, "paths": [post(when, about, **gallery)]})
        if rng.random() < 0.1 and len(messages) < photos:
            later = when + int(rng.integers(1, 10)) * 86400
            reposted = {**job, "repost": True, "seed": n + 1}
            jobs.append({**reposted, "paths": [post(later, about, **users[n % len(users)])]})
        n += 1
    with multiprocessing.get_context("spawn").Pool() as pool:
        pool.map(_scale_file, jobs, chunksize=32)
    messages.sort(key=lambda m: int(m["date_unixtime"]))
    ordered = {}
    for number, message in enumerate(messages, start=1):
        ordered[f"1/{number}"] = truth[str(message["id"])]
        message["id"] = number
    path = root / "result.json"
    with path.open("w") as fh:
        json.dump({"name": "Gallery", "type": "public_channel", "id": 1, "messages": messages}, fh)
    return path, {"messages": ordered, "protected": [], "targets": len(targets)}


class _PeakMemory:
    """Peak memory of this process and its children (Dask workers), sampled: the sum of their
    resident sets, and the sum of their proportional sets (a page that processes share, such
    as the signature table's, counted once)."""

    def __init__(self) -> None:
        self.peak = 0
        self.peak_proportional = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.5):
            resident = proportional = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    info = process.memory_full_info()
                    resident += info.rss
                    proportional += getattr(info, "pss", info.rss)
            self.peak = max(self.peak, resident)
            self.peak_proportional = max(self.peak_proportional, proportional)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _engine_only(config: dict[str, Any]) -> None:
    """Investigate with whichever release is first on sys.path; its outcome as JSON."""
    kwargs: dict[str, Any] = {}
    owner_of: dict[int, int] = {}
    if config["url"]:
        owner_of = _protect_bank(config["url"], config["corpus"], config["protected"])
        kwargs["spec"] = _spec(config["url"])
    if config["workers"]:
        kwargs.update(dask=True, workers=config["workers"])
    started = time.perf_counter()
    result = investigate(Path(config["archive"]), **kwargs)
    wall = time.perf_counter() - started
    if config["report"]:
        write_report(result, Path(config["report"]))
    found = outcome(result)
    found["wall_s"] = round(wall, 1)
    found["images"] = len(result.images)
    found["owner_of"] = owner_of
    Path(config["out"]).write_text(json.dumps(found))


def _run_engine(
    ref: str | None,
    archive: Path,
    out: Path,
    *,
    url: str | None = None,
    protect: tuple[list[Path], list[int]] = ([], []),
    workers: int = 0,
    report: Path | None = None,
) -> dict[str, Any]:
    """The outcome of `ref`'s engine (None: this tree) on the archive, in a process of its
    own (with `workers`, on a Dask LocalCluster of that many), and the peak resident memory
    of that process and its workers. With `url`, that process first makes the bank there,
    protecting `protect`'s targets (corpus, indices) with its own release's code."""
    config = {"archive": str(archive), "url": url, "out": str(out), "workers": workers,
              "report": str(report) if report else None,
              "corpus": [str(p) for p in protect[0]], "protected": protect[1]}  # fmt: skip
    with engine_src(ref) as src, _PeakMemory() as memory:
        command = [sys.executable, __file__, "--engine-only", json.dumps(config)]
        subprocess.run(command, env={**os.environ, "PYTHONPATH": src}, check=True)
    found: dict[str, Any] = json.loads(out.read_text())
    found["peak_memory_mb"] = round(memory.peak / 2**20)
    found["peak_proportional_mb"] = round(memory.peak_proportional / 2**20)
    return found


def _scale_rows(
    archive: Path, truth: dict[str, Any], engines: list[tuple[str, str | None, int]], work: Path
) -> list[dict[str, Any]]:
    rows = []
    (work / f"{archive.parent.name}-truth.json").write_text(json.dumps(truth))
    for name, ref, workers in engines:
        print(f"  {archive.parent.name}: {name}", flush=True)
        out = work / f"{archive.parent.name}-{name}.json"
        found = _run_engine(ref, archive.parent, out, workers=workers)
        e = evaluate(found, truth, {})
        messages = truth["messages"]
        makeup = [
            dict(Counter(
                f"{m['bot']}'s stamp" if m.get("bot") else
                "channel caption" if m.get("channel_stamp") else f"{m['kind']}, no stamp"
                for m in (messages[k] for k in posts)
            ))
            for posts in found["overlays"]
        ]  # fmt: skip
        rows.append(
            {
                "engine": name,
                "photos": found["images"],
                "wall_s": found["wall_s"],
                "photos_per_s": round(found["images"] / found["wall_s"], 1),
                "peak_memory_mb": found["peak_memory_mb"],
                "peak_proportional_mb": found["peak_proportional_mb"],
                "stages_s": {k: round(v, 1) for k, v in found["timings"].items()},
                "targets": f"{e['found_targets']} of {e['truth_targets']}",
                "clusters_holding_several_targets": e["clusters_holding_several_targets"],
                "derivative_posts_in_target_cluster": e["derivative_posts_in_target_cluster"],
                "unrelated_posts_in_target_clusters": e["unrelated_posts_in_target_clusters"],
                "overlays": e["overlays_reported"],
                "most_targets_in_one_cluster": e["most_targets_in_one_cluster"],
                "stamps": " / ".join(
                    f"{o['found']} of {o['stamped_posts']}" for o in e["bot_overlays"]
                ),
                "overlay_makeup": makeup,
            }
        )
    return rows


def _scale_table(title: str, rows: list[dict[str, Any]]) -> list[str]:
    base = rows[0]["wall_s"]
    lines = [
        "",
        title,
        "",
        "| engine | photos | wall s | photos/s | vs first | peak RSS MB | peak PSS MB | read s |"
        " analyse s | cluster s | targets | mixed clusters | derivative posts home |"
        " most targets in one | unrelated in targets | overlays | stamps seen (diagonal / corner /"
        " caption) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        st = row["stages_s"]
        lines.append(
            f"| {row['engine']} | {row['photos']} | {row['wall_s']} | {row['photos_per_s']} |"
            f" {base / row['wall_s']:.2f}x | {row['peak_memory_mb']} |"
            f" {row['peak_proportional_mb']} | {st.get('read')} |"
            f" {st.get('analyse')} | {st.get('cluster')} | {row['targets']} |"
            f" {row['clusters_holding_several_targets']} |"
            f" {row['derivative_posts_in_target_cluster']:.1%} |"
            f" {row['most_targets_in_one_cluster']} |"
            f" {row['unrelated_posts_in_target_clusters']} | {row['overlays']} | {row['stamps']} |"
        )
    return lines


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
                + (
                    f"; taken as its bot's: {e['bot_overlays'][n]['taken']}"
                    f" (+{e['bot_overlays'][n]['other_posts_taken']} unstamped)"
                    if e["bot_overlays"][n]["taken"] is not None
                    else ""
                )
            ),
            "all",
        )
    row("wall s", "", lambda e: str(e["wall_s"]), "")
    return lines


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--engine-only":
        _engine_only(json.loads(sys.argv[2]))
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
    parser.add_argument("--scale", type=int, default=100_000, help="posts; 0 skips the scale run")
    parser.add_argument(
        "--sweep", type=int, default=10_000, help="posts for the workers sweep; 0 skips it"
    )
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
    engines: dict[str, str | None] = {"this tree": None}
    if args.baseline != "none":
        engines = {f"previous ({args.baseline})": args.baseline, **engines}
    evaluation = {}
    for name, ref in engines.items():
        label = ref or "this-tree"
        found = _run_engine(
            ref,
            archive.parent,
            work / f"outcome-{label}.json",
            url=f"sqlite:///{work / f'bank-{label}.db'}",
            protect=(corpus, truth["protected"]),
            report=None if ref else work / "truth-report",
        )
        owner_of = {int(entry): t for entry, t in found.pop("owner_of").items()}
        evaluation[name] = evaluate(found, truth, owner_of)

    lines = _evaluation_table(evaluation)
    sweep: list[dict[str, Any]] = []
    if args.sweep:
        small, small_truth = build_scale_archive(everything, work / "sweep-archive", args.sweep)
        engines_small: list[tuple[str, str | None, int]] = [("single process", None, 0)]
        if args.baseline != "none":
            engines_small.insert(0, (f"previous ({args.baseline})", args.baseline, 0))
        engines_small += [(f"dask, {w} workers", None, w) for w in (1, 2, 4)]
        sweep = _scale_rows(small, small_truth, engines_small, work)
        shutil.rmtree(small.parent)
        lines += _scale_table(f"Workers sweep: {args.sweep} posts.", sweep)
    scale: list[dict[str, Any]] = []
    if args.scale:
        big, big_truth = build_scale_archive(everything, work / "scale-archive", args.scale)
        engines_big: list[tuple[str, str | None, int]] = [("dask, 2 workers", None, 2)]
        if args.baseline != "none":  # the same archive, the same run
            engines_big.insert(
                0, (f"previous ({args.baseline}), dask, 2 workers", args.baseline, 2)
            )
        scale = _scale_rows(big, big_truth, engines_big, work)
        shutil.rmtree(big.parent)
        lines += _scale_table(f"Scale: {args.scale} posts.", scale)
    table = "\n".join(lines)
    report = {
        "evaluation": evaluation,
        "sweep": sweep,
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

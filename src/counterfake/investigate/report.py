"""An investigation's outputs: `messages.csv`, `clusters.json`, plots and one self-contained
`report.html`. Thumbnails are blurred until clicked, and `images=False` embeds none (nor any
overlay): a report can then be shared without carrying a single picture of anyone."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

from ..derivatives import overlay
from ..errors import CounterfakeError
from ..media import Limits, decode_rgb
from .investigation import Investigation

__all__ = ["write_report"]

_THUMB: Final = 160
_OVERLAY: Final = 360
_TOP: Final = 10
_TABLE_CLUSTERS: Final = 200
_WEEK: Final = 7 * 86400
_FIRST_MONDAY: Final = 4 * 86400  # 1970-01-05, the first Monday after the Unix epoch
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")
_USERNAME: Final = re.compile(r"@\w+")


def _iso(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: Any) -> Any:
    """Archive text can start a spreadsheet formula: such cells are quoted (a bare
    @username cannot be one and stays as it is)."""
    if isinstance(value, str) and value.startswith(_FORMULA) and not _USERNAME.fullmatch(value):
        return "'" + value
    return value


def _relative(path: Path, archive: Path) -> str:
    root = archive if archive.is_dir() else archive.parent
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return path.name


def _protected(inv: Investigation, image: int) -> list[dict[str, Any]]:
    return [m.to_dict() for m in inv.images[image].record.matches]


def _messages_csv(inv: Investigation, path: Path) -> None:
    columns = [
        "chat", "chat_id", "message_id", "date", "sender", "sender_id", "via_bot",
        "forwarded_from", "file", "sha256", "pdq", "cluster", "version", "role", "target",
        "repost", "stamp", "bank_matches", "error",
    ]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for post, flags in zip(inv.posts, inv.flags, strict=True):
            image = inv.images[flags.image]
            matches = ";".join(f"{m.bank}:{m.entry_id}:{m.signal}" for m in image.record.matches)
            row = [
                post.chat, post.chat_id, post.message_id, _iso(post.timestamp), post.sender or "",
                post.sender_id or "", post.via_bot or "", post.forwarded_from or "",
                _relative(post.path, inv.archive), image.sha256, image.record.pdq or "",
                flags.cluster, flags.version, flags.role, int(flags.target), int(flags.repost),
                flags.stamp, matches, image.record.error or "",
            ]  # fmt: skip
            writer.writerow([_cell(v) for v in row])


def _clusters(inv: Investigation) -> list[dict[str, Any]]:
    clustering = inv.clustering
    members: dict[int, list[int]] = defaultdict(list)
    for n, flags in enumerate(inv.flags):
        if flags.cluster >= 0:
            members[flags.cluster].append(n)
    links: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for link in clustering.links:
        links[clustering.cluster[link.source]].append(
            {
                "source_sha256": inv.images[link.source].sha256,
                "other_sha256": inv.images[link.other].sha256,
                "inliers": link.inliers,
                "changed_fraction": round(link.changed_fraction, 3),
            }
        )
    out = []
    for cluster, posts in sorted(members.items()):
        images = sorted({inv.flags[n].image for n in posts})
        matches = [
            {"sha256": inv.images[i].sha256, **m, **_evidence(inv, i, m["entry_id"])}
            for i in images
            for m in _protected(inv, i)
        ]
        times = [inv.posts[n].timestamp for n in posts]
        out.append(
            {
                "cluster": cluster,
                "target": cluster in clustering.targets,
                "joined_by_bank_match": cluster in clustering.joined_by_bank,
                "posts": len(posts),
                "images": len(images),
                "versions": len({clustering.version[i] for i in images}),
                "derivative_posts": sum(1 for n in posts if inv.flags[n].role == "derivative"),
                "original_posts": sum(1 for n in posts if inv.flags[n].role == "original"),
                "bot_posts": sum(1 for n in posts if inv.flags[n].bot),
                "first_seen": _iso(min(times)),
                "last_seen": _iso(max(times)),
                "chats": sorted({inv.posts[n].chat for n in posts}),
                "messages": [inv.posts[n].key for n in posts],
                "bank_matches": matches,
                "links": links.get(cluster, []),
            }
        )
    return out


def _overlays(inv: Investigation) -> list[dict[str, Any]]:
    return [
        {
            "overlay": number,
            "posts": len(o.posts),
            "images": len(o.images),
            "box": [round(v, 3) for v in o.box],
            "bots": o.bots,
            "senders": o.senders,
            "first_seen": _iso(inv.posts[o.posts[0]].timestamp),
            "last_seen": _iso(inv.posts[o.posts[-1]].timestamp),
            "messages": [inv.posts[n].key for n in o.posts],
            "unseen_bot_messages": [inv.posts[n].key for n in o.unseen_posts],
        }
        for number, o in enumerate(inv.overlays, start=1)
    ]


def _overlay_picture(inv: Investigation, overlay: int) -> bytes:
    """The overlay's picture (the carriers' blurred median: no carrier is shown), as PNG."""
    picture = Image.fromarray(inv.overlays[overlay].picture)
    buffer = io.BytesIO()
    picture.resize((picture.width * 3, picture.height * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _evidence(inv: Investigation, image: int, entry_id: int) -> dict[str, Any]:
    for m in inv.images[image].record.matches:
        if m.entry_id == entry_id and m.evidence is not None:
            return {"evidence": m.evidence.to_dict()}
    return {}


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _monday(timestamp: int) -> int:
    """The Monday 00:00 UTC that starts the (ISO) week of `timestamp`; 1970-01-05 was one."""
    return (timestamp - _FIRST_MONDAY) // _WEEK * _WEEK + _FIRST_MONDAY


def _counts(axis: Any, which: str = "y") -> None:
    """Counts are whole numbers: no 0.5 posts on an axis."""
    from matplotlib.ticker import MaxNLocator

    getattr(axis, f"{which}axis").set_major_locator(MaxNLocator(integer=True))


def _plots(inv: Investigation) -> dict[str, bytes]:
    """Growth per week, top posters and bots, cluster sizes."""
    week_of = [_monday(p.timestamp) for p in inv.posts]
    derivative_weeks: Counter[int] = Counter()
    new_targets: Counter[int] = Counter()
    seen: set[int] = set()
    for n in sorted(range(len(inv.posts)), key=lambda n: inv.posts[n].timestamp):
        flags = inv.flags[n]
        if flags.role == "derivative":
            derivative_weeks[week_of[n]] += 1
        if flags.target and flags.cluster not in seen:
            seen.add(flags.cluster)
            new_targets[week_of[n]] += 1
    plots: dict[str, bytes] = {}
    weeks = sorted(set(week_of)) if week_of else []
    if weeks:
        span = list(range(weeks[0], weeks[-1] + _WEEK, _WEEK))
        labels = [dt.datetime.fromtimestamp(w, dt.UTC).strftime("%Y-%m-%d") for w in span]
        figure, axis = plt.subplots(figsize=(8, 3.5))
        axis.bar(
            labels, [derivative_weeks[w] for w in span], color="#c0392b", label="derivative posts"
        )
        cumulative, total = [], 0
        for w in span:
            total += new_targets[w]
            cumulative.append(total)
        twin = axis.twinx()
        twin.plot(labels, [new_targets[w] for w in span], color="#e67e22", marker="s",
                  linestyle="--", label="new distinct targets")  # fmt: skip
        twin.plot(labels, cumulative, color="#2c3e50", marker="o", label="distinct targets so far")
        axis.set_ylabel("derivative posts per week")
        twin.set_ylabel("distinct targets")
        axis.set_xlabel("week starting Monday (UTC)")
        _counts(axis)
        _counts(twin)
        axis.tick_params(axis="x", rotation=60, labelsize=7)
        handles = axis.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        axis.legend(handles=handles, loc="upper left", fontsize=8)
        axis.set_title("Growth: derivative posts and distinct targets per week")
        plots["growth"] = _png(figure)

    posters: Counter[str] = Counter()
    bots: Counter[str] = Counter()
    for post, flags in zip(inv.posts, inv.flags, strict=True):
        if flags.role == "derivative":
            posters[post.sender or post.sender_id or "unknown"] += 1
            if post.via_bot:
                bots[post.via_bot] += 1
    if posters or bots:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for axis, counts, title in (
            (axes[0], posters, "Top posters of derivatives"),
            (axes[1], bots, "Bots (via_bot) by derivative posts"),
        ):
            top = counts.most_common(_TOP)[::-1]
            axis.barh([name[:30] for name, _ in top], [c for _, c in top], color="#7f8c8d")
            axis.set_title(title)
            axis.set_xlabel("derivative posts")
            _counts(axis, "x")
        plots["posters"] = _png(figure)

    sizes = Counter(f.cluster for f in inv.flags if f.cluster >= 0)
    if sizes:
        figure, axis = plt.subplots(figsize=(8, 3.5))
        target = [s for c, s in sizes.items() if c in inv.clustering.targets]
        other = [s for c, s in sizes.items() if c not in inv.clustering.targets]
        largest = max(sizes.values())
        bins = list(range(1, largest + 2)) if largest <= 40 else 40
        # A log scale only where counts span orders of magnitude: a small archive's few
        # clusters read better as plain bars.
        many = Counter(sizes.values()).most_common(1)[0][1] > 50
        axis.hist(
            [other, target],
            bins=bins,
            label=["other clusters", "target clusters"],
            color=["#95a5a6", "#c0392b"],
            log=many,
            align="left" if largest <= 40 else "mid",
        )
        axis.set_xlabel("posts per cluster")
        axis.set_ylabel("clusters (log scale)" if many else "clusters")
        _counts(axis, "x")
        if not many:
            _counts(axis)
        axis.legend()
        axis.set_title("Cluster sizes")
        plots["cluster_sizes"] = _png(figure)
    return plots


def _data_uri(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _thumbnail(image: Image.Image, side: int) -> str:
    small = image.copy()
    small.thumbnail((side, side))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return _data_uri(buffer.getvalue(), "jpeg")


def _picture(inv: Investigation, image: int, limits: Limits) -> Image.Image | None:
    try:
        return decode_rgb(inv.images[image].path.read_bytes(), limits=limits)
    except (OSError, CounterfakeError):
        return None


_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.num{text-align:right}
img.thumb{filter:blur(14px);cursor:pointer;max-width:160px;max-height:160px;margin:2px}
img.thumb.revealed{filter:none}.plot{max-width:100%}.note{color:#666}
.summary td:first-child{font-weight:600}
"""
_SCRIPT: Final = (
    "document.addEventListener('click',e=>{if(e.target.classList.contains('thumb'))"
    "e.target.classList.toggle('revealed')});"
)


def _html(
    inv: Investigation,
    clusters: list[dict[str, Any]],
    plots: dict[str, bytes],
    images: bool,
    limits: Limits,
) -> str:
    e = html.escape
    summary = inv.summary()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>Counterfake investigation</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Investigation of {e(inv.archive.name)}</h1>",
        f"<p class='note'>Archive format: {e(inv.format)}. Banks: "
        f"{e(', '.join(inv.banks) or 'none')}. Generated {_iso(int(time.time()))}. "
        "Thumbnails are blurred: click one to reveal it."
        + ("" if images else " This report embeds no images.")
        + "</p>",
        "<h2>Summary</h2><table class='summary'>",
    ]
    glossary = [
        "<h2>Terms</h2><dl class='terms'>",
        "<dt>target</dt><dd>a person whose photo was manipulated: a cluster that holds a"
        " derivative (a link in it changed a quarter or more of the photo, an image in it"
        " matched a protected photo as a derivative, or a bot posted in it).</dd>",
        "<dt>derivative post</dt><dd>a post of a manipulated version of a photo: part of the"
        " photo replaced, stamped or re-rendered; a match to a protected photo as a"
        " derivative makes a post one whenever it was posted.</dd>",
        "<dt>original</dt><dd>in a target, the version that matches a protected photo as a"
        " copy, or else the earliest one that no bot posted: usually the request post.</dd>",
        "<dt>version</dt><dd>images within PDQ distance 31 of each other: the same picture"
        " re-encoded, resized or lightly cropped.</dd>",
        "<dt>role <code>copy</code></dt><dd>a post in a cluster that is not a target's: an"
        " unrelated photo, or reposts of one.</dd>",
        "<dt>repost</dt><dd>a post of a version already seen earlier in the archive.</dd>",
        "<dt>cluster</dt><dd>posts of one source photo: its versions, derivatives and"
        " reposts, linked by local features.</dd></dl>",
    ]
    parts += [
        f"<tr><td>{e(k.replace('_', ' '))}</td><td class='num'>{v}</td></tr>"
        for k, v in summary.items()
    ]
    parts.append("</table>")
    parts += glossary
    titles = {"growth": "Growth", "posters": "Posters and bots", "cluster_sizes": "Clusters"}
    for name, data in plots.items():
        parts.append(
            f"<h2>{titles[name]}</h2><img class='plot' alt='{name}' src='{_data_uri(data, 'png')}'>"
        )

    targets = [c for c in clusters if c["target"]]
    targets.sort(key=lambda c: -c["posts"])
    parts.append(f"<h2>Target clusters ({len(targets)})</h2>")
    if len(targets) > _TABLE_CLUSTERS:
        parts.append(f"<p class='note'>The {_TABLE_CLUSTERS} largest; clusters.json has all.</p>")
    parts.append(
        "<table><tr><th>cluster</th><th>posts</th><th>derivatives</th><th>versions</th>"
        "<th>bot posts</th><th>first seen</th><th>chats</th><th>protected</th>"
        "<th>joined by</th>" + ("<th>images</th>" if images else "") + "</tr>"
    )
    image_of = {inv.images[f.image].sha256: f.image for f in inv.flags}
    versions_of: dict[int, dict[int, int]] = defaultdict(dict)
    for f in inv.flags:
        versions_of[f.cluster].setdefault(f.version, f.image)
    for c in targets[:_TABLE_CLUSTERS]:
        protected = ", ".join(sorted({f"{m['bank']}:{m['entry_id']}" for m in c["bank_matches"]}))
        row = (
            f"<tr><td class='num'>{c['cluster']}</td><td class='num'>{c['posts']}</td>"
            f"<td class='num'>{c['derivative_posts']}</td><td class='num'>{c['versions']}</td>"
            f"<td class='num'>{c['bot_posts']}</td><td>{c['first_seen']}</td>"
            f"<td>{e(', '.join(c['chats'])[:120])}</td><td>{e(protected)}</td>"
            f"<td>{'a bank match' if c['joined_by_bank_match'] else 'links'}</td>"
        )
        if images:
            thumbs = []
            for image in list(versions_of[c["cluster"]].values())[:6]:
                picture = _picture(inv, image, limits)
                if picture is not None:
                    thumbs.append(
                        f"<img class='thumb' alt='cluster {c['cluster']}' "
                        f"src='{_thumbnail(picture, _THUMB)}'>"
                    )
            row += f"<td>{''.join(thumbs)}</td>"
        parts.append(row + "</tr>")
    parts.append("</table>")

    parts.append(f"<h2>Overlays: stamps on many unrelated images ({len(inv.overlays)})</h2>")
    parts.append(
        "<p class='note'>A stamp (a bot's watermark, a logo, a caption bar) found at the same"
        " place on many photos that are otherwise different. Links between images leave it"
        " out. The picture is the carriers' blurred median: the stamp, not a photo. When one"
        " bot posted most of an overlay's posts, its other posts are taken to carry the stamp"
        " too (on a photo of another shape it can go unseen) and are left out of links the"
        " same way.</p>"
    )
    if inv.overlays:
        parts.append(
            "<table><tr><th>overlay</th><th>posts</th><th>images</th><th>posted by bots</th>"
            "<th>its bot's posts, stamp not seen</th><th>senders</th><th>first seen</th>"
            + ("<th>stamp</th>" if images else "")
            + "</tr>"
        )
        for n, o in enumerate(inv.overlays):
            bots = ", ".join(f"{k} ({v})" for k, v in sorted(o.bots.items(), key=lambda kv: -kv[1]))
            senders = ", ".join(
                f"{k} ({v})" for k, v in sorted(o.senders.items(), key=lambda kv: -kv[1])[:5]
            )
            row = (
                f"<tr><td class='num'>{n + 1}</td><td class='num'>{len(o.posts)}</td>"
                f"<td class='num'>{len(o.images)}</td><td>{e(bots or 'none')}</td>"
                f"<td class='num'>{len(o.unseen_posts)}</td>"
                f"<td>{e(senders)}</td><td>{_iso(inv.posts[o.posts[0]].timestamp)}</td>"
            )
            if images:
                stamp = _data_uri(_overlay_picture(inv, n), "png")
                row += f"<td><img alt='overlay {n + 1}' src='{stamp}'></td>"
            parts.append(row + "</tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")

    parts.append("<h2>Matches to protected and known photos</h2>")
    matched = [(c, m) for c in clusters for m in c["bank_matches"]]
    if not matched:
        parts.append("<p>None.</p>")
    else:
        parts.append(
            "<table><tr><th>cluster</th><th>bank</th><th>entry</th><th>signal</th><th>score</th>"
            "<th>changed</th>" + ("<th>evidence</th>" if images else "") + "</tr>"
        )
        for c, m in matched[:_TABLE_CLUSTERS]:
            changed = m.get("changed_fraction")
            row = (
                f"<tr><td class='num'>{c['cluster']}</td><td>{e(m['bank'])}</td>"
                f"<td class='num'>{m['entry_id']}</td><td>{e(m['signal'])}</td>"
                f"<td class='num'>{m.get('score', '')}</td>"
                f"<td class='num'>{'' if changed is None else f'{changed:.0%}'}</td>"
            )
            if images:
                image = image_of[m["sha256"]]
                record = next(
                    (x for x in inv.images[image].record.matches if x.entry_id == m["entry_id"]),
                    None,
                )
                picture = _picture(inv, image, limits)
                cell = ""
                if picture is not None and record is not None:
                    shown = (
                        overlay(picture, record.evidence.outline) if record.evidence else picture
                    )
                    cell = f"<img class='thumb' alt='evidence' src='{_thumbnail(shown, _OVERLAY)}'>"
                row += f"<td>{cell}</td>"
            parts.append(row + "</tr>")
        parts.append("</table>")

    parts.append(f"<h2>Problems ({len(inv.problems)})</h2>")
    counts = Counter(p.code for p in inv.problems)
    if counts:
        parts.append("<table><tr><th>problem</th><th>count</th></tr>")
        parts += [
            f"<tr><td>{e(k)}</td><td class='num'>{v}</td></tr>" for k, v in counts.most_common()
        ]
        parts.append("</table><table><tr><th>problem</th><th>where</th><th>detail</th></tr>")
        parts += [
            f"<tr><td>{e(p.code)}</td><td>{e(p.where)}</td><td>{e(p.detail)}</td></tr>"
            for p in inv.problems[:500]
        ]
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_report(
    inv: Investigation, out: Path, *, images: bool = True, limits: Limits | None = None
) -> dict[str, Path]:
    """Write every output into `out` (created if needed); returns them by name."""
    limits = limits or Limits()
    out.mkdir(parents=True, exist_ok=True)
    written = {"messages": out / "messages.csv", "clusters": out / "clusters.json"}
    _messages_csv(inv, written["messages"])
    clusters = _clusters(inv)
    document = {
        "format": 1,
        "archive": str(inv.archive),
        "banks": list(inv.banks),
        "summary": inv.summary(),
        "timings_seconds": {k: round(v, 3) for k, v in inv.timings.items()},
        "clusters": clusters,
        "overlays": _overlays(inv),
        "problems": [{"code": p.code, "where": p.where, "detail": p.detail} for p in inv.problems],
    }
    written["clusters"].write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    plots = _plots(inv)
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    for name, data in plots.items():
        (plot_dir / f"{name}.png").write_bytes(data)
        written[f"plot_{name}"] = plot_dir / f"{name}.png"
    written["report"] = out / "report.html"
    written["report"].write_text(_html(inv, clusters, plots, images, limits), encoding="utf-8")
    return written

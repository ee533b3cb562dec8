"""The image posts of an exported channel archive, read as a stream.

Telegram Desktop's JSON export, exactly as its exporter writes it: one chat (`result.json` =
`{name, type, id, messages}` beside `photos/`, `files/`) or a full export (`chats.list[]`, media
under `chats/chat_NNN/`, paths relative to the export's root). The JSON is parsed event by
event (ijson), one message at a time, so a 2 GB export is never held in memory. Its traps:
`date` is local time without a zone (we use `date_unixtime`, a string); `from` may be null;
`from_id` is `user…`, `channel…` or `chat…`; `forwarded_from` is only a display name;
`via_bot` marks a bot's output; images sent as files come as `file` with an image `mime_type`;
media the exporter skipped is a "(File not included…)" placeholder.

Also a plain folder of images (the file's modification time as its date).

Nothing here stops on a bad record: every problem becomes a `Problem` beside the posts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import ijson

from ..media import IMAGE_SUFFIXES

__all__ = ["ArchiveReader", "Post", "Problem", "read_archive"]

_IMAGE_MIME: Final = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic", "image/gif"})
#: Media types that carry an image mime type but are not photos of anyone.
_NOT_PHOTOS: Final = frozenset({"sticker", "animation", "video_file", "video_message"})
_MESSAGE_PREFIXES: Final = (
    "messages.item",
    "chats.list.item.messages.item",
    "left_chats.list.item.messages.item",
)
_CHAT_FIELDS: Final = frozenset({"name", "type", "id"})
_CHAT_PREFIXES: Final = frozenset({"", "chats.list.item", "left_chats.list.item"})


@dataclasses.dataclass(frozen=True)
class Post:
    """One image posted in the archive: where, when, by whom, and how."""

    chat: str  # the chat's name (or the folder's)
    chat_id: str
    message_id: int
    timestamp: int  # Unix seconds
    sender: str | None  # display name; None when the export has none
    sender_id: str | None  # user…, channel…, chat…
    path: Path  # the image file, inside the archive
    via_bot: str | None = None
    forwarded_from: str | None = None
    text: str = ""

    @property
    def key(self) -> str:
        """Unique within an archive: chat id and message id."""
        return f"{self.chat_id}/{self.message_id}"


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something in the archive that could not be used; counted and listed, never fatal."""

    code: str  # stable: missing_file, media_not_exported, bad_record, json_error, ...
    where: str  # chat/message, or a file path
    detail: str = ""


def _text(value: Any) -> str:
    """`text` is a string or a list of strings and `{type, text}` pieces."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in value if p)
    return ""


def _inside(root: Path, relative: str) -> Path | None:
    """The file a path in the JSON names, if it stays inside the archive."""
    if not relative or "\x00" in relative or os.path.isabs(relative):
        return None
    candidate = (root / relative).resolve()
    try:
        candidate.relative_to(root)
    except ValueError:
        return None
    return candidate


class ArchiveReader:
    """Iterate `posts()` once; afterwards `problems` and `counts` say what was skipped."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.problems: list[Problem] = []
        self.messages = 0
        self.format = "folder" if archive.is_dir() and not self._json_path() else "telegram"

    def _json_path(self) -> Path | None:
        if self.archive.is_file():
            return self.archive
        candidate = self.archive / "result.json"
        return candidate if candidate.is_file() else None

    def _problem(self, code: str, where: str, detail: str = "") -> None:
        self.problems.append(Problem(code, where, detail))

    def posts(self) -> Iterator[Post]:
        if self.format == "folder":
            yield from self._folder()
            return
        path = self._json_path()
        assert path is not None
        with path.open("rb") as fh:
            yield from self._telegram(fh, path.parent.resolve())

    # a plain folder ----------------------------------------------------------------------------

    def _folder(self) -> Iterator[Post]:
        root = self.archive.resolve()
        files = sorted(p for p in root.rglob("*") if p.is_file())
        for number, path in enumerate(files, start=1):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if _inside(root, str(path.relative_to(root))) is None:  # a link to elsewhere
                self._problem("path_outside_archive", str(path.relative_to(root)))
                continue
            self.messages += 1
            relative = str(path.relative_to(root))
            yield Post(
                chat=root.name,
                chat_id="folder",
                message_id=number,
                timestamp=int(path.stat().st_mtime),
                sender=None,
                sender_id=None,
                path=path,
                text=relative,
            )

    # Telegram Desktop JSON ---------------------------------------------------------------------

    def _telegram(self, fh: IO[bytes], root: Path) -> Iterator[Post]:
        chat: dict[str, Any] = {}
        builder: ijson.ObjectBuilder | None = None
        depth = 0
        try:
            for prefix, event, value in ijson.parse(fh, use_float=True):
                if builder is not None:
                    if event in ("start_map", "start_array"):
                        depth += 1
                    elif event in ("end_map", "end_array"):
                        depth -= 1
                    builder.event(event, value)
                    if depth == 0:
                        post = self._post(builder.value, chat, root)
                        builder = None
                        if post is not None:
                            yield post
                    continue
                if prefix in _MESSAGE_PREFIXES:
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                    depth = 1 if event in ("start_map", "start_array") else 0
                    if depth == 0:  # a scalar where a message should be
                        self.messages += 1
                        self._problem("bad_record", self._where(chat, None), "not an object")
                        builder = None
                    continue
                if event == "start_map" and prefix in _CHAT_PREFIXES:
                    chat = {}
                head, _, field = prefix.rpartition(".")
                if field in _CHAT_FIELDS and head in _CHAT_PREFIXES:
                    chat[field] = value
        except (ijson.JSONError, UnicodeDecodeError) as error:  # found by fuzzing: not UTF-8
            self._problem("json_error", str(self._json_path()), str(error)[:200])

    @staticmethod
    def _where(chat: dict[str, Any], message_id: Any) -> str:
        chat_name = chat.get("name") or chat.get("id") or "?"
        return f"{chat_name}/{'?' if message_id is None else message_id}"

    def _post(self, message: Any, chat: dict[str, Any], root: Path) -> Post | None:
        self.messages += 1
        if not isinstance(message, dict):
            self._problem("bad_record", self._where(chat, None), "not an object")
            return None
        message_id = message.get("id")
        where = self._where(chat, message_id)
        if message.get("type", "message") != "message":
            return None  # service messages: joins, pins, title changes
        media = self._media(message, where)
        if media is None:
            return None
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            self._problem("bad_record", where, "no integer id")
            return None
        timestamp = self._timestamp(message, where)
        if timestamp is None:
            return None
        path = _inside(root, media)
        if path is None:
            self._problem("path_outside_archive", where, media[:200])
            return None
        if not path.is_file():
            self._problem("missing_file", where, media[:200])
            return None
        sender = message.get("from")
        sender_id = message.get("from_id")
        via_bot = message.get("via_bot")
        forwarded = message.get("forwarded_from")
        return Post(
            chat=str(chat.get("name") or chat.get("id") or "chat"),
            chat_id=str(chat.get("id", "chat")),
            message_id=message_id,
            timestamp=timestamp,
            sender=sender if isinstance(sender, str) else None,
            sender_id=sender_id if isinstance(sender_id, str) else None,
            path=path,
            via_bot=via_bot if isinstance(via_bot, str) else None,
            forwarded_from=forwarded if isinstance(forwarded, str) else None,
            text=_text(message.get("text")),
        )

    def _media(self, message: dict[str, Any], where: str) -> str | None:
        """The image file a message carries (relative path), or None."""
        photo = message.get("photo")
        file = message.get("file")
        if photo is None:
            mime = message.get("mime_type")
            if not (
                isinstance(mime, str)
                and mime.lower() in _IMAGE_MIME
                and message.get("media_type") not in _NOT_PHOTOS
            ):
                return None
            photo = file
        if not isinstance(photo, str):
            self._problem("bad_record", where, "media path is not a string")
            return None
        if photo.startswith("(File "):  # "(File not included. Change data exporting …)"
            self._problem("media_not_exported", where, photo)
            return None
        return photo

    def _timestamp(self, message: dict[str, Any], where: str) -> int | None:
        raw = message.get("date_unixtime")
        if isinstance(raw, str | int) and not isinstance(raw, bool):
            try:
                return int(raw)
            except ValueError:
                pass
        date = message.get("date")
        if isinstance(date, str):
            try:
                local = dt.datetime.fromisoformat(date)
            except ValueError:
                pass
            else:  # older exports: local time of the exporting machine, zone unknown
                self._problem("date_without_zone", where, "read as UTC")
                return int(local.replace(tzinfo=dt.UTC).timestamp())
        self._problem("bad_record", where, "no usable date")
        return None


def read_archive(archive: Path) -> ArchiveReader:
    """A reader for a Telegram Desktop export (its folder or result.json) or a folder of
    images. FileInputError-free: a missing archive is the caller's check."""
    return ArchiveReader(archive)

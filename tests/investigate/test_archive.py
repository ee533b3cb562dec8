"""Reading Telegram Desktop exports as the official exporter writes them, traps included."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

from counterfake.investigate import read_archive

from ..images import encode, photo_like

SKIPPED = "(File not included. Change data exporting settings to download.)"


def _photo(root: Path, relative: str, seed: int = 0) -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(photo_like(320, 240, seed)))
    return relative


def _message(number: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": number,
        "type": "message",
        "date": "2026-06-01T12:00:00",
        "date_unixtime": str(1_780_315_200 + number),
        "from": "someone",
        "from_id": "user42",
        "text": "",
        **fields,
    }


def test_a_single_chat_yields_its_image_posts_with_who_when_and_how(tmp_path: Path) -> None:
    photo = _photo(tmp_path, "photos/photo_1@01-06-2026_12-00-00.jpg")
    as_file = _photo(tmp_path, "files/image.png", seed=1)
    messages = [
        _message(1, photo=photo, date="2026-06-01T14:00:00"),  # local time: not used
        _message(
            2,
            photo=photo,
            **{"from": None, "from_id": "channel7"},
            forwarded_from="Another channel",
            text=["look ", {"type": "bold", "text": "here"}],
        ),
        _message(3, photo=photo, via_bot="@some_bot"),
        _message(4, file=as_file, mime_type="image/png"),
        _message(5, file=as_file, mime_type="image/webp", media_type="sticker"),
        _message(6, file="files/clip.mp4", mime_type="video/mp4"),
        _message(7, text="no media at all"),
        {"id": 8, "type": "service", "action": "pin_message", "date_unixtime": "1780315208"},
    ]
    (tmp_path / "result.json").write_text(
        json.dumps({"name": "Chat <b>", "type": "public_channel", "id": 99, "messages": messages})
    )
    reader = read_archive(tmp_path)
    posts = list(reader.posts())

    assert [p.message_id for p in posts] == [1, 2, 3, 4]
    first, forwarded, bot, file_post = posts
    assert first.timestamp == 1_780_315_201  # date_unixtime, not the zone-less local date
    assert (first.chat, first.chat_id, first.sender, first.sender_id) == (
        "Chat <b>",
        "99",
        "someone",
        "user42",
    )
    assert first.path == (tmp_path / photo).resolve()
    assert forwarded.sender is None and forwarded.sender_id == "channel7"
    assert forwarded.forwarded_from == "Another channel"
    assert forwarded.text == "look here"
    assert bot.via_bot == "@some_bot" and bot.forwarded_from is None
    assert file_post.path.name == "image.png"
    assert reader.problems == []
    assert reader.messages == 8


def test_every_unusable_record_is_a_problem_and_none_stops_the_read(tmp_path: Path) -> None:
    photo = _photo(tmp_path, "photos/photo_1@01-06-2026_12-00-00.jpg")
    outside = tmp_path.parent / "secret.jpg"
    outside.write_bytes(b"not for us")
    messages: list[Any] = [
        _message(1, photo=SKIPPED),
        _message(2, photo="photos/photo_2@gone.jpg"),
        _message(3, photo="../secret.jpg"),
        _message(4, photo=str(outside)),
        "not an object",
        {"type": "message", "photo": photo, "date_unixtime": "1780315200"},  # no id
        _message(5, photo=photo, date_unixtime="soon", date="not a date"),
        _message(6, photo=photo, date_unixtime=None),  # only the local date: kept
        _message(7, photo=12),
        _message(8, photo=photo),
    ]
    (tmp_path / "result.json").write_text(
        json.dumps({"name": "c", "type": "private_group", "id": 1, "messages": messages})
    )
    reader = read_archive(tmp_path)
    posts = list(reader.posts())

    assert [p.message_id for p in posts] == [6, 8]
    assert [p.code for p in reader.problems] == [
        "media_not_exported",
        "missing_file",
        "path_outside_archive",
        "path_outside_archive",
        "bad_record",
        "bad_record",
        "bad_record",
        "date_without_zone",
        "bad_record",
    ]
    assert reader.problems[0].where == "c/1"
    assert reader.messages == 10


def test_a_full_export_names_each_chat_and_finds_media_from_its_root(tmp_path: Path) -> None:
    chats = []
    for number, name in ((1, "Requests"), (2, "Gallery")):
        photo = _photo(tmp_path, f"chats/chat_00{number}/photos/photo_1@x.jpg", seed=number)
        chats.append(
            {
                "name": name,
                "type": "public_channel",
                "id": 100 + number,
                "messages": [_message(1, photo=photo), _message(2, photo=photo)],
            }
        )
    left = _photo(tmp_path, "chats/chat_003/photos/photo_1@x.jpg", seed=3)
    document = {
        "about": "Here is the data you requested.",
        "personal_information": {"first_name": "me", "about": "x"},
        "chats": {"about": "...", "list": chats},
        "left_chats": {
            "about": "...",
            "list": [
                {
                    "name": "Left",
                    "type": "public_supergroup",
                    "id": 103,
                    "messages": [_message(1, photo=left)],
                }
            ],
        },
    }
    (tmp_path / "result.json").write_text(json.dumps(document))
    posts = list(read_archive(tmp_path / "result.json").posts())
    assert [(p.chat, p.chat_id, p.message_id) for p in posts] == [
        ("Requests", "101", 1),
        ("Requests", "101", 2),
        ("Gallery", "102", 1),
        ("Gallery", "102", 2),
        ("Left", "103", 1),
    ]
    assert posts[2].path == (tmp_path / "chats/chat_002/photos/photo_1@x.jpg").resolve()
    assert len({p.key for p in posts}) == 5


def test_a_truncated_export_keeps_what_was_read_and_says_so(tmp_path: Path) -> None:
    photo = _photo(tmp_path, "photos/photo_1@x.jpg")
    text = json.dumps(
        {
            "name": "c",
            "type": "public_channel",
            "id": 1,
            "messages": [_message(n, photo=photo) for n in range(1, 6)],
        }
    )
    (tmp_path / "result.json").write_text(text[: text.index('"id": 4')])
    reader = read_archive(tmp_path)
    posts = list(reader.posts())
    assert [p.message_id for p in posts] == [1, 2, 3]
    assert [p.code for p in reader.problems] == ["json_error"]


def test_a_plain_folder_is_read_with_file_times_as_dates(tmp_path: Path) -> None:
    first = tmp_path / "a" / "one.jpg"
    first.parent.mkdir()
    first.write_bytes(encode(photo_like(200, 150, 1)))
    (tmp_path / "notes.txt").write_text("not an image")
    second = tmp_path / "two.png"
    second.write_bytes(encode(photo_like(200, 150, 2), "PNG"))
    os.utime(first, (1_700_000_000, 1_700_000_000))
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.jpg"
    elsewhere.write_bytes(encode(photo_like(200, 150, 3)))
    (tmp_path / "link.jpg").symlink_to(elsewhere)
    reader = read_archive(tmp_path)
    posts = list(reader.posts())
    assert reader.format == "folder"
    assert [(p.path.name, p.text) for p in posts] == [
        ("one.jpg", "a/one.jpg"),
        ("two.png", "two.png"),
    ]
    assert posts[0].timestamp == 1_700_000_000
    assert [(p.code, p.where) for p in reader.problems] == [("path_outside_archive", "link.jpg")]


def test_a_large_export_is_streamed_not_loaded(tmp_path: Path) -> None:
    photo = _photo(tmp_path, "photos/photo_1@x.jpg")
    path = tmp_path / "result.json"
    with path.open("w") as fh:
        fh.write('{"name": "big", "type": "public_channel", "id": 5, "messages": [')
        for n in range(1, 100_001):
            fh.write(
                json.dumps(_message(n, text="x" * 200, photo=photo if n % 1000 == 0 else None))
            )
            fh.write("," if n < 100_000 else "")
        fh.write("]}")
    size = path.stat().st_size
    assert size > 25_000_000
    reader = read_archive(tmp_path)
    tracemalloc.start()
    count = sum(1 for _ in reader.posts())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 100
    assert reader.messages == 100_000
    assert peak < size / 20  # a message at a time, not the document


def test_an_export_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    # Found by fuzzing (tests/fuzz/seeds/telegram/regress-invalid-utf8.json): ijson's decoder
    # raised UnicodeDecodeError, which escaped.
    seed = Path(__file__).parents[1] / "fuzz" / "seeds" / "telegram" / "regress-invalid-utf8.json"
    (tmp_path / "result.json").write_bytes(seed.read_bytes())
    reader = read_archive(tmp_path)
    assert list(reader.posts()) == []
    assert [p.code for p in reader.problems] == ["json_error"]

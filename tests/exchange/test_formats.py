"""Bank files: te and jsonl parse, bad lines are reported by number, withdrawals travel."""

from __future__ import annotations

import io

from counterfake import FormatError, NewEntry, Store
from counterfake.exchange import parse_lines, write_entries

PDQ = "f" * 64


def test_te_lines_bare_hex_and_comments() -> None:
    lines = ["# a comment", "", f"pdq {PDQ}", "0" * 64, f"md5 {'a' * 32}"]
    parsed = list(parse_lines(lines))
    assert [(e.signal_type, e.value) for e in parsed if isinstance(e, NewEntry)] == [
        ("pdq", PDQ),
        ("pdq", "0" * 64),
        ("md5", "a" * 32),
    ]


def test_bad_lines_come_back_as_errors_with_their_line_numbers() -> None:
    lines = [f"pdq {PDQ}", "pdq nothex", "{not json", '{"signal": "pdq"}', "x y z", "nope " + PDQ]
    parsed = list(parse_lines(lines, path="f.txt"))
    errors = [p for p in parsed if isinstance(p, FormatError)]
    assert [e.line for e in errors] == [2, 3, 4, 5, 6]
    assert errors[0].code == "invalid_signal"
    assert errors[4].code == "unknown_signal_type"
    assert all(e.path == "f.txt" for e in errors)


def test_jsonl_round_trip_carries_metadata_and_withdrawals(tmp_path: object) -> None:
    source = Store.open("sqlite://")
    source.create_bank("a")
    _kept, gone = source.add_entries(
        "a",
        [
            NewEntry("pdq", PDQ, quality=88, metadata={"source_name": "x.jpg"}),
            NewEntry("pdq", "1" * 64, quality=90),
        ],
    )
    source.withdraw("a", gone.entry_id)
    buffer = io.StringIO()
    assert write_entries(source.iter_entries("a", include_withdrawn=True), buffer) == 2

    target = Store.open("sqlite://")
    target.create_bank("b")
    parsed = [p for p in parse_lines(buffer.getvalue().splitlines()) if isinstance(p, NewEntry)]
    results = target.add_entries("b", parsed)
    assert [r.status for r in results] == ["created", "withdrawn"]
    [active] = list(target.iter_entries("b"))
    assert (active.value, active.quality, active.metadata) == (PDQ, 88, {"source_name": "x.jpg"})


def test_te_export_lists_active_pdq_only() -> None:
    store = Store.open("sqlite://")
    store.create_bank("a")
    _, _, c = store.add_entries(
        "a", [NewEntry("pdq", PDQ), NewEntry("md5", "b" * 32), NewEntry("pdq", "2" * 64)]
    )
    store.withdraw("a", c.entry_id)
    buffer = io.StringIO()
    write_entries(store.iter_entries("a", include_withdrawn=True), buffer, format="te")
    assert buffer.getvalue() == f"pdq {PDQ}\n"

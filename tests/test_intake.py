"""Intake: signature files sent without a key are taken whole or not at all, limited per
address and per day, and withdrawn by a code that the store never holds in clear."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from counterfake import Counterfake, Store
from counterfake.errors import NotFoundError, RejectedFileError, UnavailableError
from counterfake.intake import code_digest
from counterfake.protect import protect_bytes, write_signatures
from counterfake.settings import load_settings
from tests.derivative_images import reencode, replace_region


@pytest.fixture(scope="module")
def photos(corpus_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(corpus_dir.glob("*.jpg"))[40:44]]


@pytest.fixture(scope="module")
def lines(photos: list[bytes]) -> list[str]:
    buffer = io.StringIO()
    write_signatures([protect_bytes(data) for data in photos], buffer)
    return buffer.getvalue().splitlines()


@pytest.fixture
def core(store_url: str, tmp_path: Path) -> Iterator[Counterfake]:
    settings = dataclasses.replace(
        load_settings({}), home=tmp_path, database_url=store_url, intake_bank="people"
    )
    with Counterfake(settings) as opened:
        yield opened


def _limited(core: Counterfake, **limits: int) -> Counterfake:
    core.settings = dataclasses.replace(core.settings, **limits)
    return core


def test_intake_is_off_unless_the_operator_names_a_bank(tmp_path: Path, lines: list[str]) -> None:
    settings = dataclasses.replace(load_settings({}), home=tmp_path)
    with Counterfake(settings) as core:
        assert core.intake_status() == {"enabled": False, "max_photos": 0}
        with pytest.raises(NotFoundError) as raised:
            core.intake(lines, address="192.0.2.1")
    assert raised.value.code == "intake_disabled"


def test_a_file_is_stored_under_a_submission_and_withdrawn_by_its_code(
    core: Counterfake, lines: list[str], photos: list[bytes]
) -> None:
    receipt = core.intake(lines, address="192.0.2.1")
    assert receipt.photos == 4
    assert receipt.submission.startswith("intake-")
    assert len(receipt.withdrawal_code.replace("-", "")) == 24
    assert core.bank("people").active_entries == 8
    assert core.lookup(photos[0]).matches
    derivative, _ = replace_region(_image(photos[1]), _image(photos[3]), 0.2)
    assert any(m.signal == "derivative" for m in core.lookup(reencode(derivative)).matches)

    # Typed by hand: lower case, no dashes, O for zero.
    typed = receipt.withdrawal_code.replace("-", "").lower().replace("0", "o")
    assert core.withdraw_submission(typed) == 8
    assert core.bank("people").withdrawn_entries == 8
    assert not core.lookup(photos[0]).matches
    assert core.withdraw_submission(receipt.withdrawal_code) == 0  # twice: nothing more


def test_an_unknown_code_withdraws_nothing(core: Counterfake, lines: list[str]) -> None:
    core.intake(lines, address="192.0.2.1")
    with pytest.raises(NotFoundError) as raised:
        core.withdraw_submission("AAAA-BBBB-CCCC-DDDD-EEEE-FFFF")
    assert raised.value.code == "unknown_withdrawal_code"
    assert core.bank("people").active_entries == 8


def test_one_bad_line_refuses_the_whole_file_naming_each_bad_line(
    core: Counterfake, lines: list[str]
) -> None:
    record = json.loads(lines[2])
    bad = [
        *lines[:2],
        json.dumps({**record, "pdq": "zz"}),
        json.dumps({**record, "signature": "bm90IGEgc2lnbmF0dXJl"}),
        "{not json",
        *lines[3:],
    ]
    with pytest.raises(RejectedFileError) as raised:
        core.intake(bad, address="192.0.2.1")
    assert raised.value.code == "invalid_signature_file"
    assert [e.line for e in raised.value.lines] == [3, 4, 5]
    assert raised.value.to_dict()["lines"][0]["code"] == "invalid_record"
    with pytest.raises(NotFoundError):  # nothing stored: not even the bank was made
        core.bank("people")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ([], "invalid_signature_file"),
        (['{"format": "something-else", "version": 2}'], "invalid_signature_file"),
        (['{"format": "counterfake-signatures", "version": 2}'], "empty_signature_file"),
    ],
)
def test_an_empty_or_foreign_file_is_refused(core: Counterfake, text: list[str], code: str) -> None:
    with pytest.raises(RejectedFileError) as raised:
        core.intake(text, address="192.0.2.1")
    assert raised.value.code == code


def test_a_file_of_too_many_photos_is_refused(core: Counterfake, lines: list[str]) -> None:
    _limited(core, intake_max_photos=3)
    with pytest.raises(RejectedFileError) as raised:
        core.intake(lines, address="192.0.2.1")
    assert raised.value.code == "too_many_photos"


def test_submissions_are_limited_per_address_and_per_day(
    core: Counterfake, lines: list[str]
) -> None:
    _limited(core, intake_address_daily=2, intake_daily=3)
    core.intake(lines, address="192.0.2.1")
    core.intake(lines, address="192.0.2.1")
    with pytest.raises(UnavailableError) as raised:
        core.intake(lines, address="192.0.2.1")
    assert raised.value.code == "rate_limited"
    core.intake(lines, address="192.0.2.2")
    with pytest.raises(UnavailableError):
        core.intake(lines, address="192.0.2.3")  # the day's limit, whoever asks


def test_entries_two_submissions_share_stay_until_both_are_withdrawn(
    core: Counterfake, lines: list[str], photos: list[bytes]
) -> None:
    first = core.intake(lines, address="192.0.2.1")
    second = core.intake([*lines[:1], *lines[1:3]], address="192.0.2.2")  # photos 0 and 1
    assert core.withdraw_submission(first.withdrawal_code) == 4  # photos 2 and 3
    assert core.lookup(photos[0]).matches
    assert not core.lookup(photos[3]).matches
    assert core.withdraw_submission(second.withdrawal_code) == 4
    assert not core.lookup(photos[0]).matches


def test_the_store_holds_neither_the_code_nor_the_address(
    core: Counterfake, store_url: str, lines: list[str]
) -> None:
    receipt = core.intake(lines, address="203.0.113.77")
    core.withdraw_submission(receipt.withdrawal_code)
    dump = _dump(store_url)
    assert receipt.withdrawal_code not in dump
    assert receipt.withdrawal_code.replace("-", "") not in dump
    assert "203.0.113.77" not in dump
    assert code_digest(receipt.withdrawal_code) in dump
    events = core.store.audit_events()
    actions = [e.action for e in events]
    assert {"intake_submitted", "intake_withdrawn"} <= set(actions)
    record = json.loads(lines[1])
    for event in events:  # counts and ids, never a signal
        text = json.dumps(event.detail)
        assert record["pdq"] not in text
        assert record["signature"][:40] not in text


def _image(data: bytes):  # type: ignore[no-untyped-def]
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def _dump(url: str) -> str:
    engine = sa.create_engine(url)
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            out += [repr(tuple(row)) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"'))]
    engine.dispose()
    return "\n".join(out)


def test_a_new_store_has_the_intake_tables(store: Store) -> None:
    assert store.count_submissions(_epoch()) == 0
    assert store.instance_secret("intake_address") == store.instance_secret("intake_address")


def _epoch():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)


def test_the_cli_withdraws_a_submission_by_its_code(
    home: Path, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from counterfake.cli import main

    monkeypatch.setenv("COUNTERFAKE_INTAKE_BANK", "people")
    with Counterfake() as core:
        receipt = core.intake(lines, address="192.0.2.9")
    withdrawn = CliRunner().invoke(main, ["intake", "withdraw", receipt.withdrawal_code, "--json"])
    assert withdrawn.exit_code == 0, withdrawn.output
    assert json.loads(withdrawn.stdout) == {"entries": 8}
    unknown = CliRunner().invoke(main, ["intake", "withdraw", "ZZZZ-ZZZZ", "--json"])
    assert unknown.exit_code == 1
    assert json.loads(unknown.stdout)["error"]["code"] == "unknown_withdrawal_code"

"""python-threatexchange's local signal file as an exchange (`threatexchange-file`), both ways:
a file python-threatexchange reads is fetched into a bank as a snapshot (lines gone from it are
withdrawn), and `bank export --format te` writes a file python-threatexchange reads back."""

from __future__ import annotations

import dataclasses
import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from counterfake import Counterfake
from counterfake.errors import CounterfakeError
from counterfake.exchange.formats import write_entries
from counterfake.settings import load_settings


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Counterfake]:
    with Counterfake(dataclasses.replace(load_settings({}), home=tmp_path / "home")) as opened:
        opened.create_bank("te")
        yield opened


def _python_threatexchange_reads(path: Path) -> set[tuple[str, str]]:
    from threatexchange.exchanges.impl.file_api import (
        FileCollaborationConfig,
        LocalFileSignalExchangeAPI,
    )
    from threatexchange.signal_type.pdq.signal import PdqSignal

    config = FileCollaborationConfig(
        name="file", api=LocalFileSignalExchangeAPI.get_name(), enabled=True, filename=str(path)
    )
    api = LocalFileSignalExchangeAPI.for_collab(config)
    return {key for delta in api.fetch_iter([PdqSignal], None) for key in delta.updates}


def test_a_signal_file_is_fetched_as_a_snapshot(core: Counterfake, tmp_path: Path) -> None:
    hashes = [secrets.token_hex(32) for _ in range(3)]
    signal_file = tmp_path / "signals.txt"
    signal_file.write_text("".join(f"pdq {h}\n" for h in hashes))
    assert _python_threatexchange_reads(signal_file) == {("pdq", h) for h in hashes}
    core.add_exchange("file", type="threatexchange-file", bank="te", path=str(signal_file))
    first = core.fetch_exchange("file")
    assert first.applied == 3 and first.last_error is None
    assert all(core.lookup_signal("pdq", h) for h in hashes)
    assert core.fetch_exchange("file").applied == 3  # unchanged: nothing applied again

    signal_file.write_text(f"pdq {hashes[0]}\n# a comment\npdq {hashes[2]}\n")
    core.fetch_exchange("file")
    assert core.lookup_signal("pdq", hashes[0]) and core.lookup_signal("pdq", hashes[2])
    assert not core.lookup_signal("pdq", hashes[1])  # gone from the file: withdrawn
    # An entry added by hand is not this exchange's to withdraw.
    from counterfake.model import NewEntry

    own = secrets.token_hex(32)
    core.add_signals("te", [NewEntry("pdq", own)])
    signal_file.write_text(f"pdq {hashes[0]}\n")
    core.fetch_exchange("file")
    assert core.lookup_signal("pdq", own)
    assert not core.lookup_signal("pdq", hashes[2])
    # Where a bank's active entries came from.
    assert core.bank("te").active_by_source == {"exchange": 1, "hashes": 1}


def test_a_bank_exported_as_te_is_read_by_python_threatexchange(
    core: Counterfake, tmp_path: Path
) -> None:
    from counterfake.model import NewEntry

    hashes = [secrets.token_hex(32) for _ in range(4)]
    core.add_signals("te", [NewEntry("pdq", h) for h in hashes])
    out = io.StringIO()
    write_entries(core.entries("te"), out, format="te")
    exported = tmp_path / "exported.txt"
    exported.write_text(out.getvalue())
    assert _python_threatexchange_reads(exported) == {("pdq", h) for h in hashes}


def test_a_bad_or_missing_file_is_a_coded_failure(core: Counterfake, tmp_path: Path) -> None:
    signal_file = tmp_path / "signals.txt"
    signal_file.write_text(f"pdq {secrets.token_hex(32)}\npdq not-a-hash\n")
    core.add_exchange("bad", type="threatexchange-file", bank="te", path=str(signal_file))
    with pytest.raises(CounterfakeError) as raised:
        core.fetch_exchange("bad")
    assert raised.value.code == "exchange_bad_page"
    assert core.bank("te").active_entries == 0  # refused whole
    signal_file.unlink()
    core.store.release_exchange("bad")
    with pytest.raises(CounterfakeError) as missing:
        core.fetch_exchange("bad")
    assert missing.value.code == "exchange_unreachable"


def test_the_cli_pauses_and_resumes_an_exchange_and_keeps_credentials_unseen(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from counterfake.cli import main

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    signal_file = tmp_path / "signals.txt"
    signal_file.write_text(f"pdq {secrets.token_hex(32)}\n")
    run("bank", "create", "te")
    run(
        "exchange",
        "add",
        "file",
        "--type",
        "threatexchange-file",
        "--bank",
        "te",
        "--path",
        str(signal_file),
    )
    assert "paused" in run("exchange", "pause", "file").lower()
    assert "paused" in run("exchange", "show", "file")
    run("exchange", "resume", "file")
    assert "paused" not in run("exchange", "show", "file")
    assert '"enabled": true' in run("exchange", "show", "file", "--json")

    monkeypatch.setenv("COUNTERFAKE_EXCHANGE_CREDENTIAL", "sub-secret:fn-secret")
    run("exchange", "credential", "stopncii")
    with Counterfake(load_settings()) as core:
        assert core.has_exchange_credential("stopncii")
        events = [json.dumps(e.detail) for e in core.store.audit_events(limit=1000)]
    assert not any("secret" in e for e in events)
    assert "sub-secret" not in run("exchange", "list", "--json")
    run("exchange", "credential", "stopncii", "--clear")
    with Counterfake(load_settings()) as core:
        assert not core.has_exchange_credential("stopncii")

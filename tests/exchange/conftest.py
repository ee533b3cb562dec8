"""What the exchange tests share: a core on each backend, with the bank its test fetches into
(the bank is named after the test module: `test_ncmec` -> `ncmec`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from counterfake import Counterfake
from counterfake.settings import load_settings


@pytest.fixture
def core(request: pytest.FixtureRequest, tmp_path: Path, store_url: str) -> Iterator[Counterfake]:
    """A core on SQLite and on PostgreSQL, with the module's bank."""
    settings = dataclasses.replace(
        load_settings({}), home=tmp_path / "home", database_url=store_url
    )
    with Counterfake(settings) as opened:
        opened.create_bank(request.module.__name__.rpartition(".test_")[2])
        yield opened

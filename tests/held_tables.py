"""Holding a shortlist's new tables back, to see what queries do while a fold is under way."""

from __future__ import annotations

import threading

import pytest

from counterfake.index import keypoints


def hold_new_tables(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """(started, release): from now on, a build of tables (a fold's; the smaller tiers are not
    held) sets `started` and waits until the test sets `release`."""
    started, release = threading.Event(), threading.Event()
    real = keypoints._Tier

    class HeldTables(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, offsets: bool, **kwargs: object) -> None:
            if offsets:
                started.set()
                assert release.wait(30)
            super().__init__(*args, offsets=offsets, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keypoints, "_Tier", HeldTables)
    return started, release

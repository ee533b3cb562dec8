"""`counterfake demo` runs end to end and what it claims is true."""

from __future__ import annotations

import io

from rich.console import Console

from counterfake.demo import CONTROL, alterations, run_demo, sample_photos


def test_samples_ship_with_their_licences() -> None:
    from importlib import resources

    photos = sample_photos()
    assert len(photos) == 5
    licences = (resources.files("counterfake") / "samples" / "LICENSES.md").read_text()
    for name in photos:
        assert name in licences


def test_demo_matches_altered_copies_and_not_the_control() -> None:
    buffer = io.StringIO()
    assert run_demo(Console(file=buffer, width=200)) == 0
    output = buffer.getvalue()
    rows = [line for line in output.splitlines() if line.startswith("│")]
    assert len(rows) == len(sample_photos()) * len(alterations())
    for row in rows:
        photo, alteration, matched = (cell.strip() for cell in row.strip("│").split("│")[:3])
        if photo == CONTROL:
            assert matched == "no", row
        elif alteration in ("re-encoded JPEG q30", "resized to 50%", "flipped left-right"):
            assert matched == photo, row
    assert "Try next" in output
    assert "counterfake serve" in output  # the demo points to the service

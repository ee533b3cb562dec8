"""Overlays: which images are taken to carry a stamp besides those it was seen on."""

from __future__ import annotations

import numpy as np

from counterfake.investigate.overlays import GRID, Overlay, with_bot_output


def _overlay(images: tuple[int, ...]) -> Overlay:
    masks = {i: np.zeros((GRID, GRID), bool) for i in images}
    return Overlay(images, masks, (0.0, 0.0, 1.0, 1.0), features=6)


def test_the_main_bots_other_output_is_taken_to_carry_its_stamp() -> None:
    bots = [("@bot",), ("@bot",), ("@bot", "@other"), (), ("@bot",), ("@other",), ()]
    (overlay,) = with_bot_output([_overlay((0, 1, 2, 3))], bots)
    assert overlay.images == (0, 1, 2, 3)  # seen on these only
    assert overlay.unseen == (4,)  # the bot's post where it was not seen


def test_no_output_is_taken_when_no_bot_posted_most_carriers() -> None:
    bots = [("@bot",), (), (), (), ("@bot",), ("@bot",)]
    (overlay,) = with_bot_output([_overlay((0, 1, 2, 3))], bots)
    assert overlay.unseen == ()

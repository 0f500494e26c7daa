"""Drawing names: boxes, captions, and any script legibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facewire import draw


def caption(text: str, wide: bool | None = None) -> np.ndarray:
    image = np.zeros((200, 300, 3), np.uint8)
    draw.annotate(image, [draw.Label((20, 120, 100, 20), text, True)])
    return image[100:140]


def test_a_label_draws_a_box_and_its_caption():
    image = np.zeros((200, 300, 3), np.uint8)
    draw.annotate(image, [draw.Label((20, 120, 100, 20), "Ann 0.31", True)])
    assert (image[20, 20:120] == draw.KNOWN_BGR).all()  # the top edge of the box
    strip = image[101:115, 22:60]
    assert (strip == draw.TEXT_BGR).all(axis=2).any() and (strip == draw.KNOWN_BGR).all(axis=2).any()


def test_accented_latin_greek_and_cyrillic_use_dejavu():
    assert not draw.needs_wide_font("Émilie Brontë Ωμέγα Жанна")


@pytest.mark.skipif(not Path(draw.WIDE_FONT_FILES[0]).exists(), reason="needs fonts-droid-fallback")
def test_cjk_names_get_a_font_that_has_their_glyphs():
    assert draw.needs_wide_font("王小明") and draw.needs_wide_font("김민준")
    assert draw.font(20, True).path == draw.WIDE_FONT_FILES[0]
    # DejaVu would draw the same empty box for both names; the fallback draws two different names
    assert not np.array_equal(caption("王小明"), caption("李大龙"))


@pytest.mark.skipif(not Path(draw.WIDE_FONT_FILES[0]).exists(), reason="needs fonts-droid-fallback")
def test_mixed_scripts_draw_each_run_in_a_font_that_has_it():
    pieces = draw.runs("王小明 0.31", 20)
    assert [p for p, _ in pieces] == ["王小明", " 0.31"]
    assert pieces[0][1].path == draw.WIDE_FONT_FILES[0] and "DejaVu" in pieces[1][1].path

"""Drawing names: boxes, captions, and any script legibly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from facewire.faces import draw
from facewire.faces.detection import detect_faces
from facewire.faces.settings import DetectorSettings

from .conftest import REPO_PROBES, SHARED_FACES


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


# Caption layout: no caption covers another or leaves the image, however crowded the picture.

NAMES = ("alexander_lacamoire 0.41", "kit_harington 0.33", "Unknown", "rose_leslie 0.42", "grace_hopper 0.29",
         "maria_de_los_angeles_garcia 0.55", "eileen_collins 0.47", "Unknown", "barack_obama 0.38")
FACE_SIDES = (14, 18, 22, 26, 30, 34)
"""Sizes of the faces in the mosaic (the crop is twice the face); MTCNN finds almost every face, with boxes of
11-38 px (dlib's HOG: boxes of 27-39 px, and it misses the smallest)."""


def boxes_in(image: np.ndarray, settings: DetectorSettings) -> list[tuple[int, int, int, int]]:
    return [detection.box for detection in detect_faces(image, settings)]


def labels_for(boxes: list[tuple[int, int, int, int]]) -> list[draw.Label]:
    return [draw.Label(box, name, name != "Unknown") for box, name in zip(boxes, NAMES * len(boxes))]


def overlap(a: draw.Caption, b: draw.Caption) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def assert_apart_and_inside(captions: list[draw.Caption | None], height: int, width: int) -> None:
    """Every caption inside the image, and GAP pixels free between any two."""
    placed = [c for c in captions if c]
    for i, a in enumerate(placed):
        assert 0 <= a.x and 0 <= a.y and a.x + a.w <= width and a.y + a.h <= height, a
        assert a.w > 0 and a.h > 0, a
        around = draw.Caption(a.x - draw.GAP, a.y - draw.GAP, a.w + 2 * draw.GAP, a.h + 2 * draw.GAP, a.size)
        for b in placed[i + 1:]:
            assert not overlap(around, b), (a, b)


def face_crops(paths: list[Path]) -> list[np.ndarray]:
    """Every face the detector finds in the photos, cropped with half a face of margin all round."""
    crops = []
    for path in paths:
        image = cv2.imread(str(path))
        for top, right, bottom, left in boxes_in(image, DetectorSettings()):
            margin = (bottom - top) // 2
            crops.append(image[max(0, top - margin):bottom + margin, max(0, left - margin):right + margin])
    return crops


def mosaic(crops: list[np.ndarray], rows: int = 5, cols: int = 7, tile: int = 72) -> np.ndarray:
    """A crowded group picture: the crops, scaled to small faces, one per tile (mirrored on reuse)."""
    canvas = np.full((rows * tile, cols * tile, 3), 90, np.uint8)
    for i in range(rows * cols):
        side = 2 * FACE_SIDES[i % len(FACE_SIDES)]
        face = cv2.resize(crops[i % len(crops)], (side, side), interpolation=cv2.INTER_AREA)
        face = face[:, ::-1] if (i // len(crops)) % 2 else face
        y, x = (i // cols) * tile + (tile - side) // 2, (i % cols) * tile + (tile - side) // 2
        canvas[y:y + side, x:x + side] = face
    return canvas


@pytest.fixture(scope="module", params=["repo", "shared"])
def group_photo(request) -> np.ndarray:
    paths = sorted(REPO_PROBES.glob("*.jpg"))
    if request.param == "shared":
        if not SHARED_FACES.is_dir():
            pytest.skip(f"shared photos not found at {SHARED_FACES}")
        paths = sorted((SHARED_FACES / "test").glob("*.jpg")) + paths
    return mosaic(face_crops(paths))


def test_captions_in_a_crowded_group_never_overlap_and_are_drawn_where_laid_out(group_photo):
    boxes = boxes_in(group_photo, DetectorSettings(min_face=15))
    assert len(boxes) >= 12 and all(bottom - top <= 40 for top, _, bottom, _ in boxes)
    labels = labels_for(boxes)
    height, width = group_photo.shape[:2]
    captions = draw.layout_captions(labels, height, width)
    assert None not in captions  # there is room for every name in this picture
    assert_apart_and_inside(captions, height, width)
    drawn = draw.annotate(group_photo.copy(), labels)
    for label, c in zip(labels, captions):
        fill = draw.KNOWN_BGR if label.known else draw.UNKNOWN_BGR
        strip = drawn[c.y:c.y + c.h, c.x:c.x + c.w]
        assert (strip[0] == fill).all() and (strip[:, 0] == fill).all(), (label, c)  # the strip's padding
        assert (strip.min(axis=2) >= 200).any(), (label, c)  # and white text


def test_kit_and_rose_captions_do_not_cover_each_other(shared_faces):
    image = cv2.imread(str(shared_faces / "test" / "kit_with_rose.jpg"))
    boxes = boxes_in(image, DetectorSettings())
    assert len(boxes) == 2
    names = ["kit_harington 0.33", "rose_leslie 0.42"]
    labels = [draw.Label(box, name, True) for box, name in zip(boxes, names)]
    first, second = draw.layout_captions(labels, *image.shape[:2])
    assert first and second and not overlap(first, second)
    assert_apart_and_inside([first, second], *image.shape[:2])


def test_a_caption_goes_below_its_box_else_above_it():
    below, = draw.layout_captions([draw.Label((20, 120, 100, 20), "Ann 0.31", True)], 200, 300)
    assert (below.x, below.y) == (20, 100)
    above, = draw.layout_captions([draw.Label((120, 120, 195, 20), "Ann 0.31", True)], 200, 300)
    assert (above.x, above.y + above.h) == (20, 120)


def test_a_caption_with_no_room_below_or_above_moves_aside_next_to_its_box():
    labels = [draw.Label((5, 60, 45, 20), "alexander_lacamoire 0.41", True),  # its caption runs under both
              draw.Label((5, 120, 45, 80), "Unknown", False)]  # and no room above: top of the image
    first, second = draw.layout_captions(labels, 200, 300)
    assert (first.x, first.y) == (20, 45)
    assert not overlap(first, second)
    assert second.x == 120 and second.y < 45  # right beside its box, off the first face


def test_a_caption_avoids_covering_another_face():
    labels = [draw.Label((25, 60, 60, 20), "Ann 0.31", True), draw.Label((65, 60, 100, 20), "Bob 0.40", True)]
    first, second = draw.layout_captions(labels, 200, 300)
    assert first.y + first.h == 25  # above: below it would cover Bob's face
    assert (second.x, second.y) == (20, 100)


def test_with_no_room_left_a_caption_is_skipped_and_the_box_still_drawn():
    labels = [draw.Label((2, 17, 17, 2), "alexander_lacamoire 0.41", True),
              draw.Label((3, 195, 16, 180), "rose_leslie 0.42", False)]
    first, second = draw.layout_captions(labels, 20, 200)  # room for one line of one name only
    assert first and second is None
    image = draw.annotate(np.zeros((20, 200, 3), np.uint8), labels)
    assert (image[3, 180:196] == draw.UNKNOWN_BGR).all()  # the top edge of the second box


def test_small_faces_get_a_smaller_font_than_large_ones():
    labels = [draw.Label((10, 30, 30, 10), "Ann 0.31", True),
              draw.Label((300, 600, 600, 300), "Bob 0.40", True)]
    small, large = draw.layout_captions(labels, 2000, 2000)
    assert small.size == draw.MIN_FONT < large.size
    assert small.h < large.h
    assert [draw.font_sizes(face, 1000, 1000)[0] for face in (20, 60, 140)] == [10, 20, 45]
    assert draw.font_sizes(600, 2000, 2000)[0] == draw.MAX_FONT
    assert draw.font_sizes(200, 110, 220)[0] == 11  # no larger than the image allowed before


@st.composite
def pictures(draw_from) -> tuple[int, int, list[draw.Label]]:
    """An image size and labels with random boxes (often on an edge) and random names."""
    height, width = draw_from(st.integers(10, 400)), draw_from(st.integers(10, 400))
    rows, cols = st.integers(0, height - 1), st.integers(0, width - 1)
    labels = []
    for _ in range(draw_from(st.integers(0, 25))):
        top, bottom = sorted((draw_from(rows), draw_from(rows)))
        left, right = sorted((draw_from(cols), draw_from(cols)))
        text, known = draw_from(st.text(max_size=30)), draw_from(st.booleans())
        labels.append(draw.Label((top, right, bottom, left), text, known))
    return height, width, labels


@settings(max_examples=100, deadline=None)
@given(pictures())
@example((20, 20, [draw.Label((0, 19, 19, 0), "alexander_lacamoire 0.41", True),
                   draw.Label((5, 10, 10, 5), "Unknown", False)]))
@example((400, 30, [draw.Label((0, 29, 10, 0), "王小明 0.31", True)] * 12))
@example((60, 80, [draw.Label(box, "rose_leslie 0.42", True)  # the whole picture, then each corner
                   for box in [(0, 79, 59, 0), (0, 20, 20, 0), (0, 79, 20, 59), (39, 20, 59, 0),
                               (39, 79, 59, 59)]]))
def test_captions_never_overlap_nor_leave_the_image(picture):
    height, width, labels = picture
    captions = draw.layout_captions(labels, height, width)
    assert len(captions) == len(labels)
    assert_apart_and_inside(captions, height, width)
    assert not labels or captions[0]  # the first caption always finds a place
    draw.annotate(np.zeros((height, width, 3), np.uint8), labels)


# Exact drawing: box lines, and each caption as Pillow draws its text, PAD pixels in, on one baseline.

def edge_rows(image: np.ndarray, column: int, colour) -> list[int]:
    return np.where((image[:, column] == colour).all(axis=1))[0].tolist()


@pytest.mark.parametrize("height, width, rows", [
    (200, 300, [99, 100, 101]),  # thickness 2 (OpenCV draws it 3 rows wide)
    (625, 2000, [99, 100, 101]),  # 625 / 250 = 2.5, which rounds to 2
    (626, 2000, [98, 99, 100, 101, 102]),  # just over: thickness 3, from the short side (not the long one)
])
def test_box_lines_are_2_px_up_to_a_short_side_of_625_px_then_thicker(height, width, rows):
    image = draw.annotate(np.zeros((height, width, 3), np.uint8), [draw.Label((100, 250, 150, 50), "", False)])
    assert edge_rows(image, 120, draw.UNKNOWN_BGR)[:len(rows)] == rows  # the top edge, at row 100
    assert edge_rows(image, 120, draw.UNKNOWN_BGR)[len(rows)] > 140


def pillow_strip(pieces: list[tuple[str, bool]], size: int, fill) -> np.ndarray:
    """The caption an independent drawing gives: each run in its font, side by side on one baseline
    PAD pixels in, white on `fill`, the strip PAD pixels larger than the text all round."""
    from PIL import Image, ImageDraw

    fonts = [draw.font(size, wide) for _, wide in pieces]
    ascent = max(f.getmetrics()[0] for f in fonts)
    descent = max(f.getmetrics()[1] for f in fonts)
    width = int(sum(f.getlength(text) for (text, _), f in zip(pieces, fonts))) + 2 * draw.PAD
    canvas = Image.new("RGB", (width, ascent + descent + 2 * draw.PAD), fill)
    pen, x = ImageDraw.Draw(canvas), float(draw.PAD)
    for (text, _), f in zip(pieces, fonts):
        pen.text((x, draw.PAD + ascent), text, font=f, fill=draw.TEXT_BGR, anchor="ls")
        x += f.getlength(text)
    return np.asarray(canvas)


def test_each_caption_is_its_name_in_white_padded_on_a_strip_of_its_box_colour():
    labels = [draw.Label((20, 120, 100, 20), "Ann 0.31", True), draw.Label((20, 280, 100, 180), "Unknown", False)]
    image = draw.annotate(np.zeros((200, 300, 3), np.uint8), labels)
    for label, c, fill in zip(labels, draw.layout_captions(labels, 200, 300), (draw.KNOWN_BGR, draw.UNKNOWN_BGR)):
        assert (c.x, c.y) == (label.box[3], label.box[2])  # under its box
        expected = pillow_strip([(label.text, False)], c.size, fill)
        assert (c.h, c.w) == expected.shape[:2]
        np.testing.assert_array_equal(image[c.y:c.y + c.h, c.x:c.x + c.w], expected)


@pytest.mark.skipif(not Path(draw.WIDE_FONT_FILES[0]).exists(), reason="needs fonts-droid-fallback")
def test_a_mixed_script_caption_draws_its_runs_side_by_side_on_one_baseline():
    label = draw.Label((20, 220, 100, 20), "Zoë 王小明 0.31", True)
    image = draw.annotate(np.zeros((200, 300, 3), np.uint8), [label])
    [c] = draw.layout_captions([label], 200, 300)
    expected = pillow_strip([("Zoë ", False), ("王小明", True), (" 0.31", False)], c.size, draw.KNOWN_BGR)
    assert (c.h, c.w) == expected.shape[:2]
    np.testing.assert_array_equal(image[c.y:c.y + c.h, c.x:c.x + c.w], expected)


def test_a_name_on_several_lines_is_drawn_on_one():
    assert [piece for piece, _ in draw.runs("Ann\nLee\r\n0.31", 12)] == ["Ann Lee 0.31"]
    one, two = (draw.layout_captions([draw.Label((20, 120, 100, 20), text, True)], 200, 300)[0]
                for text in ("Ann\nLee", "Ann Lee"))
    assert one == two


def test_font_sizes_shrink_by_a_fifth_down_to_the_smallest():
    assert draw.font_sizes(140, 1000, 1000) == [45, 36, 28, 22, 17, 13, 10]  # capped by the image: 1000 / 22
    assert draw.font_sizes(3000, 5000, 5000) == [48, 38, 30, 24, 19, 15, 12, 10]  # MAX_FONT for a huge face
    assert draw.font_sizes(60, 100, 100) == [11, 10]  # a small image still allows 11
    assert draw.font_sizes(20, 1000, 1000) == [10]


@pytest.mark.parametrize("code, wide", [(0x2E7F, False), (0x2E80, True), (0x9FFF, True), (0xA000, False),
                                        (0xAC00, True), (0xD7FF, True), (0x2FA1F, True), (0x2FA20, False)])
def test_the_wide_script_ranges_include_both_ends(code, wide):
    assert draw.needs_wide_font(f"a{chr(code)}b") is wide


# _spot against a search of every position: the closest free strip to the face, as documented.

def searched_spot(own, w, h, obstacles, height, width, reach):
    """Below the face if free, else above it, else of all free positions within `reach` of the face, the
    nearest to it, then the nearest (in steps) to the spot below it, then the highest, then the leftmost."""
    left, top, face_w, face_h = own

    def free(x, y):
        return not any(x < ox + ow and ox < x + w and y < oy + oh and oy < y + h for ox, oy, ow, oh in obstacles)

    below = (min(max(0, left), width - w), top + face_h)
    for x, y in (below, (below[0], top - h)):
        if 0 <= y <= height - h and free(x, y):
            return x, y
    best = None
    for y in range(height - h + 1):
        for x in range(width - w + 1):
            gap = float(np.hypot(max(0, left - (x + w), x - (left + face_w)), max(0, top - (y + h), y - (top + face_h))))
            key = (gap, abs(x - below[0]) + abs(y - below[1]), y, x)
            if gap <= reach and free(x, y) and (best is None or key < best):
                best = key
    return None if best is None else (best[3], best[2])


@st.composite
def spot_problems(draw_from):
    height, width = draw_from(st.integers(4, 30)), draw_from(st.integers(4, 30))
    w, h = draw_from(st.integers(1, width)), draw_from(st.integers(1, height))

    def rect():
        x, y = draw_from(st.integers(-3, width)), draw_from(st.integers(-3, height))
        return (x, y, draw_from(st.integers(0, 12)), draw_from(st.integers(0, 12)))

    own = rect()
    obstacles = [rect() for _ in range(draw_from(st.integers(0, 6)))]
    if draw_from(st.booleans()):
        obstacles.append(own)
    reach = draw_from(st.sampled_from([0.0, 1.0, 2.5, 5.0, float("inf")]))
    return own, w, h, obstacles, height, width, reach


@settings(max_examples=300, deadline=None)
@given(spot_problems())
@example(((5, 0, 10, 4), 6, 3, [(0, 4, 30, 10), (5, 0, 10, 4)], 20, 30, float("inf")))  # below blocked, above out
@example(((10, 5, 6, 6), 4, 5, [(0, 11, 30, 10), (10, 5, 6, 6)], 30, 30, float("inf")))  # above, exactly at row 0
@example(((9, -3, 11, 8), 9, 14, [(21, 29, 7, 1), (22, 29, 12, 9), (24, -1, 5, 7), (-3, 9, 4, 11), (-3, 4, 4, 8),
                             (17, 15, 8, 6)], 30, 30, float("inf")))  # best just left of an obstacle
def test_spot_finds_the_free_place_a_search_of_every_position_finds(problem):
    own, w, h, obstacles, height, width, reach = problem
    assert draw._spot(own, w, h, obstacles, height, width, reach) == searched_spot(*problem)


def test_a_face_rect_is_left_top_width_height_and_never_negative():
    assert draw._face_rect((10, 50, 40, 20)) == (20, 10, 30, 30)
    assert draw._face_rect((10, 50, 10, 50)) == (50, 10, 0, 0)  # an empty box covers no pixel
    assert draw._face_rect((40, 20, 10, 50)) == (50, 40, 0, 0)  # nor does an inverted one


def test_a_wide_face_looks_as_far_as_its_width_for_a_place_off_the_other_faces():
    """A 100 x 10 face boxed in by faces 40 px deep: its caption goes under the face below it, 40 px down,
    which is within its width (not its height), rather than over that face."""
    labels = [draw.Label((100, 200, 110, 100), "Ann 0.31", True), draw.Label((110, 260, 150, 40), "x", True),
              draw.Label((60, 260, 100, 40), "y", True), draw.Label((100, 100, 110, 40), "z", True)]
    first = draw.layout_captions(labels, 300, 300)[0]
    assert (first.x, first.y) == (100, 150)


def test_crowded_captions_sit_exactly_gap_pixels_apart():
    long = draw.Label((5, 100, 45, 20), "alexander_lacamoire 0.41", True)
    [alone] = draw.layout_captions([long], 200, 300)
    start = alone.x + alone.w + draw.GAP  # a face starting GAP pixels right of that caption
    first, second = draw.layout_captions([long, draw.Label((5, start + 50, 45, start), "Bob", True)], 200, 300)
    assert first == alone and (second.x, second.y) == (start, 45)  # right below its face, beside the first
    side_by_side = [draw.Label((5, 75, 45, 0), "alexander_lacamoire 0.41", True),
                    draw.Label((5, 150, 45, 75), "Bob 0.40", True)]  # no room above, nor beside
    first, second = draw.layout_captions(side_by_side, 200, 150)
    assert (second.x, second.y) == (75, first.y + first.h + draw.GAP)  # GAP pixels under the first

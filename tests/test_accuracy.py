"""Small faces: the real server, with its defaults, names at least what the original demo names.

The sets are hard cases made from the shared photos (bench/face_sets.py): the photos shrunk
so that faces are 15-40 px, group mosaics of small faces, the mosaics under-exposed, and
faces cut tight. The original demo's recipe runs in this process with face_recognition.
"""

from __future__ import annotations

import pytest

from bench.bench_accuracy import compare, recipe_names, server_names
from bench.face_sets import SMALL_FACE_SETS, all_sets, make_gallery
from bench.recipes import DemoRecipe
from facewire.process import ServerProcess


@pytest.fixture(scope="module")
def outcomes(shared_faces, tmp_path_factory):
    folder = tmp_path_factory.mktemp("accuracy")
    gallery = make_gallery(folder / "gallery", shared_faces)
    sets = {name: cases for name, cases in all_sets(gallery, shared_faces).items() if name in SMALL_FACE_SETS}
    with ServerProcess(gallery, folder / "server.log", "--db", f"sqlite:///{folder / 'cache.db'}") as server:
        return compare(sets, {"facewire": server_names(server.address), "demo": recipe_names(DemoRecipe(gallery))})


@pytest.mark.slow
@pytest.mark.parametrize("name", SMALL_FACE_SETS)
def test_facewire_names_every_face_the_original_demo_names(outcomes, name):
    facewire, demo = outcomes[name]["facewire"], outcomes[name]["demo"]
    assert facewire.score.correct >= demo.score.correct
    assert facewire.score.wrong <= demo.score.wrong
    behind = [i for i, (mine, theirs) in enumerate(zip(facewire.right_per_case, demo.right_per_case)) if mine < theirs]
    assert behind == [], f"pictures where the demo names more faces right: {behind}"

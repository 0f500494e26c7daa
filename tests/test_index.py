"""FaceIndex (facewire.faces.index): exact and approximate search, changes, saving and memory-mapped loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facewire.faces import index as index_module
from facewire.faces.index import FaceIndex, IndexFolderError
from facewire.faces.matching import match_faces
from facewire.faces.settings import MatchSettings

APPROXIMATE = 500  # an exact limit that makes the test galleries approximate


def clustered(people: int, photos: int, probes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encodings like dlib's (norm about 1): `photos` perturbations of each person's centre, and fresh probes."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=128)
    centres = 0.7 * mean / np.linalg.norm(mean) + rng.normal(scale=0.056, size=(people, 128))
    owner = np.repeat(np.arange(people), photos)
    vectors = centres[owner] + rng.normal(scale=0.025, size=(len(owner), 128))
    probes = centres[rng.integers(0, people, probes)] + rng.normal(scale=0.025, size=(probes, 128))
    return vectors.astype(np.float32), owner, probes.astype(np.float32)


def gallery(n: int, seed: int = 0,
            exact_limit: int = index_module.EXACT_LIMIT) -> tuple[FaceIndex, np.ndarray, np.ndarray]:
    """An index of n clustered faces under shuffled ids (5 photos a person), with its ids and vectors."""
    vectors, owner, _ = clustered(max(1, n // 5), 5, 0, seed)
    vectors, owner = vectors[:n], owner[:n]
    ids = np.random.default_rng(seed).permutation(10 * n)[:n].astype(np.int64) + 1
    return FaceIndex.build(ids, [f"person{o}" for o in owner], vectors, exact_limit=exact_limit), ids, vectors


def reference(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in float64: each query's k nearest (distance, id), by distance then id, padded with (inf, -1)."""
    distances = np.linalg.norm(queries[:, None, :].astype(np.float64) - vectors[None, :, :], axis=2)
    found_d, found_i = np.full((len(queries), k), np.inf), np.full((len(queries), k), -1)
    for q, row in enumerate(distances):
        order = np.lexsort((ids, row))[:k]
        found_d[q, :len(order)], found_i[q, :len(order)] = row[order], ids[order]
    return found_d, found_i


# --- exact search -------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_bytes", [index_module.CHUNK_BYTES, 4 * 16 * 7])  # one block; blocks of 7 rows
@pytest.mark.parametrize("k", [1, 4, 25, 300])
def test_exact_search_equals_brute_force_with_ties_and_fewer_faces_than_k(monkeypatch, chunk_bytes, k):
    monkeypatch.setattr(index_module, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(k)
    vectors = rng.integers(-2, 3, size=(120, 128)) / 4.0  # quarters: float32 sums are exact, so ties are exact
    vectors[60:90] = vectors[:30]  # duplicates under other ids: exact ties
    vectors[90:] = vectors[0]  # many photos tied with one another, more than some k
    ids = rng.permutation(1000)[:120].astype(np.int64)
    queries = np.concatenate([vectors[:6], rng.integers(-2, 3, size=(10, 128)) / 4.0])  # 16 queries
    index = FaceIndex.build(ids[:110], ["x"] * 110, vectors[:110])
    index.add(ids[110:] - 1000, ["y"] * 10, vectors[110:])  # in the delta, tied with the base, with lower ids
    ids[110:] -= 1000
    distances, found = index.search(queries, k)
    expected_d, expected_i = reference(queries, ids, vectors, k)
    assert index.exact and distances.shape == found.shape == (16, k)
    np.testing.assert_array_equal(found, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6, atol=1e-6)


def test_an_index_of_fewer_faces_than_k_pads_with_infinite_distances_and_id_minus_one():
    index = FaceIndex.build(np.array([7, 3]), ["a", "b"], np.eye(2, 128))
    distances, found = index.search(np.zeros((1, 128)), 4)
    np.testing.assert_array_equal(found, [[3, 7, -1, -1]])
    np.testing.assert_allclose(distances, [[1, 1, np.inf, np.inf]])
    empty = FaceIndex.build(np.empty(0), [], np.empty((0, 128)))
    assert len(empty) == 0 and empty.search(np.zeros((2, 128)), 1)[1].tolist() == [[-1], [-1]]


def test_bad_shapes_and_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="unique"):
        FaceIndex.build(np.array([1, 1]), ["a", "b"], np.zeros((2, 128)))
    with pytest.raises(ValueError, match="128"):
        FaceIndex.build(np.array([1]), ["a"], np.zeros((1, 64)))
    with pytest.raises(ValueError, match="k >= 1"):
        FaceIndex.build(np.array([1]), ["a"], np.zeros((1, 128))).search(np.zeros((1, 128)), 0)


# --- approximate search -------------------------------------------------------------------------------

def test_approximate_search_finds_the_exact_nearest_photo_for_999_in_1000_probes():
    vectors, owner, probes = clustered(2_000, 10, 1_000)
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 5
    names = [f"p{o}" for o in owner]
    approximate = FaceIndex.build(ids, names, vectors, exact_limit=APPROXIMATE)
    exact = FaceIndex.build(ids, names, vectors)
    assert not approximate.exact and exact.exact
    truth = exact.search(probes, 1)[1][:, 0]
    assert (truth[:50] == reference(probes[:50], ids, vectors, 1)[1][:, 0]).all()
    distances, found = approximate.search(probes, 3)
    assert (found[:, 0] == truth).mean() >= 0.999
    assert (np.diff(distances, axis=1) >= 0).all() and (found >= 0).all()


# --- changes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_add_remove_and_re_add(exact_limit):
    index, ids, vectors = gallery(2_000, exact_limit=exact_limit)
    assert index.exact == (exact_limit > 2_000) and len(index) == 2_000
    new = vectors[:1] + 0.01  # nearer to photo 0's place than photo 0 itself, after it is gone
    index.add(np.array([99_999]), ["newcomer"], new)
    assert index.search(new, 1)[1][0, 0] == 99_999 and index.name_of(99_999) == "newcomer" and len(index) == 2_001
    index.remove([99_999])
    assert index.search(new, 1)[1][0, 0] == ids[0] and len(index) == 2_000  # a just-added face can go
    index.remove([ids[0]])
    assert ids[0] not in index.search(vectors[:1], 10)[1]
    index.add(np.array([ids[0]]), ["moved"], vectors[1:2] + 0.001)  # a removed id comes back, elsewhere
    distances, found = index.search(vectors[1:2] + 0.001, 2)
    assert found[0, 0] == ids[0] and distances[0, 0] < 1e-3 and index.name_of(int(ids[0])) == "moved"
    assert len(index) == 2_000 and index.pending == 2


@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_changes_that_cannot_apply_are_refused_whole(exact_limit):
    index, ids, vectors = gallery(1_000, exact_limit=exact_limit)
    with pytest.raises(ValueError, match="already present"):
        index.add(np.array([123_456, ids[5]]), ["a", "b"], vectors[:2])
    with pytest.raises(ValueError, match="repeated"):
        index.add(np.array([123_456, 123_456]), ["a", "b"], vectors[:2])
    with pytest.raises(KeyError):
        index.remove([ids[1], 123_456])
    with pytest.raises(KeyError):
        index.remove([ids[1], ids[1]])
    assert len(index) == 1_000 and index.search(vectors[1:2], 1)[1][0, 0] == ids[1]  # nothing changed
    index.remove([ids[1]])
    with pytest.raises(KeyError):
        index.remove([ids[1]])  # twice
    with pytest.raises(KeyError):
        index.name_of(int(ids[1]))


@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_removed_faces_are_never_returned_and_the_rest_stay_exact(exact_limit):
    index, ids, vectors = gallery(3_000, seed=1, exact_limit=exact_limit)
    gone = np.zeros(3_000, bool)
    gone[np.random.default_rng(1).choice(3_000, 1_500, replace=False)] = True
    index.remove(ids[gone][:700])
    index.add(np.array([77_777]), ["late"], vectors[:1] + 0.01)
    index.remove(ids[gone][700:])
    queries = vectors[gone][:100]  # each the exact place of a removed photo
    distances, found = index.search(queries, 30)
    assert not np.isin(found, ids[gone]).any() and len(index) == 1_501
    live_ids, live = np.append(ids[~gone], 77_777), np.concatenate([vectors[~gone], vectors[:1] + 0.01])
    expected_d, expected_i = reference(queries, live_ids, live, 30)
    agree = found == expected_i
    if index.exact:
        assert agree.all()
    else:  # the neighbours a knn vote can count (within any tolerance up to 0.6) are right; farther ones, all
        near = expected_d < 0.6  # about equally far, may come in another order
        assert near.sum() > 100 and agree[near].mean() >= 0.99 and agree[:, 0].all()
    np.testing.assert_allclose(distances[agree], expected_d[agree], atol=1e-3)


@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_a_persons_vectors_are_their_faces_present_in_the_base_and_added_since(exact_limit):
    index, ids, vectors = gallery(1_000, exact_limit=exact_limit)
    mine = np.flatnonzero(np.arange(1_000) // 5 == 7)  # person7's five photos
    by_id = mine[np.argsort(ids[mine])]  # the base keeps its faces in id order
    np.testing.assert_array_equal(index.vectors_of("person7"), vectors[by_id])
    index.remove([ids[by_id[0]]])
    index.add(np.array([55_555, 55_556]), ["person7", "newcomer"], vectors[:2] + 0.5)
    found = index.vectors_of("person7")
    assert found.dtype == np.float32
    np.testing.assert_array_equal(found, np.concatenate([vectors[by_id[1:]], vectors[:1] + 0.5]))
    index.remove([55_556])
    assert index.vectors_of("newcomer").shape == (0, 128) and index.vectors_of("nobody").shape == (0, 128)


def test_added_faces_stay_findable_whatever_order_they_are_removed_in():
    index, ids, vectors = gallery(200)
    new = vectors[:20] + 0.003
    index.add(np.arange(20) + 10_000, [f"new{i}" for i in range(20)], new)
    for photo_id in [10_005, 10_000, 10_019, 10_007]:  # the first, the last and middle ones of the delta
        index.remove([photo_id])
    left = [i for i in range(20) if i + 10_000 not in (10_005, 10_000, 10_019, 10_007)]
    assert index.search(new[left], 1)[1][:, 0].tolist() == [i + 10_000 for i in left]
    assert [index.name_of(i + 10_000) for i in left] == [f"new{i}" for i in left]
    index.remove([10_001, 10_018])  # ids that moved inside the delta can still be removed
    assert 10_001 not in index.search(new[1:2], 5)[1] and len(index) == 214


# --- saving and loading -------------------------------------------------------------------------------

@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_save_and_load_give_the_same_answers(tmp_path, exact_limit):
    index, ids, vectors = gallery(2_000, exact_limit=exact_limit)
    queries = vectors[::40] + 0.01
    index.save(tmp_path / "v1", sequence=41)
    loaded = FaceIndex.load(tmp_path / "v1")
    assert loaded.sequence == 41 and len(loaded) == 2_000 and loaded.exact == index.exact
    for a, b in zip(loaded.search(queries, 5), index.search(queries, 5)):
        np.testing.assert_array_equal(a, b)
    assert loaded.names_of(index.search(queries, 5)[1]) == index.names_of(index.search(queries, 5)[1])
    header = json.loads((tmp_path / "v1" / "header.json").read_text())
    library = "faiss-cpu " if exact_limit == APPROXIMATE else "numpy "
    assert header["count"] == 2_000 and header["library"].startswith(library)
    assert list(tmp_path.iterdir()) == [tmp_path / "v1"]  # no temporary folder left behind


@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_saving_after_changes_merges_them(tmp_path, exact_limit):
    index, ids, vectors = gallery(1_000, exact_limit=exact_limit)
    index.remove(ids[:10])
    index.add(np.array([5_000_000]), ["late"], vectors[:1])
    index.save(tmp_path / "v2", sequence="abc")
    loaded = FaceIndex.load(tmp_path / "v2")
    assert len(loaded) == 991 and loaded.pending == 0 and loaded.sequence == "abc" and loaded.exact == index.exact
    assert loaded.search(vectors[:1], 1)[1][0, 0] == 5_000_000 and loaded.name_of(5_000_000) == "late"
    assert not np.isin(loaded.search(vectors[:10], 20)[1], ids[:10]).any()
    with pytest.raises(FileExistsError, match="v2"):
        index.save(tmp_path / "v2")


def test_a_failed_save_leaves_no_folder(tmp_path, monkeypatch):
    index, _, _ = gallery(100)

    def fail(path, array, allow_pickle):  # the disk fills up after the first array
        if "ids" not in str(path):
            raise OSError("No space left on device")
        Path(path).write_bytes(b"partial")

    monkeypatch.setattr(index_module.np, "save", fail)
    with pytest.raises(OSError, match="No space"):
        index.save(tmp_path / "full")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_load_memory_maps_the_files_so_processes_share_them(tmp_path, exact_limit):
    index, _, _ = gallery(2_000, exact_limit=exact_limit)
    index.save(tmp_path / "mapped")
    loaded = FaceIndex.load(tmp_path / "mapped")
    loaded.search(np.zeros((1, 128)), 1)
    mapped = Path("/proc/self/maps").read_text()
    for name in ("vectors.npy", "norms.npy", "ids.npy", "labels.npy"):  # approximate: vectors re-rank the shortlist
        assert str(tmp_path / "mapped" / name) in mapped


def test_names_survive_any_script(tmp_path):
    names = ["Grace Hopper", "Алан Тьюринг", "李白", "O'Brien \"Ed\""]
    index = FaceIndex.build(np.arange(4), names, np.eye(4, 128))
    index.save(tmp_path / "names")
    assert FaceIndex.load(tmp_path / "names").names_of(np.arange(4)[None]) == [names]


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "header.json").write_text("{not json"), "header.json: cannot be read"),
    (lambda f: (f / "header.json").unlink(), "header.json: cannot be read"),
    (lambda f: (f / "header.json").write_text(json.dumps({"format": "other"})), "header.json: not a facewire"),
    (lambda f: (f / "vectors.npy").unlink(), "vectors.npy: missing"),
    (lambda f: (f / "ids.npy").write_bytes((f / "ids.npy").read_bytes()[:-8]), "ids.npy: missing or not the"),
    (lambda f: (f / "base.faiss").write_bytes(b"\0" * (f / "base.faiss").stat().st_size), "base.faiss: not a faiss"),
    (lambda f: (f / "names.json").write_text(json.dumps(["a"]).ljust((f / "names.json").stat().st_size)),
     "names.json: does not name"),
])
def test_a_corrupt_folder_raises_an_error_naming_the_path(tmp_path, damage, message):
    index, _, _ = gallery(1_000, exact_limit=APPROXIMATE)
    index.save(tmp_path / "bad")
    damage(tmp_path / "bad")
    file, says = message.split(":")
    with pytest.raises(IndexFolderError, match=f"{tmp_path / 'bad' / file}:{says}"):
        FaceIndex.load(tmp_path / "bad")


def test_a_foreign_array_file_is_refused(tmp_path):
    index, _, _ = gallery(100)
    index.save(tmp_path / "foreign")
    header_path = tmp_path / "foreign" / "header.json"
    np.save(tmp_path / "foreign" / "ids.npy", np.arange(100, dtype=np.float64))  # same size, wrong dtype
    header = json.loads(header_path.read_text())
    header["files"]["ids.npy"] = (tmp_path / "foreign" / "ids.npy").stat().st_size
    header_path.write_text(json.dumps(header))
    with pytest.raises(IndexFolderError, match=r"ids\.npy: float64 x 100, expected int64 x 100"):
        FaceIndex.load(tmp_path / "foreign")


# --- matching -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_a_knn_vote_over_an_index_outvotes_an_odd_nearest_photo(exact_limit):
    vectors = np.random.default_rng(5).normal(size=(504, 128)).astype(np.float32)  # 500 strangers, far away
    vectors[:4] = 0.0
    vectors[0, 0] = 0.30  # bob's one photo is the nearest...
    vectors[[1, 2, 3], [1, 2, 3]] = 0.32  # ...but ann has three nearly as near
    names = ["bob", "ann", "ann", "ann"] + [f"stranger{i}" for i in range(500)]
    index = FaceIndex.build(np.arange(504), names, vectors, exact_limit=exact_limit)
    assert index.exact == (exact_limit > 504)
    probe = np.zeros((1, 128), np.float32)
    for settings, expected in [(MatchSettings(0.6), "bob"), (MatchSettings(0.6, "knn"), "ann"),  # default k: 22
                               (MatchSettings(0.6, "knn", 4), "ann"), (MatchSettings(0.6, "knn", 1), "bob")]:
        assert match_faces(probe, index, None, settings)[0].name == expected
        assert match_faces(probe, vectors, names, settings)[0].name == expected

@pytest.mark.parametrize("settings", [MatchSettings(0.6), MatchSettings(0.45), MatchSettings(0.6, "knn"),
                                      MatchSettings(0.6, "knn", 5), MatchSettings(0.35, "knn", 3)])
@pytest.mark.parametrize("exact_limit", [index_module.EXACT_LIMIT, APPROXIMATE])
def test_match_faces_names_the_same_with_an_index_as_with_arrays(settings, exact_limit):
    vectors, owner, probes = clustered(300, 4, 60, seed=3)
    probes = np.concatenate([probes, np.full((2, 128), 3.0, np.float32)])  # two strangers: Unknown
    names = [f"person{o}" for o in owner]
    index = FaceIndex.build(np.arange(len(vectors)) + 10, names, vectors, exact_limit=exact_limit)
    with_index = match_faces(probes, index, None, settings)
    with_arrays = match_faces(probes, vectors, names, settings)
    assert [m.name for m in with_index] == [m.name for m in with_arrays]
    np.testing.assert_allclose([m.distance for m in with_index], [m.distance for m in with_arrays], atol=1e-4)
    assert with_index[-1].name == "Unknown"
    assert len({m.name for m in with_index}) > (20 if settings.tolerance > 0.4 else 2)

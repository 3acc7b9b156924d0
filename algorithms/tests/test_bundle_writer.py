"""``write_bundle`` never stores values that would score differently (issue 12): a float16 cast
that overflows or merges distinct values is refused with a message suggesting float32; one that
keeps the ranking is written and scores the same."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from algorithms.bundle import BundleWriteError, write_bundle

N = 6


def _categories(maps, scores=None) -> dict:
    ids = [f"test/img_{i:02d}.png" for i in range(N)]
    if scores is None:
        scores = np.linspace(0.0, 1.0, N, dtype=np.float32)
    return {"synthetic/woven": {"ids": ids, "scores": scores, "maps": maps}}


def _refused(tmp_path, maps, *, dtype="float16", scores=None, match) -> str:
    out = tmp_path / "b.zip"
    with pytest.raises(BundleWriteError, match=match) as info:
        write_bundle(out, method="m", suite="synthetic", partial=True, categories=_categories(maps, scores),
                     dtype=dtype)  # fmt: skip
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, no temporary left
    return str(info.value)


def _stored(path, member="maps.npy") -> np.ndarray:
    with zipfile.ZipFile(path) as zf, zf.open(f"synthetic/woven/{member}") as fp:
        return np.lib.format.read_array(fp)


def test_float16_overflow_is_refused_suggesting_float32(tmp_path):
    rng = np.random.default_rng(0)
    maps = (rng.random((N, 64, 64)) * 1e5).astype(np.float32)  # issue 12: up to 1e5
    message = _refused(tmp_path, maps, match="overflows float16")
    with np.errstate(over="ignore"):
        n_over = int(np.isinf(maps.astype(np.float16)).sum())
    assert n_over > 0 and f"{n_over:,} values would become infinite" in message and "float32" in message


def test_float16_collapse_of_3000_plus_uniform_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    maps = (3000 + rng.random((N, 64, 64))).astype(np.float32)  # issue 12: 3000 + U(0, 1)
    message = _refused(tmp_path, maps, match="float16 would merge")
    before = len(np.unique(maps))
    after = len(np.unique(maps.astype(np.float16)))
    assert f"merge {before:,} distinct values into {after:,}" in message
    assert "changing their ranking" in message and "dtype='float32'" in message
    # float32 (or None: the input is float32) keeps every value
    path = write_bundle(tmp_path / "ok.zip", method="m", suite="synthetic", partial=True, categories=_categories(maps))
    np.testing.assert_array_equal(_stored(path), maps)


def test_one_merged_pair_among_exact_values_is_found(tmp_path):
    maps = np.zeros((N, 64, 64), np.float32)
    maps.flat[: 2000] = np.arange(2000, dtype=np.float32)  # exact in float16 (integers up to 2048)
    maps.flat[5000] = np.float32(1000.25)  # rounds to 1000.0: merges with an existing value
    message = _refused(tmp_path, maps, match="merge 2,001 distinct values into 2,000")
    assert "1000.25 and" in message or "and 1000.25" in message


def test_rounding_that_keeps_the_ranking_is_accepted_and_scores_the_same(tmp_path):
    from evaluation.metrics import evaluate, to_protocol

    rng = np.random.default_rng(1)
    side = 256  # the evaluation size: no resize, so rank-based metrics see exactly the stored ranking
    grid = np.arange(1, 2049, dtype=np.float32) / 2048  # distinct float16 values in (0, 1]
    # move each level by less than half of float16's step there: no longer exact, yet every level
    # keeps its own float16 value, so the cast keeps the ranking (and the ties) of the pixels
    step = np.spacing(grid.astype(np.float16)).astype(np.float32)
    levels = grid + step * rng.uniform(-0.4, 0.4, size=grid.shape).astype(np.float32)
    maps = rng.choice(levels, size=(N, side, side)).astype(np.float32)
    assert not np.array_equal(maps.astype(np.float16).astype(np.float32), maps)  # lossy, order kept
    path = write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", partial=True, categories=_categories(maps),
                        dtype="float16")  # fmt: skip
    stored = _stored(path)
    assert stored.dtype == np.float16
    masks = np.zeros((N, side, side), np.uint8)
    masks[:, 100:140, 60:90] = 1
    masks[:, 10:12, 200:230] = 1
    labels = np.ones(N, np.uint8)
    labels[0] = 0
    masks[0] = 0
    scores = np.linspace(0, 1, N)
    expected = evaluate(*to_protocol(masks, maps), labels, scores)
    assert evaluate(*to_protocol(masks, stored), labels, scores) == expected


def test_values_already_in_float16_and_existing_ties_are_accepted(tmp_path):
    rng = np.random.default_rng(2)
    exact = rng.random((N, 64, 64)).astype(np.float16).astype(np.float32)
    path = write_bundle(tmp_path / "a.zip", method="m", suite="synthetic", partial=True, categories=_categories(exact),
                        dtype="float16")  # fmt: skip
    np.testing.assert_array_equal(_stored(path).astype(np.float32), exact)
    tied = np.full((N, 64, 64), 0.1, np.float32)  # 0.1 is not a float16, but equal values stay equal
    tied[:, :10] = 0.7
    write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", partial=True, categories=_categories(tied),
                 dtype="float16")  # fmt: skip


def test_uniform_float32_maps_do_not_fit_float16(tmp_path):
    # 24,576 draws from U(0, 1) in float32 hold ~24,500 distinct values; float16 has 2,048 per octave
    maps = np.random.default_rng(3).random((N, 64, 64), dtype=np.float32)
    _refused(tmp_path, maps, match="float16 would merge")


def test_scores_are_checked_too(tmp_path):
    maps = np.zeros((N, 64, 64), np.float16)
    scores = (3000 + np.arange(N) * 0.1).astype(np.float32)  # float16 steps are 2 at 3000
    _refused(tmp_path, maps, scores=scores, match="scores: float16 would merge 6 distinct values into 1")
    fine = 3000 + np.arange(N) * 1e-9  # float64 scores float32 cannot tell apart
    message = _refused(tmp_path, maps, dtype=None, scores=fine, match="scores: float32 would merge")
    assert "subtract their minimum" in message


def test_float64_maps_are_cast_to_float32_the_evaluators_precision(tmp_path):
    # maps are evaluated in float32 (evaluation.metrics.to_protocol), so this cast changes no metric
    maps = 3000 + np.random.default_rng(4).random((N, 64, 64)) * 1e-6
    path = write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", partial=True, categories=_categories(maps))
    np.testing.assert_array_equal(_stored(path), maps.astype(np.float32))


def test_writer_translates_file_names_through_the_published_id_table(tmp_path):
    """Format 2: the runner's file-name ids become the server's opaque ids (``id_tables``)."""
    import json
    import zipfile

    from algorithms.bundle import BundleWriteError, load_id_tables, write_bundle
    from algorithms.data import opaque_id_table

    files = ["test/good/000.png", "test/crack/000.png"]
    table = opaque_id_table("k", "synthetic/woven", files)  # {id: file}, as GET .../test-files answers
    answer = tmp_path / "files.json"
    answer.write_text(json.dumps({"category": "synthetic/woven", "count": 2, "files": table}))
    tables = load_id_tables(answer)
    assert tables == {"synthetic/woven": table}
    entry = {"ids": files, "scores": np.array([0.1, 0.9]), "maps": np.zeros((2, 64, 64), np.float32)}
    path = write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", categories={"synthetic/woven": entry},
                        id_tables=tables, partial=True)  # fmt: skip
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["format_version"] == 2
        written = zf.read("synthetic/woven/ids.txt").decode().split()
    by_file = {f: i for i, f in table.items()}
    assert written == [by_file[f] for f in files] and all("/" not in i for i in written)
    with pytest.raises(BundleWriteError, match="neither a file name nor an id"):
        write_bundle(tmp_path / "c.zip", method="m", suite="synthetic",
                     categories={"synthetic/woven": {**entry, "ids": ["test/good/000.png", "other.png"]}},
                     id_tables=tables, partial=True)  # fmt: skip
    with pytest.raises(BundleWriteError, match="format_version=1"):
        write_bundle(tmp_path / "d.zip", method="m", suite="synthetic", categories={"synthetic/woven": entry},
                     id_tables=tables, format_version=1, partial=True)  # fmt: skip


def test_cli_bundle_with_id_tables_writes_the_published_ids(tmp_path, capsys):
    """``python -m algorithms bundle --id-table``: the runner's predictions (file-name ids) -> format 2."""
    import json
    import zipfile

    from algorithms.bundle import main
    from algorithms.data import list_categories, opaque_id_table

    files = ["test/good/000.png", "test/hole/000.png"]
    answers = []
    for key in list_categories("synthetic"):
        out = tmp_path / "run" / key
        out.mkdir(parents=True)
        np.savez(out / "predictions.npz", ids=np.array(files), scores=np.array([0.1, 0.9], np.float32),
                 map__anomaly_map=np.zeros((2, 64, 64), np.float32))  # fmt: skip
        answers.append({"category": key, "count": 2, "files": opaque_id_table("k", key, files)})
    (tmp_path / "ids.json").write_text(json.dumps(answers))
    code = main(["--predictions", str(tmp_path / "run"), "--method", "m", "--suite", "synthetic",
                 "--out", str(tmp_path / "b.zip"), "--id-table", str(tmp_path / "ids.json")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        assert json.loads(zf.read("manifest.json"))["format_version"] == 2
        written = zf.read("synthetic/woven/ids.txt").decode().split()
    woven = next(a for a in answers if a["category"] == "synthetic/woven")
    by_file = {f: i for i, f in woven["files"].items()}
    assert written == [by_file[f] for f in files]

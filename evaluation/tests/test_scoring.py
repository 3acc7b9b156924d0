"""Scoring a validated bundle gives exactly ``evaluation.metrics.evaluate`` on the same arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.bundles import BundleLimits, BundleReader
from evaluation.metrics import EVAL_SIZE, evaluate, to_protocol
from evaluation.scoring import maps_to_protocol_in_batches, score_arrays, score_bundle, suspicion_check
from evaluation.tests.bundle_corpus import Spec, write_valid


@dataclass
class GT:
    ids: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def _ground_truth(n: int, seed: int) -> GT:
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.uint8)
    labels[n // 2 :] = 1
    masks = np.zeros((n, EVAL_SIZE, EVAL_SIZE), dtype=np.uint8)
    for i in np.flatnonzero(labels):
        for _ in range(int(rng.integers(1, 3))):
            y, x = rng.integers(10, EVAL_SIZE - 60, size=2)
            h, w = rng.integers(8, 50, size=2)
            masks[i, y : y + h, x : x + w] = 1
    ids = np.array([f"test/{'bad' if labels[i] else 'good'}/{i:03d}.png" for i in range(n)])
    return GT(ids, labels, masks)


def _prediction(gt: GT, size: tuple[int, int], dtype, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy detector: maps correlate with the masks, scores with the labels."""
    import cv2

    rng = np.random.default_rng(seed)
    maps = np.stack(
        [cv2.resize(m.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for m in gt.masks]
    )
    maps = (0.6 * maps + rng.random(maps.shape)).astype(dtype)
    scores = (gt.labels * 0.5 + rng.random(len(gt.labels))).astype(np.float32)
    return scores, maps


SIZES = [((64, 64), np.float16), ((100, 80), np.float32), ((256, 256), np.float16), ((320, 300), np.float32)]


@pytest.mark.parametrize(("size", "dtype"), SIZES, ids=[f"{s[0]}x{s[1]}-{np.dtype(d).name}" for s, d in SIZES])
def test_score_bundle_equals_evaluate_on_the_same_arrays(tmp_path, size, dtype):
    gts = {"synthetic/aa": _ground_truth(12, seed=1), "synthetic/bb": _ground_truth(9, seed=2)}
    spec = Spec(suite="synthetic", ids={key: gt.ids.tolist() for key, gt in gts.items()}, map_size=size)
    categories, expected = {}, {}
    rng = np.random.default_rng(3)
    for n, (key, gt) in enumerate(gts.items()):
        scores, maps = _prediction(gt, size, dtype, seed=n)
        masks256, maps256 = to_protocol(gt.masks, maps)
        expected[key] = evaluate(masks256, maps256, gt.labels, scores)
        order = rng.permutation(len(gt.ids))  # the bundle lists rows in its own order
        categories[key] = {"ids": gt.ids[order].tolist(), "scores": scores[order], "maps": maps[order]}
    path = write_valid(tmp_path / "b.zip", spec, categories)
    # small chunks: maps stream in several batches and are resized batch by batch
    with BundleReader(path, limits=BundleLimits(chunk_bytes=5 * size[0] * size[1] * 4)) as reader:
        reader.validate(suite="synthetic", expected_ids={key: gt.ids.tolist() for key, gt in gts.items()})
        calls = []
        got = score_bundle(reader, gts, progress=lambda done, total, key: calls.append((done, total, key)))
    assert got == {k: {m: min(1.0, v) for m, v in values.items()} for k, values in expected.items()}  # exact
    assert calls == [(1, 2, "synthetic/aa"), (2, 2, "synthetic/bb")]
    for key, gt in gts.items():
        scores = categories[key]["scores"][np.argsort([list(gt.ids).index(i) for i in categories[key]["ids"]])]
        assert got[key]["image_auroc"] == pytest.approx(roc_auc_score(gt.labels, scores), abs=1e-12)
        assert set(got[key]) == {"image_auroc", "pixel_auroc", "aupro", "pl"}


def test_score_arrays_matches_evaluate():
    gt = _ground_truth(10, seed=5)
    scores, maps = _prediction(gt, (128, 128), np.float32, seed=0)
    masks256, maps256 = to_protocol(gt.masks, maps)
    assert score_arrays(ground_truth=gt, scores=scores, maps=maps) == evaluate(masks256, maps256, gt.labels, scores)
    pixel = roc_auc_score(masks256.ravel(), maps256.ravel())
    assert score_arrays(ground_truth=gt, scores=scores, maps=maps)["pixel_auroc"] == pytest.approx(pixel, abs=1e-9)


def test_maps_to_protocol_requires_each_position_once():
    maps = np.zeros((2, 64, 64), np.float32)
    with pytest.raises(ValueError, match=r"^a map position was given twice$"):
        maps_to_protocol_in_batches([(np.array([0, 1]), maps), (np.array([1, 2]), maps)], n_images=4)
    with pytest.raises(ValueError, match="for 2 of 4 images"):
        maps_to_protocol_in_batches([(np.array([0, 1]), maps)], n_images=4)


def test_suspicion_check_flags_maps_that_are_the_masks():
    gts = {f"synthetic/c{i}": _ground_truth(10, seed=i) for i in range(4)}
    honest, copied = {}, {}
    for i, (key, gt) in enumerate(gts.items()):
        scores, maps = _prediction(gt, (64, 64), np.float32, seed=i)
        honest[key] = score_arrays(ground_truth=gt, scores=scores, maps=maps)
        labels, masks = gt.labels.astype(np.float32), gt.masks.astype(np.float32)
        copied[key] = score_arrays(ground_truth=gt, scores=labels, maps=masks)
        assert copied[key]["aupro"] == 1.0  # clipped back from 1 + 1e-14 rounding
    assert not suspicion_check(honest).flagged
    report = suspicion_check(copied)
    assert report.flagged and report.categories == sorted(gts)
    assert "match the ground truth too well" in report.reason
    # exactly half is not "most"
    half = {**copied, **{k: honest[k] for k in list(gts)[:2]}}
    assert not suspicion_check(half).flagged
    assert not suspicion_check({}).flagged


# Finite maps near the float32 limits: whatever validation accepts is scored ---------------------------

F32_MAX = np.finfo(np.float32).max


def test_to_protocol_resizes_finite_maps_near_the_float32_limits():
    """Bilinear sums of +-3.4e38 overflow in float32; those images are resized in float64 instead."""
    import cv2

    rng = np.random.default_rng(0)
    maps = rng.choice(np.array([F32_MAX, -F32_MAX, 3e38, 0.0], dtype=np.float32), size=(3, 64, 80))
    masks = np.zeros((3, EVAL_SIZE, EVAL_SIZE), dtype=np.uint8)
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(cv2.resize(maps[0], (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_LINEAR)).all()
    _, resized = to_protocol(masks, maps)
    assert resized.dtype == np.float32 and np.isfinite(resized).all()
    expected = np.stack([cv2.resize(m.astype(np.float64), (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_LINEAR)
                         for m in maps]).astype(np.float32)  # fmt: skip
    np.testing.assert_array_equal(resized, expected)
    assert resized.max() <= F32_MAX and resized.min() >= -F32_MAX


def test_to_protocol_is_unchanged_for_ordinary_maps():
    """The float64 path is taken only where float32 overflowed: ordinary maps resize bit for bit as before."""
    import cv2

    maps = np.random.default_rng(1).random((4, 100, 72)).astype(np.float32) * 1e6
    _, resized = to_protocol(np.zeros((4, EVAL_SIZE, EVAL_SIZE), np.uint8), maps)
    for i in range(4):
        plain = cv2.resize(maps[i], (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(resized[i], plain)


def test_pl_thresholds_between_the_float32_limits_are_their_true_percentiles():
    """numpy's float32 percentile of {-max, +max} is -inf (max - (-max) overflows); ours is 0, the true value."""
    from evaluation.metrics.localisation import _thresholds

    pool = np.sort(np.array([-F32_MAX] * 50 + [F32_MAX] * 50, dtype=np.float32))
    with np.errstate(over="ignore"):
        assert np.percentile(pool, 50) == -np.inf
    thresholds = _thresholds(pool, [(0, pool.size)])
    assert np.isfinite(thresholds).all()
    median = int(np.argmin(np.abs(np.linspace(0, 100, 27)[1:-1] - 50)))
    assert thresholds[median] == 0.0
    # elsewhere the thresholds are numpy's, bit for bit
    ordinary = np.sort(np.random.default_rng(2).random(1000).astype(np.float32))
    np.testing.assert_array_equal(_thresholds(ordinary, [(0, 1000)]),
                                  np.percentile(ordinary, np.linspace(0, 100, 27)[1:-1]))  # fmt: skip


@pytest.mark.parametrize("palette", ["limits", "signal_at_limits", "subnormal", "float16_limits"])
def test_score_arrays_scores_any_finite_maps(palette):
    gt = _ground_truth(8, seed=3)
    rng = np.random.default_rng(4)
    if palette == "limits":
        maps = rng.choice(np.array([F32_MAX, -F32_MAX, 0.0], np.float32), size=(8, 64, 64))
    elif palette == "signal_at_limits":  # a perfect detector whose values sit at the limits
        maps = np.where(gt.masks[:, ::4, ::4] > 0, F32_MAX, -F32_MAX).astype(np.float32)
    elif palette == "subnormal":
        maps = (rng.random((8, 64, 64)) * 1e-44).astype(np.float32)
    else:
        maps = rng.choice(np.array([65504, -65504, 0], np.float16), size=(8, 64, 64))
    scores = rng.choice(np.array([F32_MAX, -F32_MAX, 1.0], np.float32), size=8)
    values = score_arrays(ground_truth=gt, scores=scores, maps=maps)
    assert set(values) == {"image_auroc", "pixel_auroc", "aupro", "pl"}
    assert all(0.0 <= value <= 1.0 for value in values.values()), values
    if palette == "signal_at_limits":
        assert values["pixel_auroc"] > 0.99 and values["aupro"] > 0.9


# The suspicion rule, criterion by criterion ------------------------------------------------------

LOOKS_LIKE_MASKS = [  # (pixel AUROC, AUPRO, PL) -> does the category look like ground truth?
    ((1.0, 1.0, 1.0), True),
    ((0.9995, 0.9995, 0.2), True),  # pixel AUROC and AUPRO both above 0.999
    ((0.9995, 0.5, 1.0), True),  # the PL criterion alone: pixel AUROC above 0.999 and PL = 1
    ((0.9995, 0.999, 1.0), True),
    ((0.9995, 0.999, 0.9999), False),  # AUPRO not *above* 0.999, PL below 1
    ((0.999, 1.0, 1.0), False),  # pixel AUROC must be *above* 0.999
    ((0.98, 1.0, 1.0), False),
    ((1.0, 0.5, 0.99), False),
]


@pytest.mark.parametrize(("values", "suspicious"), LOOKS_LIKE_MASKS, ids=[str(v) for v, _ in LOOKS_LIKE_MASKS])
def test_suspicion_criteria_one_category_at_a_time(values, suspicious):
    p_auc, pro, pl = values
    results = {"mvtec/a": {"image_auroc": 0.9, "pixel_auroc": p_auc, "aupro": pro, "pl": pl}}
    report = suspicion_check(results)
    assert report.flagged is suspicious
    assert report.categories == (["mvtec/a"] if suspicious else [])
    if suspicious:
        assert report.reason == (
            "1 of 1 categories have pixel AUROC > 0.999 and AUPRO > 0.999 or PL >= 1.0: "
            "the maps match the ground truth too well"
        )
    else:
        assert report.reason == ""


def test_suspicion_fraction_counts_strictly_more_than_half_and_lists_hits_sorted():
    masks_like = {"pixel_auroc": 1.0, "aupro": 0.2, "pl": 1.0}  # flagged through PL alone
    honest = {"pixel_auroc": 0.97, "aupro": 0.9, "pl": 0.7}
    results = {"visa/z": masks_like, "mvtec/b": masks_like, "mvtec/a": honest, "visa/c": masks_like}
    report = suspicion_check(results)
    assert report == suspicion_check(dict(reversed(list(results.items()))))
    assert report.flagged is True and report.categories == ["mvtec/b", "visa/c", "visa/z"]
    assert report.reason.startswith("3 of 4 categories have pixel AUROC > 0.999")
    half = suspicion_check({"mvtec/a": honest, "mvtec/b": masks_like})
    assert half.flagged is False and half.categories == ["mvtec/b"] and half.reason == ""
    # the limits are parameters
    strict = suspicion_check({"mvtec/b": masks_like}, pl_at_least=1.01)
    assert strict.flagged is False and strict.categories == []
    lenient = suspicion_check({"mvtec/a": honest}, pixel_auroc_above=0.9, aupro_above=0.95, pl_at_least=0.7)
    assert lenient.flagged is True and lenient.categories == ["mvtec/a"]
    assert "PL >= 0.7" in lenient.reason and "AUPRO > 0.95" in lenient.reason
    assert suspicion_check({"mvtec/a": honest, "mvtec/b": masks_like}, fraction=0.4).flagged is True


def test_suspicion_missing_values_count_as_zero():
    assert suspicion_check({"mvtec/a": {"aupro": 1.0, "pl": 1.0}}).categories == []  # no pixel AUROC
    assert suspicion_check({"mvtec/a": {"pixel_auroc": 1.0}}).categories == []  # neither AUPRO nor PL
    assert suspicion_check({"mvtec/a": {"pixel_auroc": 1.0, "pl": 1.0}}).categories == ["mvtec/a"]
    assert suspicion_check({"mvtec/a": {"pixel_auroc": 1.0, "aupro": 1.0}}).categories == ["mvtec/a"]
    empty = suspicion_check({})
    assert empty.flagged is False and empty.categories == [] and empty.reason == ""


def test_maps_to_protocol_in_batches_is_float32_in_position_order():
    from evaluation.metrics import maps_to_protocol

    maps = np.random.default_rng(6).random((5, 70, 90))  # float64 in, float32 out
    batches = [([3, 0], maps[[3, 0]]), (np.array([4, 1, 2], np.int32), maps[[4, 1, 2]])]
    out = maps_to_protocol_in_batches(batches, n_images=5)
    assert out.dtype == np.float32 and out.shape == (5, EVAL_SIZE, EVAL_SIZE)
    np.testing.assert_array_equal(out, maps_to_protocol(maps))


def test_score_bundle_refuses_ground_truth_in_another_order(tmp_path):
    gt = _ground_truth(6, seed=7)
    spec = Spec(suite="synthetic", ids={"synthetic/aa": gt.ids.tolist()}, map_size=(64, 64))
    scores, maps = _prediction(gt, (64, 64), np.float32, seed=0)
    path = write_valid(tmp_path / "b.zip", spec, {"synthetic/aa": {"ids": gt.ids.tolist(), "scores": scores,
                                                                   "maps": maps}})
    shuffled = GT(gt.ids[::-1].copy(), gt.labels[::-1].copy(), gt.masks[::-1].copy())
    with BundleReader(path) as reader:
        reader.validate(suite="synthetic", expected_ids={"synthetic/aa": gt.ids.tolist()})
        with pytest.raises(ValueError, match="the ground truth of synthetic/aa is not in the order of the ids"):
            score_bundle(reader, {"synthetic/aa": shuffled})


def test_maps_to_protocol_in_batches_empty_batch_is_a_value_error():
    with pytest.raises(ValueError, match="maps is empty"):
        maps_to_protocol_in_batches([([], np.zeros((0, 64, 64), np.float32))], n_images=1)

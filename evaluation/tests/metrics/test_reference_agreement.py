"""Differential tests: our metrics against scikit-learn, anomalib's AUPRO and proportion-localised."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from anomalib.metrics.aupro import _AUPRO
from proportion_localised.__main__ import calculate as pl_calculate
from sklearn.metrics import roc_auc_score

from evaluation.metrics import (
    aupro,
    evaluate,
    image_auroc,
    localisation_report,
    pixel_auroc,
    proportion_localised,
)

from ._cases import make_case

aupro_impl = importlib.import_module("evaluation.metrics.aupro")


def anomalib_aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    metric = _AUPRO(fpr_limit=fpr_limit)
    metric.update(torch.from_numpy(maps.astype(np.float32)), torch.from_numpy(masks.astype(np.uint8)))
    return float(metric.compute())


def package_pl(masks: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The package's IoU table (thresholds x anomalies) on the anomalous images."""
    keep = masks.reshape(len(masks), -1).any(axis=1)
    return pl_calculate(maps[keep], masks[keep], anomaly_likelihood_definitely_increasing=True)[1]


CASES = [
    pytest.param(dict(seed=1), id="mixed"),
    pytest.param(dict(seed=2, max_anomalies=8), id="many-small-merging"),
    pytest.param(dict(seed=3, levels=3), id="heavy-ties"),
    pytest.param(dict(seed=4, n=3, max_anomalies=1), id="single-anomaly"),
    pytest.param(dict(seed=5, max_anomalies=6, levels=20), id="ties-and-merges"),
]


@pytest.mark.parametrize("kwargs", CASES)
def test_pl_matches_package_exactly(kwargs):
    masks, maps = make_case(**kwargs)
    ref_data = package_pl(masks, maps)
    ref_ious = ref_data[0]
    for limit in (0.3, 0.1, 0.5):
        expected = float((ref_ious > limit).mean(axis=1).max())
        assert proportion_localised(masks, maps, iou_limit=limit) == expected
    report = localisation_report(masks, maps)
    np.testing.assert_array_equal([a.iou for a in report.anomalies], ref_ious[report.threshold_index])
    np.testing.assert_array_equal([a.best_iou for a in report.anomalies], ref_ious.max(axis=0))
    assert report.threshold == float(ref_data[1])
    ref_boxes = [box for image in ref_data[3][2] for box in image]
    ours = [((a.center_x, a.center_y), (a.width, a.height), a.angle) for a in report.anomalies]
    assert ours == [((float(b[0][0]), float(b[0][1])), (float(b[1][0]), float(b[1][1])), float(b[2]))
                    for b in ref_boxes]


def test_pl_float64_maps_and_a_dominant_anomaly():
    masks, maps = make_case(seed=7, n=2)
    masks[0, 10:240, 5:250] = 1  # one anomaly covering most of the image
    maps = maps.astype(np.float64) + 1e-9 * np.arange(maps.size).reshape(maps.shape) % 3
    expected = float((package_pl(masks, maps)[0] > 0.3).mean(axis=1).max())
    assert proportion_localised(masks, maps) == expected


def test_pl_constant_map_matches_package():
    masks, _ = make_case(seed=8, n=2, n_normal=0)
    maps = np.full(masks.shape, 0.5, np.float32)
    expected = float((package_pl(masks, maps)[0] > 0.3).mean(axis=1).max())
    assert proportion_localised(masks, maps) == expected == 0.0


@pytest.mark.parametrize(("seed", "shape", "levels"), [(11, (256, 256), None), (12, (37, 53), None),
                                                       (13, (64, 40), 4), (14, (20, 90), 1)])
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_aupro_matches_anomalib(seed, shape, levels, limit):
    masks, maps = make_case(seed=seed, n=3, shape=shape, levels=levels)
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(anomalib_aupro(masks, maps, limit), abs=1e-4)


def test_aupro_block_boundaries_do_not_change_the_result(monkeypatch):
    masks, maps = make_case(seed=15, n=3, shape=(64, 64), levels=50)
    whole = aupro(masks, maps)
    monkeypatch.setattr(aupro_impl, "_CHUNK", 7)
    assert aupro(masks, maps) == pytest.approx(whole, abs=1e-12)
    assert whole == pytest.approx(anomalib_aupro(masks, maps), abs=1e-4)


@pytest.mark.parametrize(("seed", "shape", "levels"), [(21, (32, 32), None), (22, (17, 45), 2), (23, (40, 9), 6)])
def test_pixel_auroc_matches_sklearn(seed, shape, levels):
    masks, maps = make_case(seed=seed, n=3, shape=shape, levels=levels)
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_image_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 50)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 4 + seed, 50).astype(np.float64)
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_hand_computed_values():
    # pairs (pos, neg): (0.35>0.1), (0.35<0.4), (0.8>0.1), (0.8>0.4) -> 3/4
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert image_auroc([0, 1], [1.0, 1.0]) == 0.5
    assert image_auroc([1, 0], [0.0, 1.0]) == 0.0  # never flipped
    # one region of 2 pixels, 2 normal pixels. Values: region 0.9, 0.5; normal 0.7, 0.1.
    masks = np.array([[[1, 1, 0, 0]]], np.uint8)
    maps = np.array([[[0.9, 0.5, 0.7, 0.1]]])
    # curve: (0,0) -> t=.9 (0,.5) -> t=.7 (.5,.5) -> t=.5 (.5,1) -> t=.1 (1,1)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert aupro(masks, maps, fpr_limit=0.25) == pytest.approx(0.5)
    assert pixel_auroc(masks, maps) == 0.75


def test_evaluate_equals_the_single_metrics():
    masks, maps = make_case(seed=31, n=4, n_normal=2, shape=(128, 128))
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(int)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    result = evaluate(masks, maps, labels, scores, fpr_limit=0.2, iou_limit=0.4)
    assert result == {
        "image_auroc": image_auroc(labels, scores),
        "pixel_auroc": pixel_auroc(masks, maps),
        "aupro": pytest.approx(aupro(masks, maps, fpr_limit=0.2), abs=1e-12),
        "pl": proportion_localised(masks, maps, iou_limit=0.4),
    }

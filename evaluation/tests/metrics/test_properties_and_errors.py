"""Property tests (hypothesis), bad-input errors, the registry, the protocol and import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.metrics import (
    EVAL_SIZE,
    EVALUATOR_VERSION,
    METRICS,
    aupro,
    evaluate,
    get_metric,
    image_auroc,
    list_metrics,
    localisation_report,
    pixel_auroc,
    proportion_localised,
    proportion_localised_from_ious,
    to_protocol,
)

from ._cases import make_case

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = settings(max_examples=12, deadline=None)
small_cases = st.builds(lambda seed: make_case(seed=seed, n=3, shape=(48, 40), levels=None),
                        st.integers(0, 10_000))


@SETTINGS
@given(small_cases)
def test_perfect_maps_score_one(case):
    masks, _ = case
    perfect = masks.astype(np.float32)
    assert pixel_auroc(masks, perfect) == 1.0
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    labels = masks.reshape(len(masks), -1).any(axis=1)
    assert image_auroc(labels, labels.astype(float)) == 1.0


@SETTINGS
@given(small_cases, st.sampled_from(["exp", "cube", "affine"]))
def test_auroc_and_aupro_invariant_to_increasing_transforms(case, kind):
    masks, maps = case
    maps = maps.astype(np.float64)
    transformed = {"exp": np.exp(maps), "cube": maps**3 + 5, "affine": 3 * maps - 1}[kind]
    assert pixel_auroc(masks, transformed) == pytest.approx(pixel_auroc(masks, maps), abs=1e-12)
    assert aupro(masks, transformed) == pytest.approx(aupro(masks, maps), abs=1e-12)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 4.0), st.floats(-2.0, 2.0))
def test_pl_invariant_to_positive_affine_maps(seed, scale, shift):
    masks, maps = make_case(seed=seed, n=2, n_normal=0, levels=8)  # quantised: exact in float64
    maps = maps.astype(np.float64)
    assert proportion_localised(masks, maps * 2.0 + 1.0) == proportion_localised(masks, maps)
    assert proportion_localised(masks, maps * 4.0 - 3.0) == proportion_localised(masks, maps)
    assert 0.0 <= proportion_localised(masks, maps * scale + shift) <= 1.0


@SETTINGS
@given(small_cases, st.randoms(use_true_random=False))
def test_results_do_not_depend_on_image_order(case, random):
    masks, maps = case
    order = list(range(len(masks)))
    random.shuffle(order)
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(int)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    first = evaluate(masks, maps, labels, scores)
    second = evaluate(masks[order], maps[order], labels[order], scores[order])
    assert second == pytest.approx(first, abs=1e-12)


def test_dtypes_are_accepted_and_agree():
    masks, maps = make_case(seed=3, n=2, shape=(64, 64), levels=16)
    base = aupro(masks, maps)
    assert aupro(masks.astype(bool), maps.astype(np.float64)) == pytest.approx(base, abs=1e-12)
    assert aupro(masks.astype(np.int64), maps.astype(np.float16)) == pytest.approx(base, abs=1e-12)
    assert pixel_auroc(masks.astype(bool), maps.astype(np.float16)) == pytest.approx(
        pixel_auroc(masks, maps), abs=1e-12)


def test_localisation_report_is_json_able_and_consistent():
    masks, maps = make_case(seed=4, n=3)
    report = localisation_report(masks, maps, iou_limit=0.2)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["pl"] == proportion_localised(masks, maps, iou_limit=0.2)
    assert len(data["thresholds"]) == 25 and data["threshold"] == data["thresholds"][data["threshold_index"]]
    assert sum(a["localised"] for a in data["anomalies"]) / len(data["anomalies"]) == data["pl"]
    assert {a["image_index"] for a in data["anomalies"]} == {0, 1, 2}  # the normal image 3 takes no part
    with pytest.raises(AttributeError):
        report.pl = 1.0  # frozen


def test_pl_skips_images_with_empty_masks():
    masks, maps = make_case(seed=5, n=2, n_normal=2)
    assert proportion_localised(masks, maps) == proportion_localised(masks[:2], maps[:2])


def test_registry_and_version():
    assert list(METRICS) == ["image_auroc", "pixel_auroc", "aupro", "pl"]
    assert [m.short_name for m in list_metrics()] == ["I-AUC", "P-AUC", "AUPRO", "PL"]
    assert get_metric("pl").explanation.startswith("The share of defects that were found")
    assert all(m.low == 0.0 and m.high == 1.0 and m.higher_is_better for m in list_metrics())
    assert EVAL_SIZE == 256 and EVALUATOR_VERSION.endswith("@256")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        get_metric("f1")


def test_to_protocol_resizes_masks_nearest_and_maps_bilinear():
    masks = np.zeros((2, 512, 384), np.uint8)
    masks[0, 100:300, 50:200] = 1
    maps = np.linspace(0, 1, 2 * 128 * 96, dtype=np.float64).reshape(2, 128, 96)
    out_masks, out_maps = to_protocol(masks, maps)
    assert out_masks.shape == out_maps.shape == (2, 256, 256)
    assert out_masks.dtype == np.uint8 and out_maps.dtype == np.float32
    assert set(np.unique(out_masks)) == {0, 1}
    assert out_masks[0].sum() == pytest.approx(masks[0].sum() * (256 * 256) / (512 * 384), rel=0.02)
    assert out_maps.min() >= maps.min() and out_maps.max() <= maps.max() + 1e-6
    same_masks, same_maps = to_protocol(out_masks, out_maps)
    np.testing.assert_array_equal(same_masks, out_masks)
    np.testing.assert_array_equal(same_maps, out_maps)


GOOD_MASKS, GOOD_MAPS = make_case(seed=9, n=2, shape=(16, 16))
BAD_INPUTS = [
    (pixel_auroc, (GOOD_MASKS, GOOD_MAPS[:, :8]), "same shape"),
    (pixel_auroc, (GOOD_MASKS[0], GOOD_MAPS[0]), "3 dimensions"),
    (pixel_auroc, (GOOD_MASKS * 2, GOOD_MAPS), "binary"),
    (pixel_auroc, (GOOD_MASKS, np.where(GOOD_MASKS, np.nan, GOOD_MAPS)), "non-finite"),
    (aupro, (GOOD_MASKS, np.where(GOOD_MASKS, np.inf, GOOD_MAPS)), "non-finite"),
    (pixel_auroc, (np.zeros_like(GOOD_MASKS), GOOD_MAPS), "no anomalous"),
    (pixel_auroc, (np.ones_like(GOOD_MASKS), GOOD_MAPS), "no normal"),
    (aupro, (np.zeros_like(GOOD_MASKS), GOOD_MAPS), "no anomalous region"),
    (aupro, (np.ones_like(GOOD_MASKS), GOOD_MAPS), "no normal pixel"),
    (proportion_localised, (np.zeros_like(GOOD_MASKS), GOOD_MAPS), "no image has an anomaly"),
    (pixel_auroc, (np.zeros((0, 4, 4)), np.zeros((0, 4, 4))), "empty"),
    (image_auroc, ([1, 1], [0.2, 0.3]), "no normal"),
    (image_auroc, ([0, 0], [0.2, 0.3]), "no anomalous"),
    (image_auroc, ([0, 1], [0.2, float("nan")]), "non-finite"),
    (image_auroc, ([0, 1, 2], [0.2, 0.3, 0.4]), "binary"),
    (image_auroc, ([0, 1], [0.2, 0.3, 0.4]), "same shape"),
    (image_auroc, ([], []), "empty"),
    (image_auroc, ([0, 1], ["a", "b"]), "real numbers"),
    (to_protocol, (GOOD_MASKS, GOOD_MAPS[:1]), "same number of images"),
]


@pytest.mark.parametrize(("function", "args", "message"), BAD_INPUTS)
def test_bad_input_raises_a_clear_value_error(function, args, message):
    with pytest.raises(ValueError, match=message):
        function(*args)


@pytest.mark.parametrize(("kwargs", "message"), [({"fpr_limit": 0}, "fpr_limit"), ({"fpr_limit": 1.5}, "fpr_limit"),
                                                 ({"iou_limit": -0.1}, "iou_limit"),
                                                 ({"iou_limit": float("nan")}, "iou_limit")])
def test_bad_limits_raise(kwargs, message):
    labels = np.array([1, 1, 0])
    with pytest.raises(ValueError, match=message):
        evaluate(GOOD_MASKS, GOOD_MAPS, labels, labels.astype(float), **kwargs)


def test_evaluate_checks_image_counts():
    with pytest.raises(ValueError, match="labels/scores describe 2 images"):
        evaluate(GOOD_MASKS, GOOD_MAPS, [0, 1], [0.1, 0.2])


def test_metrics_import_neither_django_nor_torch():
    code = ("import sys, evaluation.metrics\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'torch'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_aupro_never_exceeds_one_from_rounding():
    """Many regions of awkward sizes make the PRO weights 1/|region| round above 1 unclamped."""
    from evaluation.metrics import aupro, evaluate

    rng = np.random.default_rng(7)
    masks = np.zeros((60, 64, 64), dtype=np.uint8)
    for i in range(40):
        for _ in range(3):
            y, x = rng.integers(0, 58, size=2)
            h, w = rng.integers(1, 7, size=2)
            masks[i, y : y + h, x : x + w] = 1
    maps = masks.astype(np.float32) + rng.random(masks.shape, dtype=np.float32) * 0.01
    labels = masks.reshape(60, -1).max(axis=1)
    for value in (aupro(masks, maps), evaluate(masks, maps, labels, maps.reshape(60, -1).max(axis=1))["aupro"]):
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(1.0, abs=1e-9)


IOU_LIMITS = [round(0.1 * k, 1) for k in range(1, 10)]


@pytest.mark.parametrize("seed", [4, 11, 23])
def test_pl_from_stored_ious_equals_proportion_localised_at_every_limit(seed):
    """PL as a function of the IoU limit, from the IoUs one report measured, is PL itself."""
    masks, maps = make_case(seed=seed, n=4, shape=(96, 80))
    stored = json.loads(json.dumps(localisation_report(masks, maps).to_dict()))  # what a result keeps
    ious = [anomaly["ious"] for anomaly in stored["anomalies"]]
    for limit in IOU_LIMITS:
        assert proportion_localised_from_ious(ious, iou_limit=limit) == proportion_localised(
            masks, maps, iou_limit=limit
        ), limit


def test_pl_from_ious_refuses_bad_tables():
    with pytest.raises(ValueError, match="non-empty"):
        proportion_localised_from_ious([], iou_limit=0.3)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        proportion_localised_from_ious([[1.5]], iou_limit=0.3)
    with pytest.raises(ValueError, match="iou_limit"):
        proportion_localised_from_ious([[0.5]], iou_limit=2)

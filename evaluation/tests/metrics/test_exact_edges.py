"""Exact references where a wrong line would change a number: PL's box merging against the
``proportion-localised`` package on the cases that pin it, the protocol's resizing, the thresholds,
and the validation edges (limits, dtypes, shapes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from proportion_localised.__main__ import calculate as pl_calculate

from evaluation.metrics import (
    aupro,
    evaluate,
    image_auroc,
    localisation_report,
    maps_to_protocol,
    masks_to_protocol,
    pixel_auroc,
    proportion_localised,
    to_protocol,
)
from evaluation.metrics.localisation import (
    PERCENTILES,
    _comparable_thresholds,
    _lerp,
    _linear_percentile_plan,
    _pl_table,
    _thresholds,
)

from ._cases import correlated_maps

# --- PL box merging against the package -------------------------------------------------------------
# Rectangles (x, y, w, h) drawn into one 256 x 256 mask each. The comments say which wrong merging
# each case exposes (found by running the merging with one, three or no passes, and with images of
# two regions left unmerged): every case is compared with the package, box for box and IoU for IoU.
MERGE_CASES = {
    # two 2 x 2 specks 3 px apart: widened to 32 x 32 they overlap and merge (two regions are merged too)
    "two-specks": [(100, 100, 2, 2), (105, 100, 2, 2)],
    # two such pairs far apart in one image: two merged boxes
    "two-pairs": [(60, 60, 2, 2), (65, 60, 2, 2), (180, 180, 3, 2), (184, 183, 2, 2)],
    # A overlaps B, B overlaps C, A and C are apart: one box for all three
    "chain": [(60, 128, 2, 2), (80, 128, 2, 2), (100, 128, 2, 2)],
    # boxes cut by the image border, merging at a corner
    "border": [(0, 0, 2, 2), (5, 0, 2, 3), (254, 250, 2, 6), (250, 254, 3, 2), (0, 200, 1, 9)],
    # the second pass merges a box made by the first one with a neighbour
    "second-pass": [(148, 174, 10, 3), (129, 208, 2, 2), (132, 186, 1, 2), (130, 161, 9, 11)],
    # a chain of nine strokes where a third pass would merge again (the package stops after two)
    "no-third-pass": [(82, 151, 15, 17), (58, 160, 18, 11), (70, 141, 17, 4), (81, 160, 18, 13), (97, 178, 1, 8),
                      (72, 172, 8, 11), (78, 177, 1, 6), (78, 188, 1, 5), (67, 177, 19, 2)],
}  # fmt: skip


def _draw(rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    mask = np.zeros((256, 256), np.uint8)
    for x, y, w, h in rects:
        mask[y : y + h, x : x + w] = 1
    return mask


def _merge_case(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The case's mask, a second anomalous image (one blob) and a normal one, with correlated maps."""
    masks = np.zeros((3, 256, 256), np.uint8)
    masks[0] = _draw(MERGE_CASES[name])
    cv2.circle(masks[1], (200, 60), 12, 1, -1)
    maps = correlated_maps(np.random.default_rng(seed), masks, noise=0.15)
    return masks, maps


def _package(masks: np.ndarray, maps: np.ndarray):
    keep = masks.reshape(len(masks), -1).any(axis=1)
    return pl_calculate(maps[keep], masks[keep], anomaly_likelihood_definitely_increasing=True)[1]


@pytest.mark.parametrize("name", list(MERGE_CASES))
def test_pl_box_merging_equals_the_package(name):
    masks, maps = _merge_case(name, seed=len(name))
    ref_ious, _, ref_index, (_, _, ref_boxes) = _package(masks, maps)
    table = _pl_table(masks.astype(bool), maps, np.array([0, 1]))
    # every box, in the package's order, and every IoU at every threshold
    expected_boxes = [(i, ((float(b[0][0]), float(b[0][1])), (float(b[1][0]), float(b[1][1])), float(b[2])))
                      for i, image in enumerate(ref_boxes) for b in image]  # fmt: skip
    got_boxes = [(i, ((float(r[0][0]), float(r[0][1])), (float(r[1][0]), float(r[1][1])), float(r[2])))
                 for i, r in table.boxes]  # fmt: skip
    assert got_boxes == expected_boxes
    np.testing.assert_array_equal(table.ious, ref_ious)
    np.testing.assert_array_equal(table.thresholds, np.percentile(maps[:2], PERCENTILES))
    for limit in (0.0, 0.3, 0.5):
        assert proportion_localised(masks, maps, iou_limit=limit) == float((ref_ious > limit).mean(axis=1).max())
    report = localisation_report(masks, maps)
    assert report.threshold_index == int(ref_index)
    assert [a.image_index for a in report.anomalies] == [i for i, _ in expected_boxes]


def test_pl_best_threshold_is_not_the_first_one():
    """PL and the chosen threshold index differ from 0, so a report that took index 0 would be caught."""
    masks, maps = _merge_case("no-third-pass", seed=0)
    ref_ious, ref_threshold, ref_index, _ = _package(masks, maps)
    report = localisation_report(masks, maps)
    fractions = (ref_ious > 0.3).mean(axis=1)
    assert ref_index > 0 and fractions[0] < fractions[ref_index]
    assert report.pl == float(fractions[ref_index]) and report.threshold_index == int(ref_index)
    assert report.threshold == float(ref_threshold)
    assert [a.iou for a in report.anomalies] == ref_ious[ref_index].tolist()
    assert [a.localised for a in report.anomalies] == (ref_ious[ref_index] > 0.3).tolist()


def test_iou_limit_zero_is_allowed_and_counts_any_overlap():
    masks, maps = _merge_case("chain", seed=3)
    ref_ious = _package(masks, maps)[0]
    expected = float((ref_ious > 0).mean(axis=1).max())
    assert proportion_localised(masks, maps, iou_limit=0) == expected
    assert proportion_localised(masks, maps, iou_limit=0.0) == expected
    labels = np.array([1, 1, 0])
    assert evaluate(masks, maps, labels, labels.astype(float), iou_limit=0)["pl"] == expected
    assert localisation_report(masks, maps, iou_limit=0).iou_limit == 0.0
    # a limit of 1 can never be exceeded
    assert proportion_localised(masks, maps, iou_limit=1) == 0.0


# --- the protocol's resizing -------------------------------------------------------------------------


def test_masks_resize_with_nearest_neighbour_exactly():
    rng = np.random.default_rng(0)
    small = (rng.random((2, 32, 64)) < 0.3).astype(np.uint8)
    # upscaling by whole factors repeats every pixel (nearest): 32 x 64 -> 256 x 256 is 8 x 4 blocks
    up = masks_to_protocol(small)
    np.testing.assert_array_equal(up, small.repeat(8, axis=1).repeat(4, axis=2))
    # halving keeps every second pixel (OpenCV's nearest takes floor(2 i)); bilinear would average
    large = (rng.random((1, 512, 512)) < 0.5).astype(np.uint8)
    np.testing.assert_array_equal(masks_to_protocol(large), large[:, ::2, ::2])
    assert masks_to_protocol(large.astype(bool)).dtype == np.uint8


def test_maps_resize_bilinear_in_float32_exactly():
    rng = np.random.default_rng(1)
    # halving with bilinear weights 1/2, 1/2 is the mean of each 2 x 2 block (exact for these values)
    quarters = rng.integers(-64, 64, (1, 512, 512)).astype(np.float32) / 4
    expected = quarters.reshape(1, 256, 2, 256, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(maps_to_protocol(quarters), expected)
    # OpenCV's bilinear in float32, bit for bit: float64 arithmetic rounds differently
    maps = rng.random((2, 100, 77))  # float64 input is narrowed to float32 first
    got = maps_to_protocol(maps)
    assert got.dtype == np.float32
    for i in range(2):
        f32 = cv2.resize(maps[i].astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(got[i], f32)
    wide = cv2.resize(maps[0], (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    assert not np.array_equal(wide, got[0])  # so the float32 path is what the test pins


def test_to_protocol_size_parameter():
    rng = np.random.default_rng(2)
    masks = (rng.random((2, 40, 40)) < 0.4).astype(np.uint8)
    maps = rng.random((2, 20, 30)).astype(np.float32)
    out_masks, out_maps = to_protocol(masks, maps, size=80)
    assert out_masks.shape == out_maps.shape == (2, 80, 80)
    np.testing.assert_array_equal(out_masks, masks.repeat(2, axis=1).repeat(2, axis=2))
    np.testing.assert_array_equal(out_maps, maps_to_protocol(maps, size=80))
    np.testing.assert_array_equal(out_masks, masks_to_protocol(masks, size=80))
    same_masks, same_maps = to_protocol(masks, np.zeros((2, 40, 40), np.float16), size=40)
    np.testing.assert_array_equal(same_masks, masks)
    assert same_maps.dtype == np.float32 and not same_maps.any()
    for bad in (0, -3, 2.5, "64", True, None):
        with pytest.raises(ValueError, match="size must be a positive integer"):
            to_protocol(masks, maps, size=bad)
        with pytest.raises(ValueError, match="size must be a positive integer"):
            masks_to_protocol(masks, size=bad)
    assert to_protocol(masks, maps, size=np.int64(1))[1].shape == (2, 1, 1)


# --- thresholds ----------------------------------------------------------------------------------------

AWKWARD = {
    "float32-extremes": np.array([-3.4e38, -1.0, -0.0, 0.0, 1e-45, 1.0, 3.4e38], np.float32),
    "subnormals": np.array([1e-45, 2e-45, 3e-45, 0.0, -1e-45] * 3, np.float32),
    "one-value": np.array([0.1], np.float32),
    "two-values": np.array([0.1, 0.7], np.float64),
    "huge-and-tiny": np.array([1e300, -1e300, 1e-300, 0.5, 2.0, 3.0], np.float64),
    "thirds": np.arange(1, 28, dtype=np.float64) / 3,
    "float32-thirds": (np.arange(1, 54, dtype=np.float32) / 3).astype(np.float32),
}


@pytest.mark.parametrize("name", list(AWKWARD))
def test_thresholds_equal_numpy_percentile_on_awkward_values(name):
    values = AWKWARD[name]
    pool = np.sort(values)
    expected = np.percentile(values, PERCENTILES)
    got = _thresholds(pool, [(0, pool.size)])
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    halves = np.concatenate([np.sort(values[::2]), np.sort(values[1::2])])
    np.testing.assert_array_equal(_thresholds(halves, [(0, values[::2].size), (values[::2].size, values.size)]),
                                  expected)  # fmt: skip


def test_percentile_plan_and_lerp_follow_numpy():
    previous, following, gamma = _linear_percentile_plan(27)  # (27 - 1) * q / 100 for q = 100 k / 26
    np.testing.assert_array_equal(previous, np.arange(1, 26))
    np.testing.assert_array_equal(following, np.arange(2, 27))
    assert gamma.dtype == np.float64 and np.abs(gamma).max() < 1e-12
    previous, following, gamma = _linear_percentile_plan(1)
    assert not previous.any() and not following.any()
    below = np.array([0.0, 1.0, 10.0], np.float32)
    above = np.array([1.0, 3.0, 10.0], np.float32)
    result = _lerp(below, above, np.array([0.25, 0.75, 0.5]))
    np.testing.assert_array_equal(result, [0.25, 2.5, 10.0])


def test_thresholds_narrow_to_the_maps_dtype_without_changing_any_comparison():
    # float64 thresholds (from the overflow path, or float64 maps) against float32 maps
    f32 = np.array([0.1, 0.2, 1 / 3, 1e-45, -2.5, 3.0e38], np.float32)
    thresholds = np.concatenate([f32.astype(np.float64) * (1 + 1e-12), f32.astype(np.float64) * (1 - 1e-12),
                                 f32.astype(np.float64)])  # fmt: skip
    narrow = _comparable_thresholds(thresholds, np.dtype(np.float32))
    assert narrow.dtype == np.float32
    values = np.concatenate([f32, np.nextafter(f32, np.float32(np.inf)), np.nextafter(f32, np.float32(-np.inf))])
    for t64, t32 in zip(thresholds, narrow):
        np.testing.assert_array_equal(values > t32, values.astype(np.float64) > t64)
    # never rounded up, and exact where the value fits
    assert (narrow.astype(np.float64) <= thresholds).all()
    np.testing.assert_array_equal(narrow[-f32.size:], f32)
    same = _comparable_thresholds(thresholds, np.dtype(np.float64))
    assert same.dtype == np.float64 and np.array_equal(same, thresholds)


# --- validation edges ------------------------------------------------------------------------------------

MASKS = np.zeros((3, 24, 24), np.uint8)
MASKS[0, 4:9, 5:12] = 1
MASKS[1, 15:20, 2:6] = 1
MAPS = correlated_maps(np.random.default_rng(5), MASKS, noise=0.4)
LABELS = np.array([1, 1, 0])


@pytest.mark.parametrize("limit", ["0.3", True, False, None, [0.3], complex(0.3)])
@pytest.mark.parametrize("name", ["fpr_limit", "iou_limit"])
def test_limits_must_be_real_numbers(name, limit):
    with pytest.raises(ValueError, match=f"{name} must be a number"):
        evaluate(MASKS, MAPS, LABELS, LABELS.astype(float), **{name: limit})
    function = aupro if name == "fpr_limit" else proportion_localised
    with pytest.raises(ValueError, match=f"{name} must be a number"):
        function(MASKS, MAPS, **{name: limit})


@pytest.mark.parametrize(("name", "limit", "interval"), [("fpr_limit", 0, r"\(0, 1\]"), ("fpr_limit", 0.0, r"\(0, 1\]"),
                                                         ("fpr_limit", -0.5, r"\(0, 1\]"),
                                                         ("fpr_limit", 1.0000001, r"\(0, 1\]"),
                                                         ("iou_limit", -1e-9, r"\[0, 1\]"),
                                                         ("iou_limit", 1.5, r"\[0, 1\]"),
                                                         ("iou_limit", float("inf"), r"\[0, 1\]")])
def test_limits_outside_their_interval(name, limit, interval):
    function = aupro if name == "fpr_limit" else proportion_localised
    with pytest.raises(ValueError, match=f"{name} must lie in {interval}, got {limit!r}"):
        function(MASKS, MAPS, **{name: limit})


def test_numpy_limits_are_numbers():
    assert aupro(MASKS, MAPS, fpr_limit=np.float32(0.5)) == aupro(MASKS, MAPS, fpr_limit=0.5)
    assert aupro(MASKS, MAPS, fpr_limit=np.int64(1)) == aupro(MASKS, MAPS, fpr_limit=1.0)
    assert proportion_localised(MASKS, MAPS, iou_limit=np.float64(0.2)) == proportion_localised(
        MASKS, MAPS, iou_limit=0.2)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int32, np.float32, bool])
def test_every_binary_mask_dtype_gives_the_same_values(dtype):
    masks = MASKS.astype(dtype)
    expected = evaluate(MASKS.astype(bool), MAPS, LABELS, MAPS.max(axis=(1, 2)))
    assert evaluate(masks, MAPS, LABELS.astype(dtype), MAPS.max(axis=(1, 2))) == expected
    assert pixel_auroc(masks, MAPS) == expected["pixel_auroc"]
    assert proportion_localised(masks, MAPS) == expected["pl"]
    assert masks_to_protocol(masks, size=24).tolist() == MASKS.tolist()


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int64])
def test_non_binary_wide_integer_masks_are_refused(dtype):
    masks = MASKS.astype(dtype)
    masks[0, 0, 0] = 256  # its low byte is 0: a byte view would call this pixel normal
    with pytest.raises(ValueError, match=r"must be binary \(0/1 or bool\), found the value 256"):
        pixel_auroc(masks, MAPS)
    with pytest.raises(ValueError, match="labels must be binary"):
        image_auroc(np.array([0, 1, 2], dtype), [0.1, 0.2, 0.3])


def test_integer_and_float16_maps_are_scored_like_floats():
    int_maps = np.round(MAPS * 100).astype(np.int32)
    as_float = int_maps.astype(np.float64)
    assert pixel_auroc(MASKS, int_maps) == pixel_auroc(MASKS, as_float)
    assert aupro(MASKS, int_maps) == aupro(MASKS, as_float)
    assert proportion_localised(MASKS, int_maps.astype(np.uint16) + 7) == proportion_localised(MASKS, as_float + 7)
    assert image_auroc(LABELS, np.array([5, 9, 1], np.int64)) == 1.0
    half = MAPS.astype(np.float16)
    assert pixel_auroc(MASKS, half) == pixel_auroc(MASKS, half.astype(np.float32))
    np.testing.assert_array_equal(maps_to_protocol(int_maps, size=24), as_float.astype(np.float32))
    with pytest.raises(ValueError, match="must hold real numbers"):
        pixel_auroc(MASKS, MAPS.astype(np.complex64))
    with pytest.raises(ValueError, match="must be a bool or 0/1 integer array, got dtype <U1"):
        pixel_auroc(np.full((1, 2, 2), "a"), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="could not be read as an array"):
        pixel_auroc([[[0, 1], [1]]], MAPS)


@pytest.mark.parametrize("function", [pixel_auroc, aupro, proportion_localised, localisation_report])
def test_shape_mismatch_is_a_value_error_naming_both_shapes(function):
    shapes = r"masks and maps must have the same shape, got \(3, 24, 24\) and \(3, 24, 12\)"
    with pytest.raises(ValueError, match=shapes):
        function(MASKS, MAPS[:, :, :12])
    with pytest.raises(ValueError, match="masks and maps must have the same shape"):
        function(MASKS, MAPS[:2])
    with pytest.raises(ValueError, match=r"maps must have 3 dimensions \(N, H, W\), got shape \(3, 576\)"):
        function(MASKS, MAPS.reshape(3, -1))


def test_evaluate_shape_mismatches_are_value_errors():
    scores = MAPS.max(axis=(1, 2))
    with pytest.raises(ValueError, match="masks and maps must have the same shape"):
        evaluate(MASKS, MAPS[:, :20], LABELS, scores)
    with pytest.raises(ValueError, match="labels and scores must have the same shape"):
        evaluate(MASKS, MAPS, LABELS, scores[:2])
    with pytest.raises(ValueError, match=r"labels must have 1 dimensions \(N,\)"):
        evaluate(MASKS, MAPS, LABELS[:, None], scores)
    with pytest.raises(ValueError, match="labels/scores describe 2 images but masks/maps hold 3"):
        evaluate(MASKS, MAPS, LABELS[:2], scores[:2])
    with pytest.raises(ValueError, match=r"scores contains 1 non-finite value\(s\)"):
        evaluate(MASKS, MAPS, LABELS, np.array([0.1, np.inf, 0.2]))
    with pytest.raises(ValueError, match="AUPRO is undefined: the masks have no normal pixel"):
        evaluate(np.ones_like(MASKS), MAPS, LABELS, scores)


def test_aupro_fpr_limit_zero_is_refused_not_divided_by():
    with pytest.raises(ValueError, match=r"fpr_limit must lie in \(0, 1\], got 0"):
        aupro(MASKS, MAPS, fpr_limit=0)
    with pytest.raises(ValueError, match="fpr_limit must lie in"):
        evaluate(MASKS, MAPS, LABELS, LABELS.astype(float), fpr_limit=0.0)
    tiny = aupro(MASKS, MAPS, fpr_limit=1e-6)
    assert 0.0 <= tiny <= 1.0


def test_empty_and_object_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"masks is empty \(shape \(0, 4, 4\)\)"):
        aupro(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match="maps must be a numeric array, not dtype=object"):
        pixel_auroc(MASKS, MAPS.astype(object))
    with pytest.raises(ValueError, match=r"masks must be binary \(0/1 or bool\), found the value 0.5"):
        aupro(MASKS * 0.5, MAPS)


# --- messages, the report's dict, the protocol's edges ---------------------------------------------------


def test_messages_are_exact():
    from evaluation.metrics import get_metric

    ones, zeros = np.ones((1, 4, 4), np.uint8), np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"^pixel AUROC is undefined: the masks have no anomalous \(positive\) pixel$"):
        pixel_auroc(zeros, np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"^pixel AUROC is undefined: the masks have no normal \(negative\) pixel$"):
        pixel_auroc(ones, np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"^unknown metric 'f1'; known metrics: image_auroc, pixel_auroc, aupro, pl$"):
        get_metric("f1")
    with pytest.raises(ValueError, match=r"^masks and maps must hold the same number of images, got 3 and 1$"):
        to_protocol(MASKS, MAPS[:1])
    with pytest.raises(ValueError, match=r"^maps overflow float32 \(values beyond about 3\.4e38\)$"):
        maps_to_protocol(np.full((1, 8, 8), 1e300))
    with pytest.raises(ValueError, match=r"^PL is undefined: no image has an anomaly \(every mask is empty\)$"):
        proportion_localised(zeros, np.zeros((1, 4, 4)))


def test_report_dict_keys_and_types():
    report = localisation_report(MASKS, MAPS)
    data = report.to_dict()
    assert list(data) == ["pl", "iou_limit", "threshold", "threshold_index", "thresholds", "anomalies"]
    assert type(data["thresholds"]) is list and data["thresholds"] == list(report.thresholds)
    assert type(data["anomalies"]) is list and len(data["anomalies"]) == 2
    assert data["anomalies"][0] == {
        "image_index": 0, "center_x": report.anomalies[0].center_x, "center_y": report.anomalies[0].center_y,
        "width": report.anomalies[0].width, "height": report.anomalies[0].height, "angle": report.anomalies[0].angle,
        "best_iou": report.anomalies[0].best_iou, "iou": report.anomalies[0].iou,
        "localised": report.anomalies[0].localised, "ious": list(report.anomalies[0].ious)}  # fmt: skip
    assert len(data["anomalies"][0]["ious"]) == len(report.thresholds)


def test_overflowing_maps_raise_without_a_numpy_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the float32 cast's overflow is reported by name, not warned
        with pytest.raises(ValueError, match="maps overflow float32"):
            maps_to_protocol(np.full((1, 8, 8), 1e300))
        with pytest.raises(ValueError, match="maps overflow float32"):
            maps_to_protocol(np.full((1, 8, 8), -1e39), size=8)


def test_maps_near_the_float32_limits_resize_in_float64():
    """Bilinear sums of +-3.4e38 overflow in float32; such images alone are resized in float64."""
    f32_max = np.finfo(np.float32).max
    rng = np.random.default_rng(0)
    maps = rng.choice(np.array([f32_max, -f32_max, 3e38, 0.0], np.float32), size=(2, 16, 20))
    ordinary = rng.random((1, 16, 20)).astype(np.float32)
    got = maps_to_protocol(np.concatenate([maps, ordinary]), size=64)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    for i in range(2):
        wide = cv2.resize(maps[i].astype(np.float64), (64, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        np.testing.assert_array_equal(got[i], wide)
    np.testing.assert_array_equal(got[2], cv2.resize(ordinary[0], (64, 64), interpolation=cv2.INTER_LINEAR))


def test_unit_clipping_boundaries():
    from evaluation.metrics._protocol import UNIT_TOLERANCE, _unit

    assert _unit(-UNIT_TOLERANCE) == 0.0 and _unit(1.0 + UNIT_TOLERANCE) == 1.0
    assert _unit(np.float32(0.5)) == 0.5 and type(_unit(np.float64(0.5))) is float
    assert _unit(-2 * UNIT_TOLERANCE) == -2 * UNIT_TOLERANCE  # a real error is not hidden
    assert _unit(0.0) == 0.0 and _unit(1.0) == 1.0


def test_evaluate_at_protocol_passes_both_limits():
    from evaluation.metrics import evaluate_at_protocol

    masks, maps = _merge_case("no-third-pass", seed=0)
    labels = np.array([1, 1, 0])
    scores = maps.max(axis=(1, 2))
    other = evaluate_at_protocol(masks, maps, labels, scores, fpr_limit=0.05, iou_limit=0.0)
    assert other == evaluate(masks, maps, labels, scores, fpr_limit=0.05, iou_limit=0.0)
    default = evaluate_at_protocol(masks, maps, labels, scores)
    assert other["aupro"] != default["aupro"] and other["pl"] != default["pl"]


def test_labels_and_scores_messages_name_them():
    with pytest.raises(ValueError, match=r"^labels could not be read as an array"):
        image_auroc([[0, 1], [1]], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"^scores could not be read as an array"):
        image_auroc([0, 1], [[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match=r"^scores must have 1 dimensions \(N,\), got shape \(2, 1\)$"):
        image_auroc([0, 1], [[0.1], [0.2]])
    with pytest.raises(ValueError, match=r"^labels and scores must have the same shape, got \(2,\) and \(3,\)$"):
        image_auroc([0, 1], [0.2, 0.3, 0.4])


def test_an_anomaly_at_exactly_the_limit_is_not_localised():
    """Localised means IoU strictly above the limit: with iou_limit=0 an IoU of 0 does not count."""
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 10:20, 10:20] = 1
    masks[1, 30:40, 30:40] = 1
    maps = np.full((2, 64, 64), -10.0)
    maps[0] = correlated_maps(np.random.default_rng(0), masks[:1], noise=0.1)[0]  # image 1 is never found
    report = localisation_report(masks, maps, iou_limit=0)
    assert report.anomalies[1].iou == 0.0 and report.anomalies[1].best_iou == 0.0
    assert report.anomalies[1].localised is False and report.anomalies[0].localised is True
    assert report.pl == 0.5 == proportion_localised(masks, maps, iou_limit=0)

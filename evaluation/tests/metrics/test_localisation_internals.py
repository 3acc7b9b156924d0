"""PL's building blocks against the operations of the package they replace, bit for bit."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from evaluation.metrics._regions import label_regions
from evaluation.metrics.localisation import (
    PERCENTILES,
    _filled_box,
    _group_rect,
    _image_boxes,
    _min_side,
    _nearest_centre,
    _scaled_rect,
    _thresholds,
)


def _as_runs(values: np.ndarray, cuts: list[int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``values`` cut into pieces at ``cuts``, each piece sorted in place: a pool of sorted runs."""
    pool = values.copy()
    bounds = [0, *sorted(cuts), pool.size]
    runs = list(itertools.pairwise(bounds))
    for start, stop in runs:
        pool[start:stop].sort()
    return pool, runs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(12))
def test_thresholds_equal_numpy_percentile(dtype, seed):
    rng = np.random.default_rng(seed)
    size = int(rng.choice([1, 2, 3, 25, 26, 27, 28, 31, 100, 997, 5000, 40_000]))
    values = rng.normal(0, 1, size)
    if seed % 3 == 1:
        values = np.round(values * 2) / 2  # heavy ties
    elif seed % 3 == 2:
        values = np.full(size, -0.25 if seed % 2 else 3.0)  # constant
    values = values.astype(dtype)
    n_cuts = int(rng.integers(0, min(size, 400)))
    cuts = rng.integers(0, size + 1, n_cuts).tolist()  # empty, tiny and large runs
    pool, runs = _as_runs(values, cuts)
    expected = np.percentile(values, PERCENTILES)
    got = _thresholds(pool, runs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_thresholds_with_one_run_per_value_and_one_run_overall():
    values = np.random.default_rng(5).random(3000).astype(np.float32)
    for cuts in (list(range(1, 3000)), []):
        pool, runs = _as_runs(values, cuts)
        np.testing.assert_array_equal(_thresholds(pool, runs), np.percentile(values, PERCENTILES))


def _package_nearest(shape: tuple[int, int], centres: list[tuple[float, float]]) -> np.ndarray:
    """The package's assignment: ``cdist`` to (cy, cx) from (col, row) points, swapped, argmin."""
    xx, yy = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]))
    distances = cdist(np.array([xx.ravel(), yy.ravel()]).T, [(cy, cx) for cx, cy in centres])
    return np.argmin(distances.reshape(shape[0], shape[1], -1).swapaxes(0, 1), axis=-1)


@pytest.mark.parametrize("seed", range(40))
def test_nearest_centre_matches_cdist_argmin(seed):
    rng = np.random.default_rng(seed)
    shape = (40, 40)  # square: the package's swapaxes assumes it
    count = int(rng.integers(2, 7))
    if seed % 2:  # centres on the half-pixel grid: many exact ties, first centre wins
        centres = (rng.integers(0, 80, (count, 2)) / 2).tolist()
    else:
        centres = rng.uniform(0, 40, (count, 2)).astype(np.float32).astype(float).tolist()
    rects = [((cx, cy), (1.0, 1.0), 0.0) for cx, cy in centres]
    np.testing.assert_array_equal(_nearest_centre(shape, rects), _package_nearest(shape, [tuple(c) for c in centres]))


def test_nearest_centre_keeps_ties_that_only_sqrt_creates():
    # Squared distances one ulp apart whose square roots round to the same value: the package
    # sees a tie and keeps the first centre, although the second one's square is smaller.
    rng = np.random.default_rng(0)
    cases = 0
    for _ in range(200):
        d = rng.uniform(1, 30)
        q = float(np.sqrt(np.spacing(d * d)))
        if not (d * d < d * d + q * q and np.sqrt(d * d) == np.sqrt(d * d + q * q)):
            continue
        centres = [(q, d), (0.0, d)]
        rects = [(centre, (1.0, 1.0), 0.0) for centre in centres]
        nearest = _nearest_centre((8, 8), rects)
        assert nearest[0, 0] == 0
        np.testing.assert_array_equal(nearest, _package_nearest((8, 8), centres))
        cases += 1
    assert cases > 20


@pytest.mark.parametrize("seed", range(4))
def test_filled_box_crop_equals_drawing_on_the_whole_image(seed):
    rng = np.random.default_rng(seed)
    shape = (256, 256) if seed < 2 else (61, 97)
    for _ in range(150):
        centre = (float(rng.uniform(-10, shape[1] + 10)), float(rng.uniform(-10, shape[0] + 10)))
        size = (float(rng.uniform(0.5, 120)), float(rng.uniform(0.5, 120)))
        rect = (centre, size, float(rng.uniform(-90, 90)))
        whole = np.zeros(shape, np.uint8)
        cv2.drawContours(whole, [np.intp(cv2.boxPoints(rect))], 0, 255, -1)
        window, box = _filled_box(rect, shape)
        expected = np.zeros(shape, bool)
        expected[window] = box
        np.testing.assert_array_equal(expected, whole > 0)


def test_label_regions_matches_scipy_in_raster_order():
    rng = np.random.default_rng(3)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        labels, count = label_regions(mask)
        expected, expected_count = ndimage.label(mask, structure=np.ones((3, 3), bool))
        assert count == expected_count
        np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("shape", [(9, 40), (40, 9), (23, 31)])
def test_a_region_box_from_its_crop_equals_the_box_from_the_whole_image(shape):
    """``_crop`` keeps every contour point, on tall and wide images and at every edge."""
    rng = np.random.default_rng(sum(shape))
    min_side = _min_side(shape)
    checked = 0
    for _ in range(25):
        mask = rng.random(shape) < rng.uniform(0.05, 0.4)
        mask[-1, rng.integers(shape[1])] = mask[rng.integers(shape[0]), -1] = True  # regions at the far edges
        labels, count = label_regions(mask)
        slices = ndimage.find_objects(labels)
        for members in [[k] for k in range(count)] + [list(range(min(count, 3)))]:
            expected = _scaled_rect(np.isin(labels, np.asarray(members) + 1), (0, 0), min_side)
            assert _group_rect(labels, members, slices, min_side) == expected
            checked += 1
    assert checked > 100


def test_image_boxes_label_the_mask_unless_given_labels_and_follow_the_given_numbering():
    mask = np.zeros((40, 40), bool)
    mask[2:6, 3:9] = mask[30:37, 25:33] = True  # two regions far apart: no merging
    labels, count = label_regions(mask)
    boxes = _image_boxes(mask)
    assert len(boxes) == count == 2 and boxes == _image_boxes(mask, labels, count)
    assert _image_boxes(mask, labels=labels) == boxes  # a missing count: labelled again
    swapped = np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(labels.dtype)
    assert _image_boxes(mask, swapped, 2) == boxes[::-1]  # the given labels are used, in their order

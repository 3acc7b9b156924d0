"""The resolution protocol: masks and maps resize separately; one function resizes and evaluates."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import (
    EVAL_SIZE,
    evaluate,
    evaluate_at_protocol,
    maps_to_protocol,
    masks_to_protocol,
    to_protocol,
)
from evaluation.metrics._protocol import UNIT_TOLERANCE, _unit


def _case(n: int = 6, side: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, side, side), dtype=np.uint8)
    masks[n // 2 :, side // 4 : side // 2, side // 3 : side // 2 + 5] = 1
    maps = rng.normal(size=(n, side // 2, side // 2)).astype(np.float32)
    maps[n // 2 :, side // 8 : side // 4, side // 6 : side // 4 + 2] += 2.0
    labels = (masks.reshape(n, -1).max(axis=1) > 0).astype(np.uint8)
    scores = maps.reshape(n, -1).max(axis=1)
    return masks, maps, labels, scores


def test_the_halves_are_what_to_protocol_returns():
    masks, maps, _, _ = _case()
    both_masks, both_maps = to_protocol(masks, maps)
    assert np.array_equal(masks_to_protocol(masks), both_masks)
    assert np.array_equal(maps_to_protocol(maps), both_maps)
    assert masks_to_protocol(masks).dtype == np.uint8 and masks_to_protocol(masks).shape == (6, EVAL_SIZE, EVAL_SIZE)
    assert maps_to_protocol(maps).dtype == np.float32


def test_masks_stay_binary_and_maps_at_the_size_are_unchanged():
    masks, _, _, _ = _case(side=EVAL_SIZE)
    assert set(np.unique(masks_to_protocol(masks, size=33))) <= {0, 1}
    exact = np.random.default_rng(1).random((2, EVAL_SIZE, EVAL_SIZE)).astype(np.float32)
    assert np.array_equal(maps_to_protocol(exact), exact)
    assert np.array_equal(masks_to_protocol(masks), masks)


def test_each_half_checks_only_its_own_input():
    with pytest.raises(ValueError, match="binary"):
        masks_to_protocol(np.full((1, 8, 8), 2, dtype=np.uint8))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        maps_to_protocol(np.zeros((1, 8, 8)), size=0)
    with pytest.raises(ValueError, match="overflow float32"):
        maps_to_protocol(np.full((1, 8, 8), 1e300))


def test_evaluate_at_protocol_is_resize_then_evaluate():
    masks, maps, labels, scores = _case()
    protocol_masks, protocol_maps = to_protocol(masks, maps)
    assert evaluate_at_protocol(masks, maps, labels, scores) == evaluate(protocol_masks, protocol_maps, labels, scores)
    small = evaluate_at_protocol(masks, maps, labels, scores, size=64, iou_limit=0.5)
    assert small == evaluate(*to_protocol(masks, maps, size=64), labels, scores, iou_limit=0.5)


def test_evaluate_at_protocol_names_mismatched_inputs():
    masks, maps, labels, scores = _case()
    with pytest.raises(ValueError, match="same number of images"):
        evaluate_at_protocol(masks, maps[:-1], labels, scores)
    with pytest.raises(ValueError, match="labels/scores describe 5 images"):
        evaluate_at_protocol(masks, maps, labels[:-1], scores[:-1])


def test_rounding_just_outside_the_unit_interval_is_clipped_and_nothing_else():
    assert _unit(1.0 + UNIT_TOLERANCE / 2) == 1.0
    assert _unit(-UNIT_TOLERANCE / 2) == 0.0
    assert _unit(0.25) == 0.25
    assert _unit(1.0 + 10 * UNIT_TOLERANCE) == 1.0 + 10 * UNIT_TOLERANCE  # a real error is not hidden

"""Resolution protocol: metrics are computed at ``EVAL_SIZE`` x ``EVAL_SIZE``.

Masks and maps reach the protocol size separately (:func:`masks_to_protocol`,
:func:`maps_to_protocol`), so a caller that has only one of them (ground truth resized once,
maps streamed in batches) never invents the other. :func:`evaluate_at_protocol` is the one
composition "resize to the protocol, then evaluate" that the runner and server-side scoring
both use, so a reproduced and a server-scored value are computed the same way.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._combined import evaluate
from ._validate import check_maps, check_masks

__all__ = [
    "EVALUATOR_VERSION",
    "EVAL_SIZE",
    "UNIT_TOLERANCE",
    "evaluate_at_protocol",
    "maps_to_protocol",
    "masks_to_protocol",
    "to_protocol",
]

EVAL_SIZE = 256
EVALUATOR_VERSION = f"vadi-eval-1.0@{EVAL_SIZE}"
#: Floating-point slack tolerated around [0, 1] (sums of many areas can land at 1 + 1e-14).
UNIT_TOLERANCE = 1e-9


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return int(size)


def masks_to_protocol(masks: object, *, size: int = EVAL_SIZE) -> np.ndarray:
    """Resize binary ground-truth masks to ``size`` x ``size`` with nearest neighbour.

    Parameters
    ----------
    masks : array_like of shape (N, H, W)
        Binary ground truth (bool or 0/1).
    size : int, default EVAL_SIZE
        Side of the square output.

    Returns
    -------
    numpy.ndarray of shape (N, size, size), uint8 in {0, 1}
        Nearest-neighbour resize (``cv2.INTER_NEAREST``), so no new values appear; masks already
        at the size are copied unchanged.

    Raises
    ------
    ValueError
        On non-binary or malformed masks, or a non-positive ``size``.
    """
    return _resize_masks(check_masks(masks), _check_size(size))


def maps_to_protocol(maps: object, *, size: int = EVAL_SIZE) -> np.ndarray:
    """Resize anomaly maps to ``size`` x ``size`` bilinearly, in float32.

    Parameters
    ----------
    maps : array_like of shape (N, h, w)
        Anomaly maps at any resolution (finite real numbers; float16 is widened exactly).
    size : int, default EVAL_SIZE
        Side of the square output.

    Returns
    -------
    numpy.ndarray of shape (N, size, size), float32
        Bilinear resize (``cv2.INTER_LINEAR``); maps already at the size are cast to float32
        unchanged.

    Raises
    ------
    ValueError
        On malformed or non-finite maps, values that overflow float32, or a non-positive ``size``.
    """
    return _resize_maps(check_maps(maps), _check_size(size))


def to_protocol(masks: object, maps: object, *, size: int = EVAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Both halves at once: ``(masks_to_protocol(masks), maps_to_protocol(maps))``.

    Raises
    ------
    ValueError
        As the two halves do, or when masks and maps hold different numbers of images.
    """
    size = _check_size(size)
    masks_b = check_masks(masks)
    maps_f = check_maps(maps)
    if masks_b.shape[0] != maps_f.shape[0]:
        raise ValueError(
            f"masks and maps must hold the same number of images, got {masks_b.shape[0]} and {maps_f.shape[0]}"
        )
    return _resize_masks(masks_b, size), _resize_maps(maps_f, size)


def _resize_masks(masks_b: np.ndarray, size: int) -> np.ndarray:
    """Validated (N, H, W) bool masks -> (N, size, size) uint8, nearest neighbour."""
    out = np.empty((masks_b.shape[0], size, size), dtype=np.uint8)
    for i in range(masks_b.shape[0]):
        mask = masks_b[i].view(np.uint8)
        out[i] = mask if mask.shape == (size, size) else cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return out


def _resize_maps(maps_f: np.ndarray, size: int) -> np.ndarray:
    """Validated (N, h, w) real maps -> (N, size, size) float32, bilinear."""
    out = np.empty((maps_f.shape[0], size, size), dtype=np.float32)
    for i in range(maps_f.shape[0]):
        with np.errstate(over="ignore"):  # an overflow is reported below, by name
            amap = maps_f[i].astype(np.float32, copy=False)
        if amap.shape == (size, size):
            out[i] = amap
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            resized = cv2.resize(amap, (size, size), interpolation=cv2.INTER_LINEAR)
        if not np.isfinite(resized).all() and np.isfinite(amap).all():
            # float32 arithmetic overflowed between finite values near +-3.4e38 (a weighted sum or a
            # difference of two of them); a bilinear value is a convex combination of its four
            # neighbours, so computed in float64 it fits float32 again
            resized = cv2.resize(amap.astype(np.float64), (size, size), interpolation=cv2.INTER_LINEAR)
            resized = resized.astype(np.float32)
        out[i] = resized
    if not np.isfinite(out).all():
        raise ValueError("maps overflow float32 (values beyond about 3.4e38)")
    return out


def _unit(value: float) -> float:
    """``value`` as a float, with rounding excursions just outside [0, 1] clipped back in."""
    number = float(value)
    if -UNIT_TOLERANCE <= number < 0.0:
        return 0.0
    if 1.0 < number <= 1.0 + UNIT_TOLERANCE:
        return 1.0
    return number


def evaluate_at_protocol(
    masks: object,
    maps: object,
    labels: object,
    scores: object,
    *,
    size: int = EVAL_SIZE,
    fpr_limit: float = 0.3,
    iou_limit: float = 0.3,
) -> dict[str, float]:
    """Resize masks and maps to the protocol, then compute all four metrics (:func:`evaluate`).

    Parameters
    ----------
    masks : array_like of shape (N, H, W)
        Binary ground truth at any resolution (nearest resize).
    maps : array_like of shape (N, h, w)
        Anomaly maps at any resolution (bilinear resize); higher means more anomalous.
    labels : array_like of shape (N,)
        Image labels, 1 for anomalous.
    scores : array_like of shape (N,)
        Image anomaly scores.
    size : int, default EVAL_SIZE
        The protocol's resolution (named by :data:`EVALUATOR_VERSION`).
    fpr_limit, iou_limit : float, default 0.3
        As for :func:`evaluate`.

    Returns
    -------
    dict of str to float
        ``{"image_auroc", "pixel_auroc", "aupro", "pl"}`` as Python floats in [0, 1]; floating
        rounding just outside the interval (within :data:`UNIT_TOLERANCE`) is clipped back, so
        every value passes the leaderboard's range check.

    Raises
    ------
    ValueError
        On bad input (naming it), including masks and maps with different image counts.
    """
    protocol_masks, protocol_maps = to_protocol(masks, maps, size=size)
    values = evaluate(protocol_masks, protocol_maps, labels, scores, fpr_limit=fpr_limit, iou_limit=iou_limit)
    return {key: _unit(value) for key, value in values.items()}

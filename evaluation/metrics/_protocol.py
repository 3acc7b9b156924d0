"""Resolution protocol: metrics are computed at ``EVAL_SIZE`` x ``EVAL_SIZE``."""

from __future__ import annotations

import cv2
import numpy as np

from ._validate import check_maps, check_masks

__all__ = ["EVALUATOR_VERSION", "EVAL_SIZE", "to_protocol"]

EVAL_SIZE = 256
EVALUATOR_VERSION = f"vadi-eval-1.0@{EVAL_SIZE}"


def to_protocol(masks: object, maps: object, *, size: int = EVAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Resize masks and maps to ``size`` x ``size`` for evaluation.

    Parameters
    ----------
    masks : array_like of shape (N, H, W)
        Binary ground truth; resized with nearest neighbour (``cv2.INTER_NEAREST``).
    maps : array_like of shape (N, h, w)
        Anomaly maps (may have another resolution than the masks); resized bilinearly
        (``cv2.INTER_LINEAR``) in float32.
    size : int, default EVAL_SIZE
        Side of the square output.

    Returns
    -------
    tuple of numpy.ndarray
        ``masks`` as uint8 {0, 1} of shape (N, size, size), ``maps`` as float32 of the same shape.

    Raises
    ------
    ValueError
        On bad masks or maps, different image counts, or a non-positive ``size``.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    masks_b = check_masks(masks)
    maps_f = check_maps(maps)
    if masks_b.shape[0] != maps_f.shape[0]:
        raise ValueError(f"masks and maps must hold the same number of images, got {masks_b.shape[0]} and "
                         f"{maps_f.shape[0]}")
    out_masks = np.empty((masks_b.shape[0], size, size), dtype=np.uint8)
    out_maps = np.empty((maps_f.shape[0], size, size), dtype=np.float32)
    for i in range(masks_b.shape[0]):
        mask = masks_b[i].view(np.uint8)
        out_masks[i] = mask if mask.shape == (size, size) else cv2.resize(
            mask, (size, size), interpolation=cv2.INTER_NEAREST)
        amap = maps_f[i].astype(np.float32, copy=False)
        out_maps[i] = amap if amap.shape == (size, size) else cv2.resize(
            amap, (size, size), interpolation=cv2.INTER_LINEAR)
    if not np.isfinite(out_maps).all():
        raise ValueError("maps overflow float32 (values beyond about 3.4e38)")
    return out_masks, out_maps

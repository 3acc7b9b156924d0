"""Connected regions of ground-truth masks (8-connectivity), shared by AUPRO and PL."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["label_regions"]


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected regions of one boolean (H, W) mask.

    Labels run 1..n in raster order of each region's first pixel (the order
    ``skimage.measure.label`` and ``scipy.ndimage.label`` give); 0 is background.
    OpenCV's pixel-based SAUF scan is used because it keeps that order (the block-based
    default does not) and is about twice as fast as ``scipy.ndimage.label``.

    Returns the int32 label image and the number of regions.
    """
    mask_u8 = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    count, labels = cv2.connectedComponentsWithAlgorithm(mask_u8, 8, cv2.CV_32S, cv2.CCL_SAUF)
    return labels, int(count) - 1

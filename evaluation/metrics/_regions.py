"""Connected regions of ground-truth masks (8-connectivity), shared by AUPRO and PL."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["EIGHT_CONNECTED", "label_regions"]

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected regions of one boolean (H, W) mask.

    Labels run 1..n in raster order of each region's first pixel (the order
    ``skimage.measure.label`` gives); 0 is background.
    """
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return labels, int(count)

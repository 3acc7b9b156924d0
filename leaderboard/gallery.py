"""The PL gallery: a test image with its ground-truth boxes and the region predicted at PL's threshold.

Drawn server-side (OpenCV, PNG) from what a run saved: its ``predictions.npz`` (float32 maps, as
evaluated) and the category's test image, for datasets whose ground truth is public only
(``selectors.localisation.PUBLIC_GROUND_TRUTH_DATASETS``). Everything is at the protocol's
resolution, where PL was measured: the image and the map are brought to ``size x size`` (the map
exactly as ``evaluation.metrics.maps_to_protocol`` does), the predicted region is ``map >
threshold`` and the boxes are the rotated boxes PL measured IoUs against. Rendered images are
cached (``leaderboard.cache``-style key on the row's ``updated_at``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from django.conf import settings
from django.core.cache import cache

from .models import Localisation

SCALE = 2  # the 256 px protocol image drawn at 512 px
FOUND_BGR = (115, 158, 0)  # Okabe-Ito bluish green #009E73
MISSED_BGR = (0, 94, 213)  # Okabe-Ito vermillion #D55E00
PREDICTED_BGR = (0, 159, 230)  # Okabe-Ito orange #E69F00
CACHE_SECONDS = 24 * 3600


class GalleryUnavailable(LookupError):
    """The image cannot be drawn: the saved predictions or the test image are missing."""


def _predicted_map(localisation: Localisation, image_id: str) -> np.ndarray:
    from evaluation.metrics import maps_to_protocol

    path = Path(localisation.predictions)
    if not path.is_file():
        raise GalleryUnavailable("the run's saved predictions are no longer on this server")
    key = f"map__{localisation.result.variant}"
    with np.load(path, allow_pickle=False) as saved:
        ids = [str(i) for i in saved["ids"]]
        if key not in saved.files or image_id not in ids:
            raise GalleryUnavailable("the saved predictions do not hold this image's map")
        amap = saved[key][ids.index(image_id)]
    return maps_to_protocol(amap[None], size=localisation.size)[0]


def _test_image(category_key: str, image_id: str, size: int) -> np.ndarray:
    from algorithms.data import DatasetError, load_category

    try:
        category = load_category(category_key, roots=settings.DATASET_ROOTS)
        index = category.test_ids.index(image_id)
        image = category.test_images()[index]
    except (DatasetError, OSError, ValueError) as exc:
        raise GalleryUnavailable("the test image is not available on this server") from exc
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def draw_example(image_rgb: np.ndarray, region: np.ndarray, anomalies: list[dict[str, Any]]) -> np.ndarray:
    """The image (RGB, size x size) with the predicted region and the ground-truth boxes, as BGR at ``SCALE``.

    Pure: the predicted region (a boolean size x size mask) is tinted orange and outlined; each
    anomaly's rotated box is outlined green when PL found it, vermillion when it missed it.
    """
    size = image_rgb.shape[0]
    big = size * SCALE
    canvas = cv2.resize(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), (big, big), interpolation=cv2.INTER_NEAREST)
    region_big = cv2.resize(region.astype(np.uint8), (big, big), interpolation=cv2.INTER_NEAREST).astype(bool)
    tint = canvas.copy()
    tint[region_big] = PREDICTED_BGR
    canvas = cv2.addWeighted(tint, 0.35, canvas, 0.65, 0)
    contours, _ = cv2.findContours(region_big.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, PREDICTED_BGR, 2)
    for anomaly in anomalies:
        rect = (
            (anomaly["center_x"] * SCALE, anomaly["center_y"] * SCALE),
            (anomaly["width"] * SCALE, anomaly["height"] * SCALE),
            anomaly["angle"],
        )
        corners = np.intp(np.round(cv2.boxPoints(rect)))
        colour = FOUND_BGR if anomaly["localised"] else MISSED_BGR
        cv2.polylines(canvas, [corners], True, colour, 3, lineType=cv2.LINE_AA)
    return canvas


def example_png(*, localisation: Localisation, anomalies: list[dict[str, Any]]) -> bytes:
    """The PNG of one test image of ``localisation``'s result with ``anomalies`` (all on that image)."""
    if not anomalies:
        raise GalleryUnavailable("no anomaly of this result is on that image")
    image_index = anomalies[0]["image_index"]
    key = f"vadi:gallery:{localisation.pk}:{localisation.updated_at.timestamp()}:{image_index}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    image_id = anomalies[0]["image_id"]
    amap = _predicted_map(localisation, image_id)
    region = amap > np.float32(localisation.threshold)
    image = _test_image(localisation.result.category.key, image_id, localisation.size)
    ok, encoded = cv2.imencode(".png", draw_example(image, region, anomalies))
    if not ok:  # pragma: no cover (OpenCV encodes any uint8 image)
        raise GalleryUnavailable("the image could not be encoded")
    png = encoded.tobytes()
    cache.set(key, png, CACHE_SECONDS)
    return png

"""Generated test cases for the metrics (small, deterministic)."""

from __future__ import annotations

import cv2
import numpy as np


def draw_anomalies(rng: np.random.Generator, mask: np.ndarray, count: int) -> None:
    """Draw ``count`` anomalies of mixed kinds into ``mask`` (uint8, in place)."""
    h, w = mask.shape
    for _ in range(count):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        kind = int(rng.integers(0, 5))
        if kind == 0:  # blob
            cv2.circle(mask, (x, y), int(rng.integers(1, max(2, min(h, w) // 8))), 1, -1)
        elif kind == 1:  # thin one-pixel scratch
            cv2.line(mask, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), 1, 1)
        elif kind == 2:  # elongated, rotated
            axes = (int(rng.integers(1, max(2, w // 5))), int(rng.integers(1, 6)))
            cv2.ellipse(mask, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        elif kind == 3:  # tiny speck (often merges with neighbours)
            mask[y:y + int(rng.integers(1, 3)), x:x + int(rng.integers(1, 3))] = 1
        else:  # touching the border
            mask[: int(rng.integers(1, 6)), x: x + int(rng.integers(1, 30))] = 1


def correlated_maps(rng: np.random.Generator, masks: np.ndarray, *, noise: float = 0.3,
                    levels: int | None = None) -> np.ndarray:
    """Blurred masks plus noise (float32); optionally quantised to ``levels`` values (heavy ties)."""
    maps = np.empty(masks.shape, np.float32)
    for i, mask in enumerate(masks):
        maps[i] = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)
    maps += rng.normal(0, noise, masks.shape).astype(np.float32)
    if levels is not None:
        maps = np.round(maps * levels).astype(np.float32) / levels
    return maps


def make_case(seed: int, *, n: int = 4, shape: tuple[int, int] = (256, 256), max_anomalies: int = 4,
              n_normal: int = 1, levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n + n_normal, *shape), np.uint8)
    for i in range(n):
        while not masks[i].any():
            draw_anomalies(rng, masks[i], int(rng.integers(1, max_anomalies + 1)))
    return masks, correlated_maps(rng, masks, levels=levels)

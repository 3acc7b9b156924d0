"""The synthetic industrial suite: deterministic MVTec-layout categories with exact masks.

Five textures (``woven``, ``grain``, ``grid``, ``leather``, ``brushed_metal``) and four objects
(``washer``, ``screw``, ``pill``, ``pcb``). Every sample is drawn from its own random stream
(seed, category, split, index), so any single image can be regenerated on its own. A defective
sample is its clean twin with one or more defects painted in before lighting and sensor noise
(the same lighting and noise for both); its mask is exactly the set of pixels whose final
8-bit value differs from the clean twin.

Each category has a difficulty (:data:`DIFFICULTY`): **easy** categories have only clearly
visible defects (several pixels wide, strong contrast, at 128 px too) under moderate nuisance
variation; **hard** ones keep thin, small and low-contrast defects under stronger variation.

Command line::

    python -m algorithms.data.synthetic --out var/data/synthetic --seed 0 [--categories woven pcb]
        [--image-size 256] [--n-train 200] [--n-test-good 40] [--n-test-defect 60]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .registry import SYNTHETIC_CATEGORIES

__all__ = [
    "DEFECT_TYPES",
    "DIFFICULTY",
    "EASY_CATEGORIES",
    "HARD_CATEGORIES",
    "SYNTHETIC_CATEGORIES",
    "Sample",
    "generate_suite",
    "main",
    "render_examples",
    "render_sample",
]

GENERATOR_VERSION = "vadi-synthetic/2"
_MARKER = ".vadi-synthetic"
_F32 = np.float32

#: Defect types (``test/<defect>/`` folders) per category.
DEFECT_TYPES: dict[str, tuple[str, ...]] = {
    "woven": ("hole", "stain", "thread"),
    "grain": ("scratch", "crack", "stain"),
    "grid": ("missing", "contamination"),
    "leather": ("scratch", "hole", "stain"),
    "brushed_metal": ("scratch", "stain", "contamination"),
    "washer": ("crack", "missing", "contamination"),
    "screw": ("scratch", "missing", "extra"),
    "pill": ("crack", "contamination", "misprint"),
    "pcb": ("missing", "extra", "scratch", "misprint"),
}
#: Difficulty of each category (see ``docs/synthetic-suite.md``). **Easy**: every defect is
#: clearly visible at 128 px (at least 4-6 px wide at 256 px, strong contrast, no subtle ones)
#: and the nuisance variation between good samples is moderate; a good method should be
#: near-perfect. **Hard**: thin (1-2 px), small and low-contrast defects (30 % subtle) under
#: stronger nuisance variation; they separate good methods from weak ones.
DIFFICULTY: dict[str, str] = {
    "woven": "easy",
    "grain": "easy",
    "grid": "hard",
    "leather": "easy",
    "brushed_metal": "hard",
    "washer": "easy",
    "screw": "hard",
    "pill": "hard",
    "pcb": "easy",
}
#: Categories with clearly visible defects and moderate nuisance variation.
EASY_CATEGORIES: tuple[str, ...] = tuple(n for n in SYNTHETIC_CATEGORIES if DIFFICULTY[n] == "easy")
#: Categories with thin, small and low-contrast defects.
HARD_CATEGORIES: tuple[str, ...] = tuple(n for n in SYNTHETIC_CATEGORIES if DIFFICULTY[n] == "hard")


@dataclass(frozen=True)
class _Profile:
    subtle_probability: float  # share of defects drawn at low contrast / tiny size
    gain: float  # global gain range (+-)
    gradient: float  # lighting gradient across the image (+-)
    noise: tuple[float, float]  # sensor noise sigma range (grey levels)
    nuisance: float  # scale of category-specific nuisances (highlights, light direction)
    visible_delta: int  # a changed pixel counts as visible from this 8-bit change on
    visible_area: float  # visible pixels needed, in px at 256 px (scaled by (s / 256) ** 2)


_PROFILES = {
    "easy": _Profile(0.0, 0.04, 0.04, (1.0, 1.8), 0.5, visible_delta=24, visible_area=64.0),
    "hard": _Profile(0.3, 0.08, 0.08, (1.5, 2.5), 1.0, visible_delta=4, visible_area=4.0),
}
_MULTI_PROBABILITY = 0.2  # share of defective images with 2-3 defects
_SPLITS = {"train": 0, "test_good": 1, "test_defect": 2}
#: Ground truth is evaluated at this side: a defect must survive a nearest resize to it.
_EVAL_SIZE = 256


@dataclass(frozen=True)
class Sample:
    """One rendered sample: ``image`` (S, S, 3) uint8 RGB, ``mask`` (S, S) uint8 {0, 1}, its defect type."""

    image: np.ndarray
    mask: np.ndarray
    defect_type: str


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((size, size), dtype=_F32)
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Band-limited noise with unit standard deviation and feature size ``cell`` pixels."""
    n = max(2, int(np.ceil(size / cell)) + 2)
    small = rng.standard_normal((n, n), dtype=_F32)
    field = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return field / max(float(field.std()), 1e-6)


def _rotated(size: int, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(a, b)`` along and across a direction ``angle`` through ``(cy, cx)``."""
    yy, xx = _grid(size)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - _F32(cx), yy - _F32(cy)
    return (dx * _F32(c) + dy * _F32(s)), (-dx * _F32(s) + dy * _F32(c))


def _blob(
    rng: np.random.Generator, size: int, cy: float, cx: float, radius: float, roughness: float = 0.25
) -> np.ndarray:
    """An irregular filled blob (hard edge) as a bool mask."""
    radius = max(float(radius), 1.5)  # at least a few pixels, also on small images
    amps = rng.uniform(0.0, roughness, 3) / np.array([1.0, 1.5, 2.0])
    phases = rng.uniform(0.0, 2 * np.pi, 3)
    extent = radius * (1.0 + amps.sum()) + 1.0
    y0, y1 = max(0, int(cy - extent)), min(size, int(cy + extent) + 2)
    x0, x1 = max(0, int(cx - extent)), min(size, int(cx + extent) + 2)
    out = np.zeros((size, size), dtype=bool)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(_F32)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    limit = radius * (1.0 + sum(a * np.cos(k * theta + p) for k, a, p in zip((2, 3, 5), amps, phases)))
    out[y0:y1, x0:x1] = np.hypot(dy, dx) <= np.maximum(limit, 0.7)
    return out


def _stroke(
    rng: np.random.Generator,
    size: int,
    start: tuple[float, float],
    *,
    length: float,
    thickness: int,
    wiggle: float,
    step: float = 3.0,
) -> np.ndarray:
    """A random-walk polyline (no anti-aliasing) as a bool mask; ``wiggle`` is the turn std in radians."""
    n = max(2, int(length / step))
    angle = rng.uniform(0, 2 * np.pi)
    turns = np.cumsum(rng.normal(0.0, wiggle, n)) + angle
    steps = np.stack([np.sin(turns), np.cos(turns)], axis=1) * step
    points = np.vstack([np.asarray(start)[None], np.asarray(start)[None] + np.cumsum(steps, axis=0)])
    canvas = np.zeros((size, size), dtype=np.uint8)
    pts = np.round(points[:, ::-1]).astype(np.int32)  # (x, y) for OpenCV
    cv2.polylines(canvas, [pts], False, 1, thickness=int(thickness), lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _pick_point(
    rng: np.random.Generator, size: int, region: np.ndarray | None, margin: float = 0.08
) -> tuple[float, float]:
    if region is None or not region.any():
        lo, hi = margin * size, (1 - margin) * size
        y, x = rng.uniform(lo, hi, 2)
        return float(y), float(x)
    flat = np.flatnonzero(region)
    index = int(flat[rng.integers(len(flat))])
    return float(index // size), float(index % size)


def _size_scale(rng: np.random.Generator, subtle: bool) -> float:
    """Defect size multiplier: small, medium or large (subtle defects lean small)."""
    p = (0.6, 0.3, 0.1) if subtle else (0.35, 0.4, 0.25)
    return (0.5, 1.0, 2.0)[int(rng.choice(3, p=p))]


def _clear_width(rng: np.random.Generator, s: int, low: float, high: float) -> int:
    """A stroke width drawn in ``[low, high]`` px at 256 px, scaled to ``s`` (at least 2 px)."""
    return max(2, round(rng.uniform(low, high) * s / 256))


def _blend(img: np.ndarray, where: np.ndarray, colour: np.ndarray | Sequence[float], alpha: float) -> None:
    colour = np.asarray(colour, dtype=_F32)
    if colour.ndim == 1:
        img[where] = img[where] * _F32(1 - alpha) + colour * _F32(alpha)
    else:
        img[where] = img[where] * _F32(1 - alpha) + colour[where] * _F32(alpha)


# --------------------------------------------------------------------------------------------
# Clean renderers: (rng, size) -> (float32 image (S, S, 3) in 0..255, aux dict)
# aux: "fg" bool part region (None for textures), "under" what lies beneath the part or a
# hole, "stain" / "dirt" colours, plus category-specific layers used by the defects.
# --------------------------------------------------------------------------------------------


def _render_woven(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    yy, xx = _grid(s)
    theta = np.deg2rad(rng.uniform(-3, 3))
    period = s / rng.uniform(19, 23)
    c, sn = _F32(np.cos(theta)), _F32(np.sin(theta))
    u = (xx * c + yy * sn) / _F32(period) + _F32(rng.uniform(0, 2))
    v = (-xx * sn + yy * c) / _F32(period) + _F32(rng.uniform(0, 2))
    iu, iv = np.floor(u), np.floor(v)
    over = ((iu + iv) % 2) == 0
    shade = np.sqrt(np.where(over, np.sin(np.pi * (v - iv)), np.sin(np.pi * (u - iu))))
    intensity = 0.42 + 0.58 * shade + 0.05 * _smooth_noise(rng, s, 2.5)
    base = np.array([176, 158, 126], _F32) * rng.uniform(0.97, 1.03, 3).astype(_F32)
    img = intensity[..., None] * base
    return img, {"fg": None, "under": np.array([26, 22, 20], _F32), "stain": (92, 64, 40), "dirt": (52, 60, 130)}


def _render_grain(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    yy, xx = _grid(s)
    warp = _smooth_noise(rng, s, s / 5) * _F32(s / 40)
    period = s / rng.uniform(13, 18)
    phase = rng.uniform(0, 2 * np.pi)
    rings = (0.5 + 0.5 * np.sin(_F32(2 * np.pi / period) * (xx + warp + 0.04 * yy) + _F32(phase))) ** 2.5
    streak = cv2.blur(rng.standard_normal((s, s), dtype=_F32), (1, 31))
    streak /= max(float(streak.std()), 1e-6)
    light = np.array([206, 160, 112], _F32) * rng.uniform(0.97, 1.03, 3).astype(_F32)
    dark = np.array([150, 98, 58], _F32)
    img = light * (1 - rings[..., None]) + dark * rings[..., None] + (5 * streak)[..., None]
    return img, {"fg": None, "under": np.array([40, 26, 16], _F32), "stain": (70, 45, 30), "dirt": (30, 30, 30)}


def _render_grid(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    theta = np.deg2rad(rng.uniform(-4, 4))
    period = s / rng.uniform(14, 17)
    a, b = _rotated(s, 0.0, 0.0, theta)
    u = a / _F32(period) + _F32(rng.uniform(0, 1))
    v = b / _F32(period) + _F32(rng.uniform(0, 1))
    width = _F32(period * 0.13)
    du = np.abs(u - np.floor(u) - 0.5) * _F32(period)
    dv = np.abs(v - np.floor(v) - 0.5) * _F32(period)
    wire = np.maximum(np.exp(-((du / width) ** 2)), np.exp(-((dv / width) ** 2)))
    background = 58 + 6 * _smooth_noise(rng, s, s / 6)
    metal = 172 + 12 * _smooth_noise(rng, s, 4)
    grey = background * (1 - wire) + metal * wire
    img = np.repeat(grey[..., None], 3, axis=2)
    under = np.repeat(background[..., None], 3, axis=2)
    return img, {"fg": wire > 0.5, "under": under, "stain": (40, 40, 40), "dirt": (110, 80, 50)}


def _render_leather(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    cells = _smooth_noise(rng, s, 5.0 * s / 256)
    crease = np.exp(-((cells / 0.28) ** 2))
    intensity = 1.0 - 0.32 * crease + 0.05 * _smooth_noise(rng, s, 2.0)
    base = np.array([128, 86, 56], _F32) * rng.uniform(0.96, 1.04, 3).astype(_F32)
    img = intensity[..., None] * base
    return img, {"fg": None, "under": np.array([22, 16, 12], _F32), "stain": (60, 40, 28), "dirt": (200, 190, 170)}


def _render_brushed_metal(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    yy, xx = _grid(s)
    streak = cv2.blur(rng.standard_normal((s, s), dtype=_F32), (61, 1))
    streak /= max(float(streak.std()), 1e-6)
    cy, cx = rng.uniform(0.2, 0.8, 2) * s
    highlight = np.exp(-((xx - _F32(cx)) ** 2 + (yy - _F32(cy)) ** 2) / _F32(2 * (0.35 * s) ** 2))
    grey = 132 + 9 * streak + _F32(45 * nuisance) * highlight + 5 * _smooth_noise(rng, s, s / 4)
    img = grey[..., None] * np.array([1.0, 1.0, 1.04], _F32)
    return img, {"fg": None, "under": np.array([30, 30, 32], _F32), "stain": (95, 85, 60), "dirt": (40, 35, 30)}


def _render_washer(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    cy, cx = (0.5 + rng.uniform(-0.03, 0.03, 2)) * s
    outer, inner = 0.36 * s * rng.uniform(0.98, 1.02), 0.15 * s
    yy, xx = _grid(s)
    dy, dx = yy - _F32(cy), xx - _F32(cx)
    r = np.hypot(dy, dx)
    phi = np.arctan2(dy, dx)
    key_angle = rng.uniform(-np.pi, np.pi)
    off = np.abs(np.angle(np.exp(1j * (phi - key_angle)))).astype(_F32)
    tab = (r >= inner - 0.05 * s) & (r < inner) & (off < 0.16)
    coverage = np.clip(_F32(outer) - r + 0.5, 0, 1) * np.clip(r - _F32(inner) + 0.5, 0, 1)
    coverage = np.maximum(coverage, tab.astype(_F32))
    light = np.pi / 4 + rng.uniform(-np.pi, np.pi) * nuisance  # easy: light from one half-turn of directions
    radial = (r - _F32(inner)) / _F32(outer - inner)
    rings = np.sin(r * _F32(2 * np.pi / 2.7))  # fine turning marks
    metal = 150 + _F32(40 * nuisance) * np.cos(phi - _F32(light)) * radial + _F32(6 * nuisance) * rings
    background = 46 + 4 * _smooth_noise(rng, s, s / 5)
    grey = background * (1 - coverage) + metal * coverage
    img = grey[..., None] * np.array([1.0, 0.98, 0.94], _F32)
    under = background[..., None] * np.array([1.0, 0.98, 0.94], _F32)
    return img, {
        "fg": coverage > 0.5,
        "under": under,
        "stain": (90, 70, 40),
        "dirt": (35, 30, 25),
        "centre": (cy, cx),
        "outer": outer,
    }


def _render_screw(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    cy, cx = (0.5 + rng.uniform(-0.05, 0.05, 2)) * s
    angle = rng.uniform(0, 2 * np.pi)
    a, b = _rotated(s, cy, cx, angle)
    half_len, half_w, head_r = 0.3 * s, 0.045 * s, 0.085 * s
    pitch = 0.035 * s
    tri = np.abs((a / _F32(pitch)) % 1 - 0.5) * 2  # 0..1 saw-tooth
    width = _F32(half_w) * (1 + 0.28 * tri) * np.clip((_F32(half_len) - a) / _F32(0.12 * s), 0, 1)
    shaft = np.clip(width - np.abs(b) + 0.5, 0, 1) * (a > -half_len) * (width > 0)
    rh = np.hypot(a + _F32(half_len), b)
    head = np.clip(_F32(head_r) - rh + 0.5, 0, 1)
    shaft_shade = 70 + 95 * np.sqrt(np.clip(1 - (b / np.maximum(width, 1e-3)) ** 2, 0, 1))
    head_shade = 85 + 70 * (1 - rh / _F32(head_r)) - 55 * (np.abs(b) < 0.012 * s)
    metal = np.where(head > 0, head_shade, shaft_shade)
    coverage = np.maximum(shaft, head)
    background = 196 + 4 * _smooth_noise(rng, s, s / 5)
    grey = background * (1 - coverage) + metal * coverage
    img = np.repeat(grey[..., None], 3, axis=2)
    under = np.repeat(background[..., None], 3, axis=2)
    return img, {
        "fg": coverage > 0.5,
        "under": under,
        "stain": (60, 60, 60),
        "dirt": (40, 40, 40),
        "axis": a,
        "half_len": half_len,
        "metal": (120, 120, 120),
    }


def _render_pill(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    cy, cx = (0.5 + rng.uniform(-0.025, 0.025, 2)) * s
    angle = np.deg2rad(rng.uniform(-4, 4))
    a, b = _rotated(s, cy, cx, angle)
    big, small = 0.4 * s, 0.2 * s
    q = (a / _F32(big)) ** 2 + (b / _F32(small)) ** 2
    coverage = np.clip((1 - q) * _F32(small * 0.5) + 0.5, 0, 1)
    dome = np.sqrt(np.clip(1 - q, 0, 1))
    body = np.array([232, 226, 212], _F32) * (0.86 + 0.14 * dome)[..., None]
    speckle = np.zeros((s, s), np.uint8)
    n = int(rng.integers(25, 60))
    ta, tr = rng.uniform(0, 2 * np.pi, n), np.sqrt(rng.uniform(0, 0.85, n))
    sa = tr * np.cos(ta) * big
    sb = tr * np.sin(ta) * small
    px = cx + sa * np.cos(angle) - sb * np.sin(angle)
    py = cy + sa * np.sin(angle) + sb * np.cos(angle)
    radii = rng.integers(1, 3, n)
    for x, y, rad in zip(px, py, radii):
        cv2.circle(speckle, (round(x), round(y)), int(rad), 1, -1, lineType=cv2.LINE_8)
    body[speckle.astype(bool)] = (196, 82, 70)
    text = np.zeros((s, s), np.uint8)
    scale = 1.3 * s / 256
    (tw, th), _ = cv2.getTextSize("FF", cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(2 * s / 256)))
    cv2.putText(
        text,
        "FF",
        (round(s / 2 - tw / 2), round(s / 2 + th / 2)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        1,
        max(1, round(2 * s / 256)),
        lineType=cv2.LINE_8,
    )
    warp = cv2.getRotationMatrix2D((s / 2, s / 2), -np.rad2deg(angle), 1.0)
    warp[:, 2] += (cx - s / 2, cy - s / 2)
    printed = cv2.warpAffine(text, warp, (s, s), flags=cv2.INTER_NEAREST).astype(bool)
    background = 34 + 4 * _smooth_noise(rng, s, s / 5)
    under = np.repeat(background[..., None], 3, axis=2)
    img = under * (1 - coverage[..., None]) + body * coverage[..., None]
    body_img = img.copy()
    img[printed] = (118, 58, 50)
    return img, {
        "fg": coverage > 0.5,
        "under": under,
        "stain": (180, 120, 90),
        "dirt": (60, 50, 45),
        "body": body_img,
        "print": printed,
        "print_colour": (118, 58, 50),
    }


@lru_cache(maxsize=4)
def _pcb_layout(size: int) -> dict:
    """The board design: the same for every sample of the category (pad = room for shifts)."""
    rng = np.random.default_rng(20240601)
    pad = max(4, size // 40)
    n = size + 2 * pad
    unit = size / 256
    board = np.empty((n, n, 3), _F32)
    board[:] = (34, 104, 58)
    board += (6 * _smooth_noise(rng, n, 6 * unit))[..., None]
    copper = np.zeros((n, n), np.uint8)
    for _ in range(14):  # traces: Manhattan polylines
        x, y = rng.uniform(0.08, 0.92, 2) * n
        pts = [(x, y)]
        for _ in range(int(rng.integers(2, 5))):
            if rng.random() < 0.5:
                x = float(np.clip(x + rng.uniform(-0.4, 0.4) * n, 0.05 * n, 0.95 * n))
            else:
                y = float(np.clip(y + rng.uniform(-0.4, 0.4) * n, 0.05 * n, 0.95 * n))
            pts.append((x, y))
        cv2.polylines(copper, [np.round(pts).astype(np.int32)], False, 1, max(1, round(3 * unit)), cv2.LINE_8)
    board[copper.astype(bool)] = (62, 150, 84)
    pads = np.zeros((n, n), np.uint8)
    for _ in range(30):
        x, y = rng.uniform(0.06, 0.94, 2) * n
        cv2.circle(pads, (round(x), round(y)), max(2, round(4 * unit)), 1, -1, cv2.LINE_8)
    board[pads.astype(bool)] = (196, 190, 170)
    silk_labels: list[np.ndarray] = []
    components: list[tuple[np.ndarray, np.ndarray]] = []
    placed = np.zeros((n, n), bool)
    for name in ("U1", "U2", "R1", "R2", "R3", "C1", "C2", "C3", "Q1", "D1"):
        kind = "ic" if name.startswith("U") else ("cap" if name.startswith("C") else "small")
        for _attempt in range(30):
            w, h = {"ic": (52, 34), "cap": (22, 22), "small": (24, 12)}[kind]
            if kind != "cap" and rng.random() < 0.5:
                w, h = h, w
            w, h = round(w * unit), round(h * unit)
            x0 = int(rng.uniform(0.08 * n, 0.92 * n - w))
            y0 = int(rng.uniform(0.1 * n, 0.9 * n - h))
            box = np.zeros((n, n), bool)
            box[max(0, y0 - round(14 * unit)) : y0 + h + 4, max(0, x0 - 4) : x0 + w + 4] = True
            if not (box & placed).any():
                break
        placed |= box
        body = np.zeros((n, n), np.uint8)
        if kind == "cap":
            cv2.circle(body, (x0 + w // 2, y0 + h // 2), w // 2, 1, -1, cv2.LINE_8)
        else:
            cv2.rectangle(body, (x0, y0), (x0 + w - 1, y0 + h - 1), 1, -1, cv2.LINE_8)
        comp = body.astype(bool)
        colours = np.zeros((n, n, 3), _F32)
        colours[comp] = {"ic": (28, 28, 30), "cap": (150, 120, 60), "small": (200, 170, 120)}[kind]
        band = max(1, round(2 * unit))
        if kind == "ic":  # pins along the long sides and a pin-1 dot
            pins = np.zeros((n, n), np.uint8)
            for k in range(6):
                if w >= h:
                    px = x0 + round((k + 0.5) * w / 6)
                    cv2.rectangle(pins, (px - 1, y0 - 3), (px + 1, y0 - 1), 1, -1)
                    cv2.rectangle(pins, (px - 1, y0 + h), (px + 1, y0 + h + 2), 1, -1)
                else:
                    py = y0 + round((k + 0.5) * h / 6)
                    cv2.rectangle(pins, (x0 - 3, py - 1), (x0 - 1, py + 1), 1, -1)
                    cv2.rectangle(pins, (x0 + w, py - 1), (x0 + w + 2, py + 1), 1, -1)
            pin_mask = pins.astype(bool)
            colours[pin_mask] = (200, 200, 196)
            comp = comp | pin_mask
            colours[y0 + 3 : y0 + 6, x0 + 3 : x0 + 6] = (90, 90, 90)
        elif kind == "small":  # colour bands
            for k in (0.3, 0.5, 0.7):
                if w >= h:
                    colours[y0 : y0 + h, x0 + round(k * w) : x0 + round(k * w) + band] = (120, 40, 30)
                else:
                    colours[y0 + round(k * h) : y0 + round(k * h) + band, x0 : x0 + w] = (120, 40, 30)
        components.append((comp, colours))
        label = np.zeros((n, n), np.uint8)
        cv2.putText(
            label, name, (x0, y0 - round(5 * unit)), cv2.FONT_HERSHEY_PLAIN, max(0.6, 0.8 * unit), 1, 1, cv2.LINE_8
        )
        silk_labels.append(label.astype(bool) & ~comp)
    base = board  # bare board: copper traces and pads
    no_parts = base.copy()
    for silk in silk_labels:
        no_parts[silk] = (235, 235, 225)
    full = no_parts.copy()
    for comp, colours in components:
        full[comp] = colours[comp]
    return {
        "pad": pad,
        "full": full,
        "no_parts": no_parts,
        "base": base,
        "components": [c for c, _ in components],
        "silk": silk_labels,
    }


def _render_pcb(rng: np.random.Generator, s: int, nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    layout = _pcb_layout(s)
    pad = layout["pad"]
    shift = max(1, round(pad * nuisance))  # easy: a few pixels of play in the fixture
    dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, 2))
    window = (slice(pad + dy, pad + dy + s), slice(pad + dx, pad + dx + s))
    img = layout["full"][window].copy()
    aux = {
        "fg": None,
        "under": layout["no_parts"][window],
        "base": layout["base"][window],
        "components": [c[window] for c in layout["components"]],
        "silk": [m[window] for m in layout["silk"]],
        "stain": (60, 60, 40),
        "dirt": (40, 40, 40),
        "metal": (205, 205, 200),
    }
    return img, aux


_RENDERERS: dict[str, Callable[[np.random.Generator, int, float], tuple[np.ndarray, dict]]] = {
    "woven": _render_woven,
    "grain": _render_grain,
    "grid": _render_grid,
    "leather": _render_leather,
    "brushed_metal": _render_brushed_metal,
    "washer": _render_washer,
    "screw": _render_screw,
    "pill": _render_pill,
    "pcb": _render_pcb,
}

# --------------------------------------------------------------------------------------------
# Defects: paint one defect into ``img`` (float32, in place). ``subtle`` = low contrast / tiny;
# ``aux["clear"]`` (easy categories) = wide, high-contrast defects only.
# --------------------------------------------------------------------------------------------


def _defect_scratch(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    unit = s / 256
    start = _pick_point(rng, s, aux["fg"])
    if aux["clear"]:  # a gouge: 5-8 px wide at 256 px, strong contrast
        length = rng.uniform(0.15, 0.4) * s
        thickness = _clear_width(rng, s, 5, 8)
    else:
        length = rng.uniform(0.12, 0.45) * s * _size_scale(rng, subtle)
        thickness = int(rng.choice([1, 1, 2])) if unit <= 1.5 else 2
    mark = _stroke(rng, s, start, length=length, thickness=thickness, wiggle=0.04)
    if aux["fg"] is not None:
        mark &= aux["fg"]
    level = float(img[mark].mean()) if mark.any() else 128.0
    if aux["clear"]:
        delta = rng.uniform(60, 95)
    else:
        delta = rng.uniform(8, 14) if subtle else rng.uniform(35, 80)
    img[mark] += _F32(delta if level < 140 else -delta)


def _defect_crack(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    start = _pick_point(rng, s, aux["fg"])
    if aux["clear"]:  # 4-6 px wide at 256 px, dark
        length = rng.uniform(0.12, 0.25) * s
        thickness, step = _clear_width(rng, s, 4, 6), 3.0 * s / 256 + 1.0
    else:
        length = rng.uniform(0.06, 0.22) * s * _size_scale(rng, subtle)
        thickness, step = 1, 2.0
    mark = _stroke(rng, s, start, length=length, thickness=thickness, wiggle=0.55, step=step)
    if rng.random() < 0.5:  # a branch
        points = np.argwhere(mark)
        y, x = points[rng.integers(len(points))]
        mark |= _stroke(rng, s, (float(y), float(x)), length=length * 0.5, thickness=thickness, wiggle=0.55, step=step)
    if aux["fg"] is not None:
        mark &= aux["fg"]
    if aux["clear"]:
        factor = rng.uniform(0.2, 0.4)
    else:
        factor = rng.uniform(0.84, 0.9) if subtle else rng.uniform(0.3, 0.55)
    img[mark] *= _F32(factor)


def _defect_hole(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    cy, cx = _pick_point(rng, s, aux["fg"])
    if aux["clear"]:
        radius = rng.uniform(6.0, 14.0)
    else:
        radius = rng.uniform(2.0, 3.0) if subtle else rng.uniform(3.0, 9.0) * _size_scale(rng, subtle)
    region = _blob(rng, s, cy, cx, radius * s / 256)
    if aux["fg"] is not None:
        region &= aux["fg"]
    under = aux["under"]
    img[region] = under if np.ndim(under) == 1 else under[region]


def _defect_stain(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    cy, cx = _pick_point(rng, s, aux["fg"])
    scale = rng.uniform(1.0, 1.8) if aux["clear"] else _size_scale(rng, subtle)
    radius = rng.uniform(6.0, 16.0) * scale * s / 256
    region = _blob(rng, s, cy, cx, radius, roughness=0.4)
    if aux["fg"] is not None:
        region &= aux["fg"]
    if aux["clear"]:
        alpha = rng.uniform(0.5, 0.75)
    else:
        alpha = rng.uniform(0.07, 0.12) if subtle else rng.uniform(0.25, 0.5)
    _blend(img, region, aux["stain"], alpha)


def _defect_contamination(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    cy, cx = _pick_point(rng, s, aux["fg"])
    unit = s / 256
    region = np.zeros((s, s), bool)
    if aux["clear"]:  # a cluster of 1-4 particles, each 8-16 px across at 256 px
        for _ in range(int(rng.integers(1, 5))):
            oy, ox = rng.normal(0, rng.uniform(3, 9) * unit, 2)
            region |= _blob(rng, s, cy + oy, cx + ox, rng.uniform(4.0, 8.0) * unit, roughness=0.4)
        if aux["fg"] is not None:
            region &= aux["fg"]
        _blend(img, region, aux["dirt"], rng.uniform(0.9, 1.0))
        return
    if rng.random() < 0.3:  # a fibre
        region |= _stroke(rng, s, (cy, cx), length=rng.uniform(10, 40) * unit, thickness=1, wiggle=0.3, step=2.0)
    else:
        spread = rng.uniform(2, 10) * unit * _size_scale(rng, subtle)
        for _ in range(int(rng.integers(1, 6))):
            oy, ox = rng.normal(0, spread, 2)
            region |= _blob(rng, s, cy + oy, cx + ox, rng.uniform(1.0, 3.5) * unit, roughness=0.5)
    if aux["fg"] is not None:
        region &= aux["fg"]
    _blend(img, region, aux["dirt"], rng.uniform(0.25, 0.4) if subtle else rng.uniform(0.8, 1.0))


def _defect_thread(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    start = _pick_point(rng, s, aux["fg"])
    length = rng.uniform(0.15, 0.5) * s
    if aux["clear"]:  # a loose thread 4-6 px thick at 256 px
        mark = _stroke(rng, s, start, length=length, thickness=_clear_width(rng, s, 4, 6), wiggle=0.25, step=3.0)
        _blend(img, mark, aux["dirt"], rng.uniform(0.85, 1.0))
        return
    mark = _stroke(rng, s, start, length=length, thickness=int(rng.choice([1, 2])), wiggle=0.25, step=2.0)
    _blend(img, mark, aux["dirt"], rng.uniform(0.25, 0.35) if subtle else rng.uniform(0.75, 1.0))


def _defect_missing(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    under = aux["under"]
    if "components" in aux:  # pcb: a component is not placed
        comp = aux["components"][int(rng.integers(len(aux["components"])))]
        img[comp] = under[comp]
        if aux["clear"] and comp.any():  # the bare solder pads at both ends of the footprint
            ys, xs = np.nonzero(comp)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            pads = np.zeros_like(comp)
            if x1 - x0 >= y1 - y0:
                end = max(2, (x1 - x0) // 4)
                pads[y0:y1, x0 : x0 + end] = pads[y0:y1, x1 - end : x1] = True
            else:
                end = max(2, (y1 - y0) // 4)
                pads[y0 : y0 + end, x0:x1] = pads[y1 - end : y1, x0:x1] = True
            _blend(img, pads & comp, aux["metal"], 1.0)
        return
    if "axis" in aux:  # screw: the tip is broken off
        cut = aux["half_len"] - rng.uniform(0.02, 0.06 if subtle else 0.16) * s
        region = aux["fg"] & (aux["axis"] > cut)
    elif "outer" in aux:  # washer: a chip out of the rim
        cy, cx = aux["centre"]
        angle = rng.uniform(-np.pi, np.pi)
        if aux["clear"]:
            radius = rng.uniform(14, 24) * s / 256
        else:
            radius = (rng.uniform(3, 5) if subtle else rng.uniform(6, 16) * _size_scale(rng, subtle)) * s / 256
        depth = aux["outer"] - (0.4 * radius if aux["clear"] else 0.0)  # clear chips bite deeper
        region = _blob(rng, s, cy + depth * np.sin(angle), cx + depth * np.cos(angle), radius)
        region &= aux["fg"]
    else:  # grid: a broken wire
        cy, cx = _pick_point(rng, s, aux["fg"])
        radius = (rng.uniform(2, 3) if subtle else rng.uniform(3, 8) * _size_scale(rng, subtle)) * s / 256
        region = _blob(rng, s, cy, cx, radius)
    img[region] = under[region]


def _defect_extra(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    unit = s / 256
    if aux["fg"] is not None:  # a burr on the part's edge
        edge = aux["fg"] & ~cv2.erode(aux["fg"].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        cy, cx = _pick_point(rng, s, edge)
        radius = (rng.uniform(2, 3) if subtle else rng.uniform(3, 7) * _size_scale(rng, subtle)) * unit
        region = _blob(rng, s, cy, cx, max(radius, 3.0), roughness=0.5) & ~aux["fg"]
    else:  # pcb: a stray solder blob
        cy, cx = _pick_point(rng, s, None)
        if aux["clear"]:  # larger than any pad
            radius = rng.uniform(8, 13) * unit
        else:
            radius = (rng.uniform(1.5, 2.5) if subtle else rng.uniform(2.5, 6) * _size_scale(rng, subtle)) * unit
        region = _blob(rng, s, cy, cx, radius, roughness=0.4)
    _blend(img, region, aux["metal"], 1.0)


def _defect_misprint(img: np.ndarray, aux: dict, rng: np.random.Generator, s: int, subtle: bool) -> None:
    unit = s / 256
    if "silk" in aux:  # pcb: a label missing, or a stray mark in silk-screen ink
        if aux["clear"]:  # a smear of silk-screen ink, 5-8 px wide at 256 px
            start = _pick_point(rng, s, None)
            length = rng.uniform(0.08, 0.2) * s
            mark = _stroke(rng, s, start, length=length, thickness=_clear_width(rng, s, 5, 8), wiggle=0.5, step=3.0)
            _blend(img, mark, (235, 235, 225), 1.0)
            return
        if rng.random() < 0.5:
            label = aux["silk"][int(rng.integers(len(aux["silk"])))]
            img[label] = aux["base"][label]
        else:
            canvas = np.zeros((s, s), np.uint8)
            y, x = rng.uniform(0.1, 0.9, 2) * s
            text = ("R", "7", "X", "C9")[int(rng.integers(4))]
            cv2.putText(
                canvas, text, (round(x), round(y)), cv2.FONT_HERSHEY_PLAIN, max(0.6, 0.8 * unit), 1, 1, cv2.LINE_8
            )
            _blend(img, canvas.astype(bool), (235, 235, 225), 0.35 if subtle else 1.0)
        return
    printed = aux["print"]  # pill: part of the imprint missing, faded or smudged
    choice = rng.random()
    if choice < 0.5:
        cy, cx = _pick_point(rng, s, printed)
        region = _blob(rng, s, cy, cx, rng.uniform(3, 10) * unit) & printed
        _blend(img, region, aux["body"], 0.45 if subtle else 1.0)
    else:
        cy, cx = _pick_point(rng, s, printed)
        mark = (
            _stroke(
                rng,
                s,
                (cy, cx),
                length=rng.uniform(6, 20) * unit,
                thickness=int(rng.choice([1, 2])),
                wiggle=0.3,
                step=2.0,
            )
            & aux["fg"]
            & ~printed
        )
        _blend(img, mark, aux["print_colour"], 0.3 if subtle else 1.0)


_DEFECTS: dict[str, Callable[[np.ndarray, dict, np.random.Generator, int, bool], None]] = {
    "scratch": _defect_scratch,
    "crack": _defect_crack,
    "hole": _defect_hole,
    "stain": _defect_stain,
    "contamination": _defect_contamination,
    "thread": _defect_thread,
    "missing": _defect_missing,
    "extra": _defect_extra,
    "misprint": _defect_misprint,
}

# --------------------------------------------------------------------------------------------
# Samples and the suite
# --------------------------------------------------------------------------------------------


def _finish(img: np.ndarray, gain: np.ndarray, noise: np.ndarray) -> np.ndarray:
    out = img * gain + noise
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _check_category(category: str) -> str:
    name = category.split("/", 1)[1] if category.startswith("synthetic/") else category
    if name not in _RENDERERS:
        raise ValueError(f"unknown synthetic category {category!r}; known: {', '.join(SYNTHETIC_CATEGORIES)}")
    return name


def _defect_type_for(name: str, index: int) -> str:
    types = DEFECT_TYPES[name]
    return types[index % len(types)]


def render_sample(
    category: str,
    *,
    seed: int = 0,
    split: str = "train",
    index: int = 0,
    image_size: int = 256,
    clean: bool = False,
) -> Sample:
    """Render one sample of the suite, exactly as :func:`generate_suite` writes it.

    Parameters
    ----------
    category : str
        ``"woven"`` or ``"synthetic/woven"``.
    seed : int, default 0
        Suite seed.
    split : {"train", "test_good", "test_defect"}
        Which part of the category.
    index : int
        Sample number within the split (for ``test_defect``, counted over all defect types:
        sample ``j`` has type ``DEFECT_TYPES[category][j % n_types]``).
    image_size : int, default 256
        Side in pixels.
    clean : bool, default False
        For ``test_defect``: return the defect-free twin (same part, lighting and noise).

    Returns
    -------
    Sample
        ``mask`` is all zero for good samples and the clean twin.
    """
    name = _check_category(category)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}, got {split!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    s = image_size
    sequence = np.random.SeedSequence([int(seed) % 2**32, zlib.crc32(name.encode()), _SPLITS[split], index])
    clean_seq, defect_seq = sequence.spawn(2)
    profile = _PROFILES[DIFFICULTY[name]]
    rng = np.random.default_rng(clean_seq)
    img, aux = _RENDERERS[name](rng, s, profile.nuisance)
    aux["clear"] = DIFFICULTY[name] == "easy"
    yy, xx = _grid(s)
    g = rng.uniform(1 - profile.gain, 1 + profile.gain)
    gx, gy = rng.uniform(-profile.gradient, profile.gradient, 2)
    gain = (_F32(g) * (1 + _F32(gx) * (xx / s - 0.5) + _F32(gy) * (yy / s - 0.5)))[..., None]
    noise = rng.standard_normal((s, s, 3), dtype=_F32) * _F32(rng.uniform(*profile.noise))
    image = _finish(img, gain, noise)
    empty = np.zeros((s, s), np.uint8)
    if split != "test_defect":
        return Sample(image, empty, "good")
    defect = _defect_type_for(name, index)
    if clean:
        return Sample(image, empty, defect)
    drng = np.random.default_rng(defect_seq)
    paint = _DEFECTS[defect]
    min_visible = max(4, round(profile.visible_area * (s / 256) ** 2))
    for _attempt in range(12):
        damaged = img.copy()
        count = int(drng.integers(2, 4)) if drng.random() < _MULTI_PROBABILITY else 1
        for _ in range(count):
            paint(damaged, aux, drng, s, bool(drng.random() < profile.subtle_probability))
        result = _finish(damaged, gain, noise)
        change = np.abs(result.astype(np.int16) - image.astype(np.int16)).max(axis=2)
        mask = (change > 0).astype(np.uint8)
        if _is_visible(change, mask, profile.visible_delta, min_visible):
            return Sample(result, mask, defect)
    raise RuntimeError(f"synthetic/{name} sample {index}: could not place a visible {defect}")  # pragma: no cover


def _is_visible(change: np.ndarray, mask: np.ndarray, delta: int, min_pixels: int) -> bool:
    """Enough pixels changed by at least ``delta``, and the mask survives the evaluation resize."""
    if int((change >= delta).sum()) < min_pixels:
        return False
    s = mask.shape[0]
    if s > _EVAL_SIZE:  # a thin defect may fall between the samples of a nearest downscale
        return bool(cv2.resize(mask, (_EVAL_SIZE, _EVAL_SIZE), interpolation=cv2.INTER_NEAREST).any())
    return True


def _write_png(path: Path, array: np.ndarray) -> None:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")


def _prepare_folder(folder: Path) -> None:
    if folder.exists():
        if any(folder.iterdir()) and not (folder / _MARKER).exists():
            raise FileExistsError(f"{folder} exists and was not written by this generator; remove it or choose --out")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / _MARKER).write_text(GENERATOR_VERSION + "\n")


def _write_category(
    folder: Path, name: str, seed: int, image_size: int, n_train: int, n_test_good: int, n_test_defect: int
) -> None:
    _prepare_folder(folder)
    (folder / "train" / "good").mkdir(parents=True)
    (folder / "test" / "good").mkdir(parents=True)
    for i in range(n_train):
        sample = render_sample(name, seed=seed, split="train", index=i, image_size=image_size)
        _write_png(folder / "train" / "good" / f"{i:03d}.png", sample.image)
    for i in range(n_test_good):
        sample = render_sample(name, seed=seed, split="test_good", index=i, image_size=image_size)
        _write_png(folder / "test" / "good" / f"{i:03d}.png", sample.image)
    per_type: dict[str, int] = {}
    for j in range(n_test_defect):
        sample = render_sample(name, seed=seed, split="test_defect", index=j, image_size=image_size)
        k = per_type.get(sample.defect_type, 0)
        per_type[sample.defect_type] = k + 1
        image_dir = folder / "test" / sample.defect_type
        mask_dir = folder / "ground_truth" / sample.defect_type
        if k == 0:
            image_dir.mkdir(parents=True)
            mask_dir.mkdir(parents=True)
        _write_png(image_dir / f"{k:03d}.png", sample.image)
        _write_png(mask_dir / f"{k:03d}_mask.png", sample.mask * np.uint8(255))


def generate_suite(
    out_dir: str | Path,
    *,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    image_size: int = 256,
    n_train: int = 200,
    n_test_good: int = 40,
    n_test_defect: int = 60,
    workers: int | None = None,
) -> list[str]:
    """Write synthetic categories in the MVTec AD layout under ``<out_dir>/<category>/``.

    Parameters
    ----------
    out_dir : str or Path
        Suite root (use it as the ``synthetic`` dataset root).
    seed : int, default 0
        Same seed and options give byte-identical files.
    categories : sequence of str, optional
        Names (``"woven"`` or ``"synthetic/woven"``); default all of :data:`SYNTHETIC_CATEGORIES`.
    image_size : int, default 256
        Square side in pixels.
    n_train, n_test_good, n_test_defect : int
        Images per split; defective images are spread round-robin over the category's defect types.
    workers : int, optional
        Processes, one category each; default one per CPU core. The output does not depend on it.

    Returns
    -------
    list of str
        The category keys written, e.g. ``["synthetic/woven", ...]``.
    """
    names = [_check_category(c) for c in (categories if categories is not None else SYNTHETIC_CATEGORIES)]
    if not names:
        raise ValueError("categories is empty")
    for label, value, minimum in (
        ("n_train", n_train, 1),
        ("n_test_good", n_test_good, 0),
        ("n_test_defect", n_test_defect, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}")
    if workers is None:
        workers = min(len(names), os.cpu_count() or 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(names))
    jobs = [(out / name, name, seed, image_size, n_train, n_test_good, n_test_defect) for name in names]
    if workers > 1 and len(jobs) > 1:
        # "spawn": safe even when the caller has torch/OpenMP threads running.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            list(pool.map(_write_category, *zip(*jobs)))
    else:
        for job in jobs:
            _write_category(*job)
    written = [f"synthetic/{name}" for name in names]
    meta = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect": n_test_defect,
        "categories": written,
    }
    (out / "suite.json").write_text(json.dumps(meta, indent=2) + "\n")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m algorithms.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="suite root to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", nargs="+", default=None, help=f"subset of: {' '.join(SYNTHETIC_CATEGORIES)}")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test-good", type=int, default=40)
    parser.add_argument("--n-test-defect", type=int, default=60)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU core)")
    parser.add_argument("--examples", type=Path, default=None, help="also write the example sheet PNG here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        keys = generate_suite(
            args.out,
            seed=args.seed,
            categories=args.categories,
            image_size=args.image_size,
            n_train=args.n_train,
            n_test_good=args.n_test_good,
            n_test_defect=args.n_test_defect,
        )
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    if args.examples is not None:
        render_examples(args.examples, seed=args.seed, image_size=args.image_size)
    print(f"wrote {len(keys)} categories to {args.out} in {time.perf_counter() - start:.1f} s: {' '.join(keys)}")
    return 0


def render_examples(path: str | Path, *, seed: int = 0, image_size: int = 256, tile: int = 192) -> np.ndarray:
    """Compose one good image and one example per defect type of every category (mask outlined).

    Rows are categories, the first column a good sample, then one column per defect type with
    the defect's mask outline in yellow. Writes a PNG to ``path`` and returns the RGB canvas.
    """
    columns = 1 + max(len(types) for types in DEFECT_TYPES.values())
    label_h = 18
    canvas = np.full((len(SYNTHETIC_CATEGORIES) * (tile + label_h), columns * tile, 3), 255, np.uint8)
    for row, name in enumerate(SYNTHETIC_CATEGORIES):
        y = row * (tile + label_h)
        samples = [render_sample(name, seed=seed, split="test_good", index=0, image_size=image_size)]
        types = DEFECT_TYPES[name]
        samples += [
            render_sample(name, seed=seed, split="test_defect", index=j, image_size=image_size)
            for j in range(len(types))
        ]
        for col, sample in enumerate(samples):
            image = cv2.resize(sample.image, (tile, tile), interpolation=cv2.INTER_AREA)
            if sample.mask.any():
                mask = cv2.resize(sample.mask, (tile, tile), interpolation=cv2.INTER_NEAREST)
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(image, contours, -1, (255, 230, 0), 1, cv2.LINE_AA)
            x = col * tile
            canvas[y + label_h : y + label_h + tile, x : x + tile] = image
            text = f"{name} ({DIFFICULTY[name]}): good" if col == 0 else f"{name}: {sample.defect_type}"
            cv2.putText(canvas, text, (x + 4, y + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_png(Path(path), canvas)
    return canvas


if __name__ == "__main__":
    sys.exit(main())

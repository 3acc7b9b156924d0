"""Small input checks shared by the metrics; each raises ``ValueError`` naming the problem."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "check_fraction",
    "check_labels",
    "check_maps",
    "check_masks",
    "check_same_shape",
    "check_scores",
]


def _as_array(value: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {exc}") from exc
    if array.dtype == object:
        raise ValueError(f"{name} must be a numeric array, not dtype=object (ragged or mixed input?)")
    return array


def _check_ndim(array: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")


def _binary(array: np.ndarray, name: str) -> np.ndarray:
    """Return a boolean view or copy of a {0, 1} array; reject anything else."""
    kind = array.dtype.kind
    if kind == "b":
        return array
    if kind == "u":
        if array.max() > 1:
            raise ValueError(f"{name} must be binary (0/1 or bool), found the value {array.max().item()!r}")
        return array.view(bool) if array.dtype == np.uint8 else array != 0
    if kind in "if":
        bad = (array != 0) & (array != 1)
        if bad.any():
            raise ValueError(f"{name} must be binary (0/1 or bool), found the value {array[bad].flat[0].item()!r}")
        return array != 0
    raise ValueError(f"{name} must be a bool or 0/1 integer array, got dtype {array.dtype}")


def _finite_float(array: np.ndarray, name: str) -> np.ndarray:
    kind = array.dtype.kind
    if kind in "iu":
        array = array.astype(np.float64)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)  # exact; numpy's float16 sort misorders some values
    elif kind != "f":
        raise ValueError(f"{name} must hold real numbers (float16/32/64 or integers), got dtype {array.dtype}")
    if not np.isfinite(array).all():
        count = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} contains {count} non-finite value(s) (NaN or infinity)")
    return array


def check_masks(masks: object, *, name: str = "masks") -> np.ndarray:
    """Validate ground-truth masks of shape (N, H, W) and return them as a boolean array."""
    array = _as_array(masks, name)
    _check_ndim(array, 3, name, "(N, H, W)")
    return _binary(array, name)


def check_maps(maps: object, *, name: str = "maps") -> np.ndarray:
    """Validate anomaly maps (N, H, W); return finite float32/64 (float16 widens to float32, ints to float64)."""
    array = _as_array(maps, name)
    _check_ndim(array, 3, name, "(N, H, W)")
    return _finite_float(array, name)


def check_labels(labels: object, *, name: str = "labels") -> np.ndarray:
    """Validate image labels of shape (N,) with values in {0, 1}; return a boolean array."""
    array = _as_array(labels, name)
    _check_ndim(array, 1, name, "(N,)")
    return _binary(array, name)


def check_scores(scores: object, *, name: str = "scores") -> np.ndarray:
    """Validate image scores of shape (N,); return a finite floating array."""
    array = _as_array(scores, name)
    _check_ndim(array, 1, name, "(N,)")
    return _finite_float(array, name)


def check_same_shape(first: np.ndarray, second: np.ndarray, names: tuple[str, str]) -> None:
    """Raise unless both arrays have exactly the same shape."""
    if first.shape != second.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {first.shape} and {second.shape}")


def check_fraction(value: object, name: str, *, allow_zero: bool) -> float:
    """Validate a limit in (0, 1] (or [0, 1] when ``allow_zero``) and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    low_ok = number >= 0.0 if allow_zero else number > 0.0
    if not (math.isfinite(number) and low_ok and number <= 1.0):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return number

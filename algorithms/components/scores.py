"""Image scores reduced from anomaly maps."""

from __future__ import annotations

import torch

__all__ = ["topk_mean"]


def topk_mean(maps: torch.Tensor, *, k: int | None = None, ratio: float | None = None) -> torch.Tensor:
    """Per-image mean of the ``k`` largest map values (the "top-k mean" image score).

    Used by MSFlow (top 10 % in VisionAD's config, 3 % in the paper), Dinomaly (1 %) and MemSeg
    (the top 100 pixels): less sensitive to a single hot pixel than the maximum, more to small
    defects than the mean. Give exactly one of ``k`` and ``ratio``; with ``ratio`` the count is
    ``max(1, int(ratio * N))`` for ``N`` values per image (the references' ``int(N * ratio)``,
    floored, but never empty).

    Parameters
    ----------
    maps : torch.Tensor
        ``(B, ...)`` float maps, at least one value per image (any trailing shape, flattened).
    k : int, optional
        Number of values averaged, ``1 <= k <= N``; ``k = 1`` is the maximum, ``k = N`` the mean.
    ratio : float, optional
        Fraction of values averaged, in ``(0, 1]``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` scores, dtype and device of ``maps``.

    Raises
    ------
    ValueError
        If both or neither of ``k`` and ``ratio`` are given, either is out of range, or ``maps`` has
        no batch axis or no values.
    """
    if (k is None) == (ratio is None):
        raise ValueError(f"give exactly one of k and ratio, got k={k}, ratio={ratio}")
    if maps.ndim < 1 or maps.shape[0] == 0:
        raise ValueError(f"expected (B, ...) maps with B >= 1, got {tuple(maps.shape)}")
    flat = maps.reshape(maps.shape[0], -1)
    n = flat.shape[1]
    if n == 0:
        raise ValueError(f"maps hold no values per image: {tuple(maps.shape)}")
    if ratio is not None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        k = max(1, int(ratio * n))
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must be in [1, {n}] (values per image), got {k}")
    k = int(k)
    if k == 1:
        return flat.amax(dim=1)
    if k == n:
        return flat.mean(dim=1)
    return flat.topk(k, dim=1, sorted=False).values.mean(dim=1)

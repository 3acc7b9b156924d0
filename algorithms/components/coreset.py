"""Greedy coreset subsampling of a memory bank (PatchCore, Roth et al. 2022, section 3.2).

The k-center greedy (farthest point) traversal picks, one at a time, the feature farthest from
everything picked so far, so that the chosen subset covers the whole feature cloud with a small
radius. PatchCore makes it cheap in two ways, both implemented here:

* the features are first mapped to a low dimension with a random linear projection
  (Johnson-Lindenstrauss), and
* the "approximate" variant does not start from one random point: the initial distance of every
  feature is its mean distance to a few random anchor points, which saves the first, most
  expensive, part of the traversal from depending on a single random start.

Distances are updated incrementally, one selected point at a time, using the expansion
``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` with precomputed norms: one matrix-vector product per
selected point, no ``(N, N)`` matrix is ever formed.
"""

from __future__ import annotations

import math

import torch

__all__ = ["approximate_greedy_coreset", "coreset_size", "greedy_coreset", "random_projection"]


def coreset_size(n: int, ratio: float) -> int:
    """Number of points kept from ``n`` at sampling ``ratio`` (at least one).

    Parameters
    ----------
    n : int
        Number of features in the full memory bank.
    ratio : float
        Fraction to keep, in ``(0, 1]``.

    Returns
    -------
    int
        ``max(1, int(n * ratio))``.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
    if n < 1:
        raise ValueError("cannot subsample an empty memory bank")
    return max(1, int(n * ratio))


def random_projection(
    features: torch.Tensor, *, dim: int = 128, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Project ``(N, D)`` features to ``(N, dim)`` with a Gaussian random matrix.

    The matrix has i.i.d. ``N(0, 1/dim)`` entries, so squared distances are preserved in
    expectation. When ``dim >= D`` the features are returned unchanged.

    Parameters
    ----------
    features : torch.Tensor
        ``(N, D)`` float features.
    dim : int
        Target dimension.
    generator : torch.Generator, optional
        Source of randomness (CPU generator) for a repeatable projection.

    Returns
    -------
    torch.Tensor
        ``(N, min(dim, D))`` projected features on the input device.
    """
    if features.ndim != 2:
        raise ValueError(f"expected (N, D) features, got shape {tuple(features.shape)}")
    if dim < 1:
        raise ValueError(f"projection dimension must be positive, got {dim}")
    if dim >= features.shape[1]:
        return features
    matrix = torch.randn(features.shape[1], dim, generator=generator, dtype=torch.float32) / math.sqrt(dim)
    return features.float() @ matrix.to(features.device)


def _greedy(
    features: torch.Tensor, n_select: int, min_sq_dist: torch.Tensor, first: int | None
) -> torch.Tensor:
    """Farthest-point traversal on ``features`` given the initial squared distances."""
    norms = (features * features).sum(dim=1)
    selected = torch.empty(n_select, dtype=torch.long)
    index = first
    for i in range(n_select):
        if index is None:
            index = int(torch.argmax(min_sq_dist))
        selected[i] = index
        centre = features[index]
        sq_dist = norms - 2.0 * (features @ centre) + norms[index]
        torch.minimum(min_sq_dist, sq_dist.clamp_(min=0.0), out=min_sq_dist)
        min_sq_dist[index] = -1.0  # never pick the same point twice (ties with exact duplicates)
        index = None
    return selected


def greedy_coreset(
    features: torch.Tensor,
    *,
    ratio: float,
    projection_dim: int | None = 128,
    seed: int = 0,
) -> torch.Tensor:
    """Exact k-center greedy coreset indices, starting from one random point.

    Parameters
    ----------
    features : torch.Tensor
        ``(N, D)`` memory-bank features.
    ratio : float
        Fraction of the points to keep, in ``(0, 1]``.
    projection_dim : int or None
        Dimension of the random projection used for the distances; ``None`` uses the raw
        features.
    seed : int
        Seed of the projection and of the starting point.

    Returns
    -------
    torch.Tensor
        ``(k,)`` int64 indices into ``features`` (CPU), in selection order, all distinct.
    """
    n_select = coreset_size(features.shape[0], ratio)
    generator = torch.Generator().manual_seed(seed)
    reduced = features.float() if projection_dim is None else random_projection(
        features, dim=projection_dim, generator=generator
    )
    first = int(torch.randint(features.shape[0], (1,), generator=generator))
    min_sq_dist = torch.full((features.shape[0],), float("inf"), device=reduced.device)
    return _greedy(reduced, n_select, min_sq_dist, first)


def approximate_greedy_coreset(
    features: torch.Tensor,
    *,
    ratio: float,
    projection_dim: int | None = 128,
    n_starting_points: int = 10,
    seed: int = 0,
) -> torch.Tensor:
    """Approximate greedy coreset indices, as in the PatchCore paper and reference code.

    The distance of every point to the (empty) coreset is initialised with its mean distance
    to ``n_starting_points`` random anchors; the traversal then adds, one at a time, the point
    farthest from the points chosen so far.

    Parameters
    ----------
    features : torch.Tensor
        ``(N, D)`` memory-bank features.
    ratio : float
        Fraction of the points to keep, in ``(0, 1]`` (PatchCore paper: 0.1; the VisionAD
        configs used 0.01).
    projection_dim : int or None
        Dimension of the random projection used for the distances (paper: 128); ``None`` uses
        the raw features.
    n_starting_points : int
        Number of random anchors of the initial distance estimate (paper code: 10).
    seed : int
        Seed of the projection and of the anchors.

    Returns
    -------
    torch.Tensor
        ``(k,)`` int64 indices into ``features`` (CPU), in selection order, all distinct,
        ``k = max(1, int(N * ratio))``.

    References
    ----------
    K. Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022.
    """
    if n_starting_points < 1:
        raise ValueError(f"n_starting_points must be positive, got {n_starting_points}")
    n = features.shape[0]
    n_select = coreset_size(n, ratio)
    generator = torch.Generator().manual_seed(seed)
    reduced = features.float() if projection_dim is None else random_projection(
        features, dim=projection_dim, generator=generator
    )
    anchors = torch.randperm(n, generator=generator)[: min(n_starting_points, n)].to(reduced.device)
    # Mean Euclidean distance to the anchors, stored squared like the running minimum.
    anchor_dist = torch.cdist(reduced, reduced[anchors]).mean(dim=1)
    return _greedy(reduced, n_select, anchor_dist.square(), None)

"""K-means clustering of feature vectors (Lloyd iterations, random-partition initialisation).

MSPBA (Tsai et al., WACV 2022) groups the patch embeddings of each scale into ``k`` clusters
("k-centre groups", 50 per scale in the official code) and pulls every embedding towards its
nearest centre. The official code initialises each restart with a random partition (every point
gets a uniformly random cluster, the centres are the members' means), runs up to 30 Lloyd
iterations, keeps the centre of a cluster that becomes empty, and refreshes the centres later with
Lloyd iterations started from the current ones; this module does the same, seeded by a generator.
"""

from __future__ import annotations

import torch

from .nearest import nearest_neighbours

__all__ = ["kmeans", "kmeans_inertia"]


def _assign(features: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    distances, index = nearest_neighbours(features, centres, k=1)
    return index[:, 0], distances[:, 0]


def _update(features: torch.Tensor, assignment: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Members' means; a cluster without members keeps its previous centre."""
    k = centres.shape[0]
    sums = torch.zeros_like(centres).index_add_(0, assignment, features)
    counts = torch.bincount(assignment, minlength=k).to(features.dtype)
    return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)


def kmeans_inertia(features: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Sum over points of the squared distance to the nearest centre (a 0-d tensor)."""
    return _assign(features, centres)[1].pow(2).sum()


@torch.no_grad()
def kmeans(
    features: torch.Tensor,
    k: int,
    *,
    iterations: int = 30,
    restarts: int = 1,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``features`` into ``k`` groups.

    Parameters
    ----------
    features : torch.Tensor
        ``(N, D)`` float points, ``N >= 1``.
    k : int
        Number of clusters (``k > N`` leaves some clusters empty; their centres stay where the
        initialisation put them).
    iterations : int
        Most Lloyd iterations per restart (stops early when no assignment changes).
    restarts : int
        Random-partition initialisations tried; the one with the smallest inertia is kept.
        Ignored when ``init`` is given.
    init : torch.Tensor, optional
        ``(k, D)`` starting centres (a refresh of earlier centres): one run from them.
    generator : torch.Generator, optional
        Seeds the random partitions (on the CPU; ``torch.randint``'s default otherwise).

    Returns
    -------
    centres, assignment : torch.Tensor
        ``(k, D)`` centres and the ``(N,)`` int64 index of each point's nearest centre.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"kmeans expects (N, D) features with N >= 1, got {tuple(features.shape)}")
    if k < 1 or iterations < 0 or restarts < 1:
        raise ValueError(f"kmeans needs k >= 1, iterations >= 0 and restarts >= 1, got {k}, {iterations}, {restarts}")
    features = features.float()
    n = features.shape[0]
    if init is not None:
        if tuple(init.shape) != (k, features.shape[1]):
            raise ValueError(f"init must be ({k}, {features.shape[1]}), got {tuple(init.shape)}")
        starts = [("centres", init.to(features).clone())]
    else:
        starts = []
        for _ in range(restarts):
            partition = torch.randint(k, (n,), generator=generator).to(features.device)
            starts.append(("partition", partition))
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for kind, start in starts:
        if kind == "partition":
            assignment = start
            centres = _update(features, assignment, torch.zeros(k, features.shape[1], device=features.device))
        else:
            centres = start
            assignment = _assign(features, centres)[0]
            centres = _update(features, assignment, centres)
        for _ in range(iterations):
            new_assignment, _ = _assign(features, centres)
            if torch.equal(new_assignment, assignment):
                break
            assignment = new_assignment
            centres = _update(features, assignment, centres)
        assignment, distances = _assign(features, centres)
        inertia = float(distances.pow(2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres, assignment)
    assert best is not None
    return best[1], best[2]

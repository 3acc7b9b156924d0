"""Exact Euclidean nearest-neighbour search in bounded memory (memory-bank scoring).

Used by PatchCore (patch features against its coreset) and MSPBA (patch embeddings against the
training patches of each scale, and k-means assignments).
"""

from __future__ import annotations

import torch

__all__ = ["DISTANCE_BLOCK_ELEMENTS", "nearest_neighbours"]

#: Upper bound on the elements of one query-by-bank distance block (16 MiB of float32; the
#: search is bound by the matrix product, larger blocks are no faster on CPU).
DISTANCE_BLOCK_ELEMENTS = 2**22


def nearest_neighbours(
    queries: torch.Tensor, bank: torch.Tensor, *, k: int = 1, block_elements: int = DISTANCE_BLOCK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean ``k`` nearest neighbours of each query row in ``bank``, in bounded memory.

    The neighbours are ranked by ``|b|^2 - 2 q.b`` (the squared distance less ``|q|^2``, which is
    the same for every bank row), one matrix product per block of queries with the bank's
    squared norms computed once; the returned distances are then recomputed directly as
    ``|q - b|`` for the ``k`` chosen rows only, so they carry no cancellation error.

    Parameters
    ----------
    queries : torch.Tensor
        ``(Q, D)`` float features.
    bank : torch.Tensor
        ``(M, D)`` float features, ``M >= k``.
    k : int
        Number of neighbours.
    block_elements : int
        Largest distance block computed at once (``rows * max(M, k * D)``); bounds the peak memory.

    Returns
    -------
    distances, indices : torch.Tensor
        ``(Q, k)`` distances in increasing order and the matching ``(Q, k)`` int64 bank indices.
    """
    if bank.ndim != 2 or queries.ndim != 2 or bank.shape[1] != queries.shape[1]:
        raise ValueError(f"expected (Q, D) queries and (M, D) bank, got {tuple(queries.shape)} and {tuple(bank.shape)}")
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k must be in [1, {bank.shape[0]}] (the bank size), got {k}")
    rows = max(1, block_elements // max(bank.shape[0], k * bank.shape[1]))
    bank_t = bank.t()
    bank_sq = bank.pow(2).sum(dim=1)
    dists, idxs = [], []
    for chunk in queries.split(rows):
        ranking = torch.addmm(bank_sq, chunk, bank_t, alpha=-2)  # |b|^2 - 2 q.b
        if k == 1:
            index = ranking.argmin(dim=1, keepdim=True)
        else:
            index = ranking.topk(k, dim=1, largest=False, sorted=False).indices
        dist = torch.linalg.vector_norm(bank[index] - chunk[:, None, :], dim=-1)
        if k > 1:
            dist, order = dist.sort(dim=1)
            index = index.gather(1, order)
        dists.append(dist)
        idxs.append(index)
    return torch.cat(dists), torch.cat(idxs)

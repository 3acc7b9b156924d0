"""Small shared helpers: seeding, batch unpacking."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["batch_images", "seed_everything"]


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); optionally ask torch for determinism."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def batch_images(batch) -> torch.Tensor:
    """The image tensor ``(B, 3, H, W)`` of a loader batch (a tensor, or a tuple/list led by one).

    Parameters
    ----------
    batch : torch.Tensor or tuple or list
        What a training or test loader yielded.

    Returns
    -------
    torch.Tensor
        The images.
    """
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"expected a batch of images shaped (B, 3, H, W), got {shape}")
    return batch

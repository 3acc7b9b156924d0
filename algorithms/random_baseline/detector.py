"""The registered random baseline."""

from __future__ import annotations

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..registry import register_algorithm
from . import INFO
from .model import RandomMaps

__all__ = ["RandomBaseline"]


@register_algorithm(INFO)
class RandomBaseline(AnomalyDetector):
    """Random scores and maps (see the package docstring).

    Parameters
    ----------
    input_size : int
        Side of the square input images.
    seed : int
        Seed of the draws.
    """

    def __init__(self, *, input_size: int = 256, seed: int = 0) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.model = RandomMaps(seed)

    def fit_epoch(self, train_loader) -> dict[str, float]:
        return {}

    def _predict(self, images: torch.Tensor):
        scores, maps = self.model(images)
        return scores, {"anomaly_map": maps}

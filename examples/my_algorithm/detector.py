"""The registered My Algorithm detector: hyperparameters, one training epoch, prediction."""

from __future__ import annotations

import torch

from algorithms.base import AnomalyDetector, hparams_from_locals
from algorithms.components.blur import gaussian_blur
from algorithms.components.training import check_images, gradient_epoch, local_seed
from algorithms.registry import register_algorithm

from . import INFO
from .model import ConvAutoencoder

__all__ = ["MyAlgorithm"]


@register_algorithm(INFO)
class MyAlgorithm(AnomalyDetector):
    """A convolutional autoencoder; anomaly = squared reconstruction error.

    Parameters
    ----------
    input_size : int
        Side of the square input images, a multiple of 8 (publication: 256).
    seed : int
        Seeds the initial weights and each epoch's randomness.
    width : int
        Channels of the autoencoder's first layer.
    lr : float
        Adam learning rate.
    sigma : float
        Gaussian smoothing of the anomaly map in pixels (0 disables it).
    """

    def __init__(
        self, *, input_size: int = 256, seed: int = 0, width: int = 32, lr: float = 1e-3, sigma: float = 4.0
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))  # records the hyperparameters (configs, save/load)
        if input_size % 8:
            raise ValueError(f"my_algorithm: input_size must be a multiple of 8, got {input_size}")
        with local_seed(seed):  # the same initial weights for the same seed, whatever ran before
            self.model = ConvAutoencoder(width)
        # Learned state lives in parameters or buffers, so save/load round-trips it.
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass over the (B, 3, S, S) batches of defect-free images; returns scalars to log."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.model.parameters(), lr=self.hparams["lr"])

        def loss(images: torch.Tensor) -> torch.Tensor:
            return ((self.model(images) - images) ** 2).mean()

        return gradient_epoch(self, train_loader, self._optimizer, loss)

    def _predict(self, images: torch.Tensor):
        """Scores (B,) and maps {name: (B, S, S)}, in the order of INFO.map_variants."""
        check_images(self.name, images, self.input_size)
        maps = ((self.model(images) - images) ** 2).mean(dim=1)
        if self.hparams["sigma"] > 0:
            maps = gaussian_blur(maps, self.hparams["sigma"])
        return maps.amax(dim=(1, 2)), {"anomaly_map": maps}

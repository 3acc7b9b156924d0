"""The registered FastFlow detector."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, gradient_epoch, local_seed
from ..registry import register_algorithm
from . import INFO
from .model import FastflowModel

__all__ = ["Fastflow"]

_SCORE_REDUCTIONS = ("max", "mean")


@register_algorithm(INFO)
class Fastflow(AnomalyDetector):
    """FastFlow (Yu et al., 2021) with the publication's defaults.

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 256). Fixes the LayerNorm shapes.
    seed : int
        Seeds initialisation (flow permutations, random-init backbone) and training.
    backbone : str
        timm CNN (publication: ``wide_resnet50_2``; ``resnet18`` for quick runs).
    layers : sequence of str
        Backbone levels (publication: layers 1-3).
    pretrained : bool
        ImageNet weights for the backbone (``False`` only for tests).
    weights_path : str, optional
        Local backbone weights file, used instead of the hub.
    flow_steps : int
        Coupling steps per scale (publication: 8).
    hidden_ratio : float
        Subnet width relative to the feature channels (publication: 1.0).
    clamp : float
        Soft-clamping bound of the coupling log-scales (publication: 2.0).
    conv3x3_only : bool
        3x3 subnet kernels in every step; by default they alternate 3x3 / 1x1 (publication, CNNs).
    lr, weight_decay : float
        Adam settings (publication: 1e-3 and 1e-5).
    score_reduction : {"max", "mean"}
        How the image score is taken from the anomaly map. ``"max"`` (default) responds to small
        defects, which a mean over 65k pixels dilutes; ``"mean"`` reproduces VisionAD's
        ``loss_channel_mean_pixel_mean`` score.

    Notes
    -----
    Loss: the sum over scales of the batch mean of ``0.5 * sum(z**2) - log|det J|``, as the official
    code. The coupling is FrEIA's all-in-one block as the official code uses it (log-scales
    ``clamp * tanh(0.1 * a)``, SOFTPLUS global affine, default-initialised subnets; see
    :mod:`algorithms.components.flows`). Anomaly map: the mean over scales of
    ``1 - exp(-0.5 * mean_c z**2)``, bilinearly upsampled to the input size; this is the reference's
    ``-exp(...)`` map plus one, so higher means more anomalous and values lie in ``[0, 1]``.
    The publication trains 500 epochs with batch 32 (``INFO.schedule``).
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        flow_steps: int = 8,
        hidden_ratio: float = 1.0,
        clamp: float = 2.0,
        conv3x3_only: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        score_reduction: str = "max",
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        if input_size < 32:
            raise ValueError(f"fastflow: input_size must be at least 32, got {input_size}")
        if score_reduction not in _SCORE_REDUCTIONS:
            raise ValueError(f"fastflow: score_reduction must be one of {_SCORE_REDUCTIONS}, got {score_reduction!r}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"fastflow: lr must be positive and weight_decay non-negative, got {lr}, {weight_decay}")
        with local_seed(seed):
            generator = torch.Generator().manual_seed(seed)
            self.model = FastflowModel(
                backbone=backbone,
                layers=layers,
                input_size=input_size,
                flow_steps=flow_steps,
                hidden_ratio=hidden_ratio,
                clamp=clamp,
                conv3x3_only=conv3x3_only,
                pretrained=pretrained,
                weights_path=weights_path,
                generator=generator,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self._optimizer = torch.optim.Adam(params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        return self._optimizer

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass over ``train_loader`` minimising the flows' negative log-likelihood."""
        def loss(images: torch.Tensor) -> torch.Tensor:
            return self.model.negative_log_likelihood(self.model(images))

        return gradient_epoch(self, train_loader, self._get_optimizer(), loss)

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        maps = self.model.anomaly_map(self.model(images))
        if self.hparams["score_reduction"] == "max":
            scores = maps.amax(dim=(1, 2))
        else:
            scores = maps.mean(dim=(1, 2))
        return scores, {"anomaly_map": maps}

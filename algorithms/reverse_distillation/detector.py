"""The registered Reverse Distillation detector."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.blur import gaussian_blur
from ..components.training import check_images, gradient_epoch, local_seed
from ..registry import register_algorithm
from . import INFO
from .model import ReverseDistillationModel

__all__ = ["ReverseDistillation"]


@register_algorithm(INFO)
class ReverseDistillation(AnomalyDetector):
    """Reverse Distillation (Deng & Li, CVPR 2022) with the publication's defaults.

    Parameters
    ----------
    input_size : int
        Square input side (publication: 256); a multiple of 32.
    seed : int
        Seeds initialisation (and the random-init encoder) and training.
    backbone : str
        timm encoder (publication: ``wide_resnet50_2``; ``resnet18`` for quick runs).
    layers : sequence of str
        The three encoder levels (publication: layers 1-3).
    pretrained : bool
        ImageNet weights for the encoder (``False`` only for tests).
    weights_path : str, optional
        Local encoder weights file, used instead of the hub.
    block : {"auto", "basic", "bottleneck"}
        Residual block of the bottleneck and decoder (``"auto"``: bottleneck for ResNet-50-like
        encoders, basic otherwise, as the reference's ``de_wide_resnet50_2`` / ``de_resnet18``).
    bottleneck_blocks : int, optional
        Depth of the one-class embedding (default 3 bottleneck / 2 basic blocks).
    decoder_blocks : sequence of 3 int, optional
        Blocks per decoder stage, deepest first (default ``(3, 4, 6)`` / ``(2, 2, 2)``).
    lr : float
        Adam learning rate (publication: 0.005).
    betas : sequence of 2 float
        Adam betas (publication: (0.5, 0.999)).
    sigma : float
        Gaussian smoothing of the anomaly map (publication: 4).

    Notes
    -----
    Loss: the sum over the three levels of the batch mean of ``1 - cos`` between the encoder's and
    the decoder's flattened feature maps. Anomaly map: the sum over levels of the per-pixel
    ``1 - cos`` (along channels), bilinearly upsampled (``align_corners=True``) to the input size
    and blurred with ``sigma`` exactly as the official code's ``scipy.ndimage.gaussian_filter`` (its
    half-sample symmetric border; anomalib pads with torch's "reflect" instead); score: its maximum.
    The publication trains 200 epochs with batch 16
    (``INFO.schedule``).
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
        block: str = "auto",
        bottleneck_blocks: int | None = None,
        decoder_blocks: Sequence[int] | None = None,
        lr: float = 0.005,
        betas: Sequence[float] = (0.5, 0.999),
        sigma: float = 4.0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        self.hparams["betas"] = list(betas)
        if decoder_blocks is not None:
            self.hparams["decoder_blocks"] = list(decoder_blocks)
        if input_size < 32 or input_size % 32:
            raise ValueError(f"reverse_distillation: input_size must be a positive multiple of 32, got {input_size}")
        if lr <= 0 or len(betas) != 2 or sigma <= 0:
            raise ValueError(
                f"reverse_distillation: need lr > 0, two betas and sigma > 0, got {lr}, {list(betas)}, {sigma}"
            )
        with local_seed(seed):
            self.model = ReverseDistillationModel(
                backbone=backbone,
                layers=layers,
                pretrained=pretrained,
                weights_path=weights_path,
                block=block,
                bottleneck_blocks=bottleneck_blocks,
                decoder_blocks=decoder_blocks,
            )
        if self.model.reduction > input_size:
            raise ValueError(
                f"reverse_distillation: input_size {input_size} is smaller than the bottleneck stride "
                f"{self.model.reduction}"
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            params = [*self.model.bottleneck.parameters(), *self.model.decoder.parameters()]
            self._optimizer = torch.optim.Adam(params, lr=self.hparams["lr"], betas=tuple(self.hparams["betas"]))
        return self._optimizer

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass over ``train_loader`` training the bottleneck and decoder (encoder frozen)."""

        def loss(images: torch.Tensor) -> torch.Tensor:
            if images.shape[0] < 2 and self.model.reduction == self.input_size:
                raise ValueError(f"{self.name}: batch norm needs batches of at least 2 at this input size")
            return self.model.loss(*self.model(images))

        return gradient_epoch(self, train_loader, self._get_optimizer(), loss)

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        teacher, student = self.model(images)
        maps = self.model.anomaly_map(teacher, student, self.input_size)
        maps = gaussian_blur(maps, float(self.hparams["sigma"]))
        return maps.amax(dim=(1, 2)), {"anomaly_map": maps}

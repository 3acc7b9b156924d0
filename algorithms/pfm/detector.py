"""The registered PFM detector (PEFM subclasses it in ``algorithms/pefm/detector.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, gradient_epoch, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import PfmModel

__all__ = ["Pfm"]


@register_algorithm(INFO)
class Pfm(AnomalyDetector):
    """PFM (Wan et al., TII 2022) with the official code's defaults (``MB-PFM-ResNet.py``).

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 256).
    seed : int
        Seeds initialisation (projectors, random-init backbones) and training.
    student_backbone, teacher_backbone : str
        timm names of the frozen source (S) and target (T) CNNs (publication: torchvision's
        ResNet34 and ResNet50 V1 weights, ``resnet34.tv_in1k`` and ``resnet50.tv_in1k``).
    layers : sequence of str
        Levels tapped in both (publication: layers 1-3, the official ``out2..out4``).
    latent_dims : sequence of int
        Latent width ``L`` of each scale's dual projector (PFM: 200, 400, 900).
    pretrained : bool
        ImageNet weights for both backbones (``False`` only for tests and the CPU demo).
    student_weights_path, teacher_weights_path : str, optional
        Local weights files used instead of the hub.
    lrs : sequence of float
        Adam learning rate per scale (PFM: 3e-3, 3e-4, 3e-4).
    weight_decay : float
        Adam weight decay (1e-5).
    bn_calibration : bool
        Re-estimate the BatchNorm statistics of random-initialised backbones from the training
        images before the first epoch (not in the paper; CPU demo only; ignored when pretrained).

    Notes
    -----
    Loss per scale: ``mean((S - S_hat)^2) + mean((T - T_hat)^2)`` on channel-L2-normalised features
    (official ``l2norm+l2``); the scales are trained together but share no parameters. Anomaly map:
    the mean over scales of ``(sum_c (S - S_hat)^2 + sum_c (T - T_hat)^2) / 2`` bilinearly upsampled,
    unsmoothed; the image score is its maximum (official ``Original_method_score_max``). The
    official optional division by a training-set variance is off by default and not implemented.
    """

    model_class: ClassVar[type[PfmModel]] = PfmModel

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        student_backbone: str = "resnet34.tv_in1k",
        teacher_backbone: str = "resnet50.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        latent_dims: Sequence[int] = (200, 400, 900),
        pretrained: bool = True,
        student_weights_path: str | None = None,
        teacher_weights_path: str | None = None,
        lrs: Sequence[float] = (3e-3, 3e-4, 3e-4),
        weight_decay: float = 1e-5,
        bn_calibration: bool = False,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams.update(layers=list(layers), latent_dims=[int(d) for d in latent_dims], lrs=[float(v) for v in lrs])
        if input_size < 32:
            raise ValueError(f"{self.name}: input_size must be at least 32, got {input_size}")
        if len(lrs) != len(layers) or any(v <= 0 for v in lrs):
            raise ValueError(
                f"{self.name}: lrs needs one positive learning rate per layer ({len(layers)}), got {list(lrs)}"
            )
        if weight_decay < 0:
            raise ValueError(f"{self.name}: weight_decay must be non-negative, got {weight_decay}")
        with local_seed(seed):
            self.model = self.model_class(
                student_backbone=student_backbone,
                teacher_backbone=teacher_backbone,
                layers=layers,
                latent_dims=latent_dims,
                input_size=input_size,
                pretrained=pretrained,
                student_weights_path=student_weights_path,
                teacher_weights_path=teacher_weights_path,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        """One Adam, one parameter group per scale: the official per-scale optimisers' exact updates."""
        if self._optimizer is None:
            groups = [
                {"params": list(projector.parameters()), "lr": lr}
                for projector, lr in zip(self.model.projectors, self.hparams["lrs"])
            ]
            self._optimizer = torch.optim.Adam(groups, weight_decay=self.hparams["weight_decay"])
        return self._optimizer

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass minimising the sum over scales of the two mapping errors."""
        if int(self.epochs_done) == 0 and self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
            for extractor in (self.model.student, self.model.teacher):
                extractor.calibrate_batchnorm(batch_images(batch).to(self.device) for batch in train_loader)

        def loss(images: torch.Tensor) -> torch.Tensor:
            return torch.stack(self.model.scale_losses(self.model(images))).sum()

        return gradient_epoch(self, train_loader, self._get_optimizer(), loss)

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        maps = self.model.anomaly_map(self.model(images))
        return maps.amax(dim=(1, 2)), {"anomaly_map": maps}

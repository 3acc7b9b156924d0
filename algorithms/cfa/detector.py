"""The registered CFA detector."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, gradient_epoch, iter_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import CfaModel

__all__ = ["Cfa"]


@register_algorithm(INFO)
class Cfa(AnomalyDetector):
    """CFA (Lee et al., IEEE Access 2022) with the official code's defaults (``trainer_cfa.py``, ``utils/cfa.py``).

    Parameters
    ----------
    input_size : int
        Square input side in pixels (official: resize 256, centre-crop 224; we use 256 uncropped).
    seed : int
        Seeds initialisation and training.
    backbone : str
        timm CNN (publication: ``wide_resnet50_2.tv_in1k``, torchvision's V1 weights).
    layers : sequence of str
        Levels whose pooled features are concatenated (publication: layers 1-3).
    pretrained : bool
        ImageNet weights (``False`` only for tests and the CPU demo).
    weights_path : str, optional
        Local backbone weights file, used instead of the hub.
    gamma_d : int
        Descriptor compression ``gamma_d`` (publication: 1).
    gamma_c : int
        Memory compression by K-means (publication: 1, none); only 1 is implemented.
    num_nearest : int
        ``K``, centroids each patch is attracted to, also the neighbours scored at test time (3).
    num_hard_negatives : int
        ``J``, the next-nearest centroids pushed away (3).
    nu : float
        Soft-boundary weight, the loss is divided by it (1e-3).
    alpha : float
        Repulsion margin (0.1).
    radius : float
        Initial hypersphere radius ``r``, trained with the descriptor (1e-5).
    lr, weight_decay : float
        AdamW (amsgrad) settings (1e-3, 5e-4).
    blur_sigma : float
        Gaussian smoothing of the map (4; 0 turns it off).
    bn_calibration : bool
        Re-estimate BatchNorm statistics of a random-initialised backbone before building the memory
        (not in the paper; CPU demo only; ignored when pretrained).

    Notes
    -----
    The first ``fit_epoch`` first builds the memory with the untrained descriptor (one extra pass
    over the training images, as the official ``DSVDD.__init__``), then trains. Saved with the
    detector (a buffer) and resized on load.
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        gamma_d: int = 1,
        gamma_c: int = 1,
        num_nearest: int = 3,
        num_hard_negatives: int = 3,
        nu: float = 1e-3,
        alpha: float = 0.1,
        radius: float = 1e-5,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        blur_sigma: float = 4.0,
        bn_calibration: bool = False,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        if input_size < 32:
            raise ValueError(f"cfa: input_size must be at least 32, got {input_size}")
        if gamma_c != 1:
            raise ValueError(f"cfa: only gamma_c=1 (no K-means compression of the memory, the default) is implemented, "
                             f"got {gamma_c}")  # fmt: skip
        if num_nearest < 1 or num_hard_negatives < 0:
            raise ValueError(f"cfa: num_nearest must be >= 1 and num_hard_negatives >= 0, got "
                             f"{num_nearest}, {num_hard_negatives}")  # fmt: skip
        if nu <= 0 or lr <= 0 or weight_decay < 0 or blur_sigma < 0:
            raise ValueError(f"cfa: nu and lr must be positive, weight_decay and blur_sigma non-negative, got "
                             f"{nu}, {lr}, {weight_decay}, {blur_sigma}")  # fmt: skip
        with local_seed(seed):
            self.model = CfaModel(
                backbone=backbone,
                layers=layers,
                input_size=input_size,
                gamma_d=gamma_d,
                radius=radius,
                blur_sigma=blur_sigma,
                pretrained=pretrained,
                weights_path=weights_path,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def memory(self) -> torch.Tensor:
        """The centroids ``(h * w, D)``; empty before the first epoch."""
        return self.model.memory

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            params = [p for p in self.model.parameters() if p.requires_grad]  # descriptor and radius
            self._optimizer = torch.optim.AdamW(
                params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"], amsgrad=True
            )
        return self._optimizer

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """Build the memory on the first call (untrained descriptor), then one epoch of the soft-boundary loss."""
        if self.memory.shape[0] == 0:
            if self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
                self.model.extractor.calibrate_batchnorm(batch_images(b).to(self.device) for b in train_loader)
            self.model.build_memory(iter_images(self.name, train_loader, self.input_size, self.device))
            needed = self.hparams["num_nearest"] + self.hparams["num_hard_negatives"]
            if self.memory.shape[0] < needed:
                raise ValueError(
                    f"cfa: the memory holds {self.memory.shape[0]} centroids (one per feature-map position) but "
                    f"num_nearest + num_hard_negatives = {needed}; use a larger input_size"
                )
        hp = self.hparams

        def loss(images: torch.Tensor) -> torch.Tensor:
            squared = self.model.squared_distances(self.model(images))
            k, j = hp["num_nearest"], hp["num_hard_negatives"]
            return self.model.loss(squared, k=k, j=j, nu=hp["nu"], alpha=hp["alpha"])

        return gradient_epoch(self, train_loader, self._get_optimizer(), loss)

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        descriptors = self.model(images)
        squared = self.model.squared_distances(descriptors)
        scores = self.model.patch_scores(squared, tuple(descriptors.shape[-2:]), k=self.hparams["num_nearest"])
        maps = self.model.anomaly_map(scores)
        return maps.amax(dim=(1, 2)), {"anomaly_map": maps}

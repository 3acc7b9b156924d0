"""The registered CDO detector: hyperparameters, the training epoch, prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.blur import gaussian_blur
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import CDOModel, cdo_loss, discrepancy, noise_rectangle_masks, paste_noise

__all__ = ["CDO"]


@register_algorithm(INFO)
class CDO(AnomalyDetector):
    """CDO (Cao et al., IEEE TII 2023) with the official defaults (``caoyunkang/CDO`` ``c4ba550``).

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 256); at least 32.
    seed : int
        Seeds initialisation (expert if random, apprentice) and the synthetic anomalies.
    backbone : str
        timm CNN for expert and apprentice (``wide_resnet50_2.tv_in1k``, VisionAD's; the paper's
        default HRNet-32 is not offered, see ``INFO.deviations``).
    layers : sequence of str
        The scales compared (publication: layers 1-3).
    pretrained : bool
        ImageNet weights for the expert (``False`` only for tests and the demo); the apprentice is
        always randomly initialised.
    weights_path : str, optional
        Local expert weights file.
    bn_calibration : bool
        Random-initialised expert only: re-estimate its BatchNorm statistics from the training
        images before the first epoch (not in the paper; the CPU demo uses it).
    gamma : float
        OOM exponent (publication: 2).
    oom : bool
        Over-/under-optimisation weighting (publication: on).
    mom : bool
        Margin optimisation, i.e. training with the noise rectangles (publication: on).
    max_rectangles : int
        At most this many noise rectangles per image (publication: 4).
    lr, weight_decay : float
        AdamW settings of the apprentice (publication: 4e-4, 1e-4).
    lr_decay : float
        ExponentialLR factor applied after every epoch (publication: 0.95).
    sigma : float
        Gaussian smoothing of the anomaly map (publication: 4; 0 disables it).

    Notes
    -----
    An epoch: per batch, rectangles (``noise_rectangle_masks``) of uniform noise are pasted into
    the images (``paste_noise``), expert and apprentice features give per-scale ``discrepancy``,
    and ``cdo_loss`` is minimised by AdamW on the apprentice, which is in train mode (its
    BatchNorm statistics move). The noise comes from a CPU generator seeded by ``seed`` and the
    epoch counter. Map: the sum over scales of the discrepancy, bilinearly upsampled, blurred;
    score: its maximum.
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
        bn_calibration: bool = False,
        gamma: float = 2.0,
        oom: bool = True,
        mom: bool = True,
        max_rectangles: int = 4,
        lr: float = 4e-4,
        weight_decay: float = 1e-4,
        lr_decay: float = 0.95,
        sigma: float = 4.0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        if input_size < 32:
            raise ValueError(f"cdo: input_size must be at least 32, got {input_size}")
        if not layers:
            raise ValueError("cdo: layers must name at least one backbone stage")
        if gamma < 0 or max_rectangles < 0 or sigma < 0:
            raise ValueError(f"cdo: gamma, max_rectangles and sigma must be non-negative, got "
                             f"{gamma}, {max_rectangles}, {sigma}")  # fmt: skip
        if lr <= 0 or weight_decay < 0 or not 0 < lr_decay <= 1:
            raise ValueError(f"cdo: need lr > 0, weight_decay >= 0 and 0 < lr_decay <= 1, got "
                             f"{lr}, {weight_decay}, {lr_decay}")  # fmt: skip
        with local_seed(seed):
            self.model = CDOModel(backbone=backbone, layers=layers, pretrained=pretrained, weights_path=weights_path)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            h = self.hparams
            self._optimizer = torch.optim.AdamW(
                self.model.apprentice.parameters(), lr=h["lr"], weight_decay=h["weight_decay"]
            )
            self._scheduler = torch.optim.lr_scheduler.ExponentialLR(self._optimizer, gamma=h["lr_decay"])
        return self._optimizer

    def loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """CDO's loss on a batch of normal images, with noise rectangles pasted when ``mom``."""
        h = self.hparams
        masks = None
        if h["mom"]:
            generator = generator if generator is not None else torch.Generator().manual_seed(h["seed"])
            masks = noise_rectangle_masks(
                images.shape[0], images.shape[-1], generator=generator, max_rectangles=h["max_rectangles"]
            )
            images = paste_noise(images, masks, generator=generator)
            masks = masks.to(images.device)
        return cdo_loss(discrepancy(*self.model(images)), masks, gamma=h["gamma"], oom=h["oom"])

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass over ``train_loader`` training the apprentice (trains from the first epoch)."""
        device = self.device
        if int(self.epochs_done) == 0 and self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
            self.model.expert.calibrate_batchnorm(batch_images(batch).to(device) for batch in train_loader)
        optimizer = self._get_optimizer()
        self.train()
        epoch = int(self.epochs_done)
        seed = self.hparams["seed"] * 1_000_003 + epoch
        generator = torch.Generator().manual_seed(seed)
        total, batches = 0.0, 0
        with local_seed(seed, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                if images.shape[0] < 2:
                    raise ValueError(f"{self.name}: the apprentice's batch norm needs batches of at least 2")
                loss = self.loss(images, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} "
                                             f"(epoch {epoch + 1}); try a lower lr")  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
        self._scheduler.step()
        self.epochs_done += 1
        return {"loss": total / max(batches, 1)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        maps = self.model.anomaly_map(images)
        if self.hparams["sigma"] > 0:
            maps = gaussian_blur(maps, float(self.hparams["sigma"]))
        return maps.amax(dim=(1, 2)), {"anomaly_map": maps}

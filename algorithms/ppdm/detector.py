"""The registered PPDm detector."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.blur import gaussian_blur
from ..components.distillation import global_cosine_loss
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import OffsetNet, PPDmModel

__all__ = ["PPDm"]


@register_algorithm(INFO)
class PPDm(AnomalyDetector):
    """PPDm, DMAD's reverse distillation with a learned deformation and vector quantisation.

    Parameters
    ----------
    input_size : int
        Square input side (publication: 256); a multiple of 32.
    seed : int
        Seeds initialisation (and a random-init encoder) and training.
    backbone : str
        timm encoder (publication: WRN50-2 with torchvision V1 weights, ``wide_resnet50_2.tv_in1k``).
    layers : sequence of str
        The three encoder levels (publication: layers 1-3).
    pretrained : bool
        ImageNet weights for the encoder (``False`` only for tests).
    weights_path : str, optional
        Local encoder weights file, used instead of the hub.
    block : {"auto", "basic", "bottleneck"}
        Residual block of the bottleneck and decoder (``"auto"``: bottleneck blocks for ResNet-50-like encoders).
    bottleneck_blocks : int, optional
        Depth of the one-class embedding stage (default 3 bottleneck / 2 basic blocks).
    decoder_blocks : sequence of 3 int, optional
        Blocks per decoder stage, deepest first (default ``(3, 4, 6)`` / ``(2, 2, 2)``).
    offset_channels : int
        Width of every layer of the offset network (publication: 64).
    codebook_size : int
        Codes of the layer-3 vector quantiser (publication: 200).
    beta : float
        Commitment weight of the VQ loss (publication: 0.25).
    gamma : float
        Weight of the inverse-warp reconstruction term of the offset loss (publication: 1).
    lr : float
        AdamW learning rate (publication: 0.005).
    betas : sequence of 2 float
        AdamW betas (publication: (0.5, 0.999)).
    weight_decay : float
        AdamW weight decay (publication: torch's default 0.01).
    lr_epochs : int
        Period ``T_max`` of the per-epoch cosine annealing of the lr (publication: 400, the run's length).
    sigma : float
        Gaussian smoothing of the anomaly map (publication: 4).
    bn_calibration : bool
        Re-estimate a random-initialised encoder's BatchNorm statistics from the training images before
        the first epoch (CPU demo and tests only; ignored with pretrained weights).

    Notes
    -----
    Training loss per batch: RD4AD's global cosine loss between the encoder's and the decoder's
    features of the *deformed* image, plus the offset loss (``OffsetNet.loss``), plus the VQ loss;
    one AdamW step on the offset net, the bottleneck and the decoder. Anomaly map: RD's map of the
    deformed image (sum over levels of ``1 - cos``, bilinear to the input size), warped back by the
    two inverse fields, Gaussian sigma 4; image score: its maximum (the publication's first rule, the
    only one here: its second rule min-max-normalises scores over the test set).
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
        block: str = "auto",
        bottleneck_blocks: int | None = None,
        decoder_blocks: Sequence[int] | None = None,
        offset_channels: int = 64,
        codebook_size: int = 200,
        beta: float = 0.25,
        gamma: float = 1.0,
        lr: float = 0.005,
        betas: Sequence[float] = (0.5, 0.999),
        weight_decay: float = 0.01,
        lr_epochs: int = 400,
        sigma: float = 4.0,
        bn_calibration: bool = False,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        self.hparams["betas"] = list(betas)
        if decoder_blocks is not None:
            self.hparams["decoder_blocks"] = list(decoder_blocks)
        if input_size < 32 or input_size % 32:
            raise ValueError(f"ppdm: input_size must be a positive multiple of 32, got {input_size}")
        if lr <= 0 or len(betas) != 2 or sigma <= 0 or weight_decay < 0:
            raise ValueError(f"ppdm: need lr > 0, two betas, sigma > 0 and weight_decay >= 0, got {lr}, "
                             f"{list(betas)}, {sigma}, {weight_decay}")  # fmt: skip
        if codebook_size < 1 or offset_channels < 1 or lr_epochs < 1 or beta < 0 or gamma < 0:
            raise ValueError(f"ppdm: need codebook_size, offset_channels and lr_epochs >= 1, beta >= 0 and gamma >= 0, "
                             f"got {codebook_size}, {offset_channels}, {lr_epochs}, {beta}, {gamma}")  # fmt: skip
        with local_seed(seed):
            self.model = PPDmModel(
                backbone=backbone,
                layers=layers,
                pretrained=pretrained,
                weights_path=weights_path,
                block=block,
                bottleneck_blocks=bottleneck_blocks,
                decoder_blocks=decoder_blocks,
                offset_channels=offset_channels,
                codebook_size=codebook_size,
                beta=beta,
            )
        if self.model.reduction > input_size:
            raise ValueError(
                f"ppdm: input_size {input_size} is smaller than the bottleneck stride {self.model.reduction}"
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            h, m = self.hparams, self.model
            params = [*m.offset.parameters(), *m.decoder.parameters(), *m.bottleneck.parameters()]
            self._optimizer = torch.optim.AdamW(
                params, lr=h["lr"], betas=tuple(h["betas"]), weight_decay=h["weight_decay"]
            )
            self._scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self._optimizer, T_max=h["lr_epochs"])
            for _ in range(int(self.epochs_done)):  # resumed after a load: the schedule continues
                self._scheduler.step()
        return self._optimizer

    def losses(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three training losses on a batch and their sum (``"loss"``)."""
        out = self.model(images)
        main = global_cosine_loss(out.teacher, out.student)
        offset = OffsetNet.loss(images, out.warped, out.fields, gamma=float(self.hparams["gamma"]))
        return {"loss": main + offset + out.vq_loss, "main": main, "offset": offset, "vq": out.vq_loss}

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass over ``train_loader`` training the offset net, the bottleneck and the decoder."""
        device = self.device
        if int(self.epochs_done) == 0 and self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
            self.model.encoder.calibrate_batchnorm(batch_images(batch).to(device) for batch in train_loader)
        optimizer = self._get_optimizer()
        self.train()
        epoch = int(self.epochs_done)
        totals: dict[str, float] = {}
        batches = 0
        with local_seed(self.hparams["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                if images.shape[0] < 2:
                    raise ValueError(f"{self.name}: batch norm needs batches of at least 2")
                losses = self.losses(images)
                if not torch.isfinite(losses["loss"]):
                    raise FloatingPointError(f"{self.name}: the training loss became {losses['loss'].item()} "
                                             f"(epoch {epoch + 1}); try a lower lr")  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                optimizer.step()
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + float(value.detach())
                batches += 1
        self._scheduler.step()
        self.epochs_done += 1
        return {key: value / max(batches, 1) for key, value in totals.items()}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        maps = self.model.anomaly_map(self.model(images), self.input_size)
        maps = gaussian_blur(maps, float(self.hparams["sigma"]))
        return maps.amax(dim=(1, 2)), {"anomaly_map": maps}

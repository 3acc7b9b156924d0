"""The registered SimpleNet detector: hyperparameters, the discriminator training loop, prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.losses import truncated_l1_loss
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import SimpleNetModel, gaussian_feature_noise

__all__ = ["SimpleNet"]


@register_algorithm(INFO)
class SimpleNet(AnomalyDetector):
    """SimpleNet (Liu et al., CVPR 2023) with the official MVTec AD defaults.

    Parameters
    ----------
    input_size : int
        Square input side in pixels (harness: 256; the official run crops 288).
    seed : int
        Seeds initialisation and the training noise.
    backbone : str
        timm CNN (``wide_resnet50_2.tv_in1k``: the torchvision V1 weights the noise scale assumes).
    layers : sequence of str
        Backbone stages (publication: layers 2 and 3).
    pretrained : bool
        ImageNet weights (hub cache or ``weights_path``); ``False`` only for tests and the demo.
    weights_path : str, optional
        Local backbone weights file.
    bn_calibration : bool
        Random-initialised backbones only: re-estimate the backbone's BatchNorm statistics from
        the training images before the first epoch (not in the paper; the CPU demo uses it).
    patch_size, pretrain_embed_dim, target_embed_dim : int
        Patch embedding (publication: 3, 1536, 1536).
    dsc_layers, dsc_hidden : int
        Discriminator depth and width (publication: 2, 1024).
    noise_std : float
        Standard deviation of the Gaussian feature noise (publication: 0.015).
    dsc_margin : float
        Truncation of the L1 loss (publication: 0.5).
    dsc_lr, dsc_weight_decay : float
        Adam settings of the discriminator (publication: 2e-4, 1e-5).
    adaptor_lr : float
        AdamW learning rate of the adaptor (official: ``lr * 0.1`` with ``lr = 1e-3``; AdamW's
        default weight decay 0.01).
    gan_epochs : int
        Discriminator passes over the training set per (meta-)epoch (publication: 4).
    meta_epochs : int
        Length of the run in meta-epochs (publication: 40); only sets the cosine schedule's period.
    cosine_lr : bool
        Cosine annealing of the discriminator lr to ``0.4 dsc_lr`` over ``(meta_epochs - 1) *
        gan_epochs`` discriminator epochs (official ``--cos_lr``, off in its MVTec run).
    blur_sigma : float
        Gaussian smoothing of the anomaly map (publication: 4; 0 disables it).

    Notes
    -----
    One ``fit_epoch`` is one official meta-epoch: ``gan_epochs`` passes, each batch giving the
    adapted features (true) and the same plus ``N(0, noise_std^2)`` noise (fake) to the
    discriminator, loss ``truncated_l1_loss`` (true normal, fake anomalous), one step of both
    optimisers. The noise comes from a generator seeded by ``seed`` and the epoch counter.
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        bn_calibration: bool = False,
        patch_size: int = 3,
        pretrain_embed_dim: int = 1536,
        target_embed_dim: int = 1536,
        dsc_layers: int = 2,
        dsc_hidden: int = 1024,
        noise_std: float = 0.015,
        dsc_margin: float = 0.5,
        dsc_lr: float = 2e-4,
        dsc_weight_decay: float = 1e-5,
        adaptor_lr: float = 1e-4,
        gan_epochs: int = 4,
        meta_epochs: int = 40,
        cosine_lr: bool = False,
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        if not layers:
            raise ValueError("simplenet: layers must name at least one backbone stage")
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"simplenet: patch_size must be a positive odd number, got {patch_size}")
        if min(pretrain_embed_dim, target_embed_dim, dsc_hidden, dsc_layers, gan_epochs, meta_epochs) < 1:
            raise ValueError("simplenet: embedding dimensions, dsc_hidden, dsc_layers, gan_epochs and meta_epochs "
                             "must be positive")  # fmt: skip
        if noise_std <= 0 or dsc_margin < 0 or blur_sigma < 0:
            raise ValueError(f"simplenet: noise_std must be positive and dsc_margin, blur_sigma non-negative, got "
                             f"{noise_std}, {dsc_margin}, {blur_sigma}")  # fmt: skip
        if dsc_lr <= 0 or adaptor_lr <= 0 or dsc_weight_decay < 0:
            raise ValueError("simplenet: learning rates must be positive and dsc_weight_decay non-negative")
        with local_seed(seed):
            self.model = SimpleNetModel(
                backbone=backbone,
                layers=layers,
                pretrained=pretrained,
                weights_path=weights_path,
                patch_size=patch_size,
                pretrain_embed_dim=pretrain_embed_dim,
                target_embed_dim=target_embed_dim,
                dsc_layers=dsc_layers,
                dsc_hidden=dsc_hidden,
                blur_sigma=blur_sigma,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def _get_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        if self._optimizers is None:
            h = self.hparams
            adaptor = torch.optim.AdamW(self.model.adaptor.parameters(), lr=h["adaptor_lr"])
            discriminator = torch.optim.Adam(
                self.model.discriminator.parameters(), lr=h["dsc_lr"], weight_decay=h["dsc_weight_decay"]
            )
            self._optimizers = (adaptor, discriminator)
            if h["cosine_lr"]:
                self._scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                    discriminator, max((h["meta_epochs"] - 1) * h["gan_epochs"], 1), eta_min=h["dsc_lr"] * 0.4
                )
        return self._optimizers

    def loss(self, adapted: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Truncated L1 of the discriminator on ``(N, D)`` adapted features and their noisy copies."""
        fake = adapted + gaussian_feature_noise(adapted, self.hparams["noise_std"], generator=generator)
        normality = self.model.discriminator(torch.cat([adapted, fake]))
        anomalous = torch.cat([normality.new_zeros(len(adapted)), normality.new_ones(len(fake))])
        return truncated_l1_loss(normality, anomalous, margin=self.hparams["dsc_margin"])

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One meta-epoch: ``gan_epochs`` passes training the adaptor and the discriminator."""
        device = self.device
        if int(self.epochs_done) == 0 and self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
            self.model.extractor.calibrate_batchnorm(batch_images(batch).to(device) for batch in train_loader)
        adaptor_opt, dsc_opt = self._get_optimizers()
        self.train()
        epoch = int(self.epochs_done)
        seed = self.hparams["seed"] * 1_000_003 + epoch
        generator = torch.Generator(device=device).manual_seed(seed)
        total, batches = 0.0, 0
        with local_seed(seed, device):
            for _ in range(self.hparams["gan_epochs"]):
                for images in iter_images(self.name, train_loader, self.input_size, device):
                    adapted = self.model.adapted_features(images)
                    loss = self.loss(adapted.reshape(-1, adapted.shape[-1]), generator)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} "
                                                 f"(epoch {epoch + 1}); try a lower lr")  # fmt: skip
                    adaptor_opt.zero_grad(set_to_none=True)
                    dsc_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    adaptor_opt.step()
                    dsc_opt.step()
                    total += float(loss.detach())
                    batches += 1
                if self._scheduler is not None:
                    self._scheduler.step()
        self.epochs_done += 1
        return {"loss": total / max(batches, 1)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        scores, maps = self.model(images)
        return scores, {"anomaly_map": maps}

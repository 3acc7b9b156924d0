"""The registered GLASS detector: hyperparameters, the GAS + LAS training loop, prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.texture import TEXTURE_FALLBACKS, TextureSource
from ..components.training import check_images, iter_images, local_seed, quantile
from ..data.loaders import IMAGENET_MEAN, IMAGENET_STD
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import (
    DISTRIBUTIONS,
    GlassModel,
    blend_local_anomalies,
    draw_blend_factors,
    estimate_foreground,
    global_anomaly_losses,
    hard_focal_loss,
    las_masks,
    truncated_projection,
)

__all__ = ["FOREGROUND_MODES", "GLASS"]

#: ``"none"``: LAS masks anywhere (official ``fg=0``); ``"estimate"``: restricted to an estimated
#: foreground (our stand-in for the official per-category mask files, ``fg=1``).
FOREGROUND_MODES = ("none", "estimate")


@register_algorithm(INFO)
class GLASS(AnomalyDetector):
    """GLASS (Chen et al., ECCV 2024) with the official MVTec AD defaults and one setting for all categories.

    Parameters
    ----------
    input_size : int
        Square input side (publication: resize to 288, no crop: a 36 x 36 patch grid).
    seed : int
        Seeds initialisation, the syntheses and the feature noise.
    backbone : str
        timm CNN (``wide_resnet50_2.tv_in1k``: the torchvision V1 weights the noise scale assumes).
    layers : sequence of str
        Backbone stages (publication: layers 2 and 3).
    pretrained, weights_path : bool, str
        ImageNet weights (hub cache or a local file); ``pretrained=False`` for tests and the demo.
    bn_calibration : bool
        Random-initialised backbones only: re-estimate the backbone's BatchNorm statistics from
        the training images before the first epoch (not in the paper; the CPU demo uses it).
    patch_size, pretrain_embed_dim, target_embed_dim : int
        Patch embedding (publication: 3, 1536, 1536).
    dsc_layers, dsc_hidden : int
        Discriminator depth and width (publication: 2, 1024).
    noise_std : float
        Standard deviation of the Gaussian feature noise that starts GAS (publication: 0.015).
    ascent_steps : int
        Gradient-ascent steps of GAS (publication ``step`` 20; 0 is the official ``mining=0``).
    ascent_step_size : float
        Length of each normalised ascent step (official 0.001).
    projection_interval : int
        Truncated projection after every this many ascent steps (official 5).
    distribution : {"manifold", "hypersphere"}
        GAS/LAS variant (official ``svd`` 0/1). The official code picks it **per category** from a
        table (anomalib's MVTec table: hypersphere for bottle, cable, pill, screw, transistor);
        here it is one setting for every category, ``"manifold"`` (10 of the 15 MVTec AD categories).
    manifold_radius : float
        Manifold mode: ``|gas - true|`` is projected into ``[r, 2 r]`` (official 0.5).
    radius_quantile : float
        Hypersphere mode: ``r_t`` is this quantile of the normal points' distances to the centre
        (official ``radius`` 0.75).
    hard_quantile : float
        Only LAS points with ``(score - mask)^2`` at or above this quantile enter the focal loss
        (official ``p`` 0.5; 0 keeps all).
    focal_gamma : float
        Focal-loss exponent (official 2).
    lr : float
        Adam learning rate of the projection, weight decay 1e-5 (official ``lr`` 1e-4).
    dsc_lr : float
        AdamW learning rate of the discriminator (official 2e-4; AdamW's default decay 0.01).
    limit : int
        Each epoch stops once more than this many training images have been seen (official
        ``limit`` 392; the centre still uses the whole training set).
    texture_dir : str, optional
        Folder of texture images (DTD's ``images/``) for LAS. ``None``: ``texture_fallback``.
    texture_fallback : {"procedural", "structure"}
        Texture source without ``texture_dir`` (``components.texture``): random procedural
        colour textures, or the image itself augmented and tile-shuffled.
    foreground : {"none", "estimate"}
        Restrict LAS masks to the object: ``"none"`` (official ``fg=0``, our default: one setting
        for every category) or ``"estimate"`` (``model.estimate_foreground``).
    perlin_threshold : float
        Binarisation threshold of the Perlin fields (official 0.5).
    beta_mean, beta_std : float
        LAS blend factor ``beta ~ N(mean, std^2)`` clipped to ``[0.2, 0.8]`` (official 0.5, 0.1).
    blur_sigma : float
        Gaussian smoothing of the anomaly map (publication: 4; 0 disables it).
    blur_border : {"scipy", "reflect"}
        Border of that smoothing (official scipy; ``"reflect"`` is anomalib's).
    """

    def __init__(
        self,
        *,
        input_size: int = 288,
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
        ascent_steps: int = 20,
        ascent_step_size: float = 0.001,
        projection_interval: int = 5,
        distribution: str = "manifold",
        manifold_radius: float = 0.5,
        radius_quantile: float = 0.75,
        hard_quantile: float = 0.5,
        focal_gamma: float = 2.0,
        lr: float = 1e-4,
        dsc_lr: float = 2e-4,
        limit: int = 392,
        texture_dir: str | None = None,
        texture_fallback: str = "procedural",
        foreground: str = "none",
        perlin_threshold: float = 0.5,
        beta_mean: float = 0.5,
        beta_std: float = 0.1,
        blur_sigma: float = 4.0,
        blur_border: str = "scipy",
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        if not layers:
            raise ValueError("glass: layers must name at least one backbone stage")
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"glass: patch_size must be a positive odd number, got {patch_size}")
        if min(pretrain_embed_dim, target_embed_dim, dsc_hidden, dsc_layers, projection_interval, limit) < 1:
            raise ValueError("glass: embedding dimensions, dsc_hidden, dsc_layers, projection_interval and limit "
                             "must be positive")  # fmt: skip
        if ascent_steps < 0 or noise_std < 0 or ascent_step_size < 0 or manifold_radius <= 0:
            raise ValueError("glass: ascent_steps, noise_std and ascent_step_size must be >= 0, manifold_radius > 0")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"glass: distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        if foreground not in FOREGROUND_MODES:
            raise ValueError(f"glass: foreground must be one of {FOREGROUND_MODES}, got {foreground!r}")
        if texture_fallback not in TEXTURE_FALLBACKS:
            raise ValueError(f"glass: texture_fallback must be one of {TEXTURE_FALLBACKS}, got {texture_fallback!r}")
        if not 0 <= radius_quantile <= 1 or not 0 <= hard_quantile < 1 or focal_gamma < 0:
            raise ValueError("glass: radius_quantile must lie in [0, 1], hard_quantile in [0, 1), focal_gamma >= 0")
        if lr <= 0 or dsc_lr <= 0 or blur_sigma < 0 or beta_std < 0:
            raise ValueError("glass: learning rates must be positive, blur_sigma and beta_std non-negative")
        if blur_border not in ("scipy", "reflect"):
            raise ValueError(f"glass: blur_border must be 'scipy' or 'reflect', got {blur_border!r}")
        self.textures = TextureSource(texture_dir, fallback=texture_fallback)
        with local_seed(seed):
            self.model = GlassModel(
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
                blur_border=blur_border,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.center: torch.Tensor | None = None  # (h*w, D), recomputed at each epoch (hypersphere mode)
        self._optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None

    # -- training ---------------------------------------------------------------------------------

    def _get_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        if self._optimizers is None:
            h = self.hparams
            projection = torch.optim.Adam(self.model.projection.parameters(), lr=h["lr"], weight_decay=1e-5)
            discriminator = torch.optim.AdamW(self.model.discriminator.parameters(), lr=h["dsc_lr"])
            self._optimizers = (projection, discriminator)
        return self._optimizers

    def _normalise(self, images01: torch.Tensor) -> torch.Tensor:
        mean = images01.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        return (images01 - mean) / images01.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def _to_unit(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        return (images * images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1) + mean).clamp(0, 1)

    def compute_center(self, train_loader) -> torch.Tensor:
        """The mean projected feature per patch position ``(h*w, D)``: the mean of the batch means
        over the whole training set (official ``trainer``, at the start of every epoch)."""
        total, batches = None, 0
        with torch.no_grad():
            for images in iter_images(self.name, train_loader, self.input_size, self.device):
                features = self.model.projected_features(images)
                mean = features.reshape(features.shape[0], -1, features.shape[-1]).mean(dim=0)
                total = mean if total is None else total + mean
                batches += 1
        return total / batches

    def synthesize(
        self, images: torch.Tensor, grid: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """LAS: the locally anomalous images ``(B, 3, S, S)`` (normalised, like ``images``) and the
        feature-grid masks ``(B, 1, grid, grid)``; every random draw from the CPU ``generator``."""
        h = self.hparams
        b, size = images.shape[0], images.shape[-1]
        unit = self._to_unit(images).cpu()
        foreground = estimate_foreground(unit) if h["foreground"] == "estimate" else None
        pixel, feature = las_masks(
            b, size, grid, generator=generator, threshold=h["perlin_threshold"], foreground=foreground
        )
        textures = self.textures.sample(b, size, generator, images=unit)
        beta = draw_blend_factors(b, generator, mean=h["beta_mean"], std=h["beta_std"])
        textures = self._normalise(textures.to(images.device, images.dtype))
        return blend_local_anomalies(images, textures, pixel, beta), feature.to(images.device)

    def loss_from_features(
        self,
        true: torch.Tensor,
        fake: torch.Tensor,
        masks: torch.Tensor,
        noise: torch.Tensor,
        center: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """GLASS's loss ``BCE(D(true), 0) + BCE(D(gas), 1) + focal(D(las), mask)`` (paper eq. 12).

        ``true`` and ``fake`` ``(N, D)`` projected features of the images and of their LAS copies
        (``N = B h w``), ``masks`` ``(N,)`` the feature-grid LAS masks, ``noise`` ``(N, D)`` the
        Gaussian start of GAS, ``center`` ``(h*w, D)`` (hypersphere mode). Returns the loss and
        its terms (``true``, ``gas``, ``focal``).
        """
        h = self.hparams
        hypersphere = h["distribution"] == "hypersphere"
        centers = radius = None
        if hypersphere:
            if center is None:
                raise ValueError("glass: the hypersphere distribution needs the centre (compute_center)")
            centers = center.repeat(len(true) // len(center), 1)
            normal = masks == 0
            points = torch.cat([fake[normal], true]).detach()
            anchors = torch.cat([centers[normal], centers])
            radius = quantile((points - anchors).norm(dim=1), h["radius_quantile"])
        true_loss, gas_loss = global_anomaly_losses(
            self.model.anomaly_probability,
            true,
            noise,
            steps=h["ascent_steps"],
            step_size=h["ascent_step_size"],
            project_every=h["projection_interval"],
            distribution=h["distribution"],
            center=centers,
            radius=radius,
            manifold_radius=h["manifold_radius"],
        )
        if hypersphere:  # LAS points pushed out to [2 r_t, 4 r_t] from the centre
            anomalous = masks > 0
            fake = fake.clone()
            fake[anomalous] = truncated_projection(fake[anomalous], centers[anomalous], 2 * radius, 4 * radius)
        focal = hard_focal_loss(
            self.model.anomaly_probability(fake), masks, p=h["hard_quantile"], gamma=h["focal_gamma"]
        )
        return true_loss + gas_loss + focal, {"true": true_loss, "gas": gas_loss, "focal": focal}

    def training_loss(
        self, images: torch.Tensor, generator: torch.Generator, noise_generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one batch of (normalised) normal images with fresh LAS and GAS samples."""
        true = self.model.projected_features(images)
        _, gh, gw, d = true.shape
        if gh != gw:
            raise ValueError(f"glass: expected a square patch grid, got {gh} x {gw}")
        augmented, masks = self.synthesize(images, gh, generator)
        fake = self.model.projected_features(augmented).reshape(-1, d)
        true = true.reshape(-1, d)
        noise = torch.randn(true.shape, generator=noise_generator, device=true.device, dtype=true.dtype)
        noise = noise * self.hparams["noise_std"]
        return self.loss_from_features(true, fake, masks.reshape(-1), noise, self.center)

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One official epoch: the centre (hypersphere mode), then one step of both optimisers per
        batch until more than ``limit`` images have been seen."""
        device = self.device
        h = self.hparams
        if int(self.epochs_done) == 0 and h["bn_calibration"] and not h["pretrained"]:
            self.model.extractor.calibrate_batchnorm(batch_images(batch).to(device) for batch in train_loader)
        projection_opt, dsc_opt = self._get_optimizers()
        epoch = int(self.epochs_done)
        seed = h["seed"] * 1_000_003 + epoch
        generator = torch.Generator().manual_seed(seed)
        noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
        if h["distribution"] == "hypersphere":
            self.center = self.compute_center(train_loader)
        self.train()
        totals: dict[str, float] = {}
        batches = seen = 0
        with local_seed(seed, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                loss, parts = self.training_loss(images, generator, noise_generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} "
                                             f"(epoch {epoch + 1}); try a lower lr")  # fmt: skip
                projection_opt.zero_grad(set_to_none=True)
                dsc_opt.zero_grad(set_to_none=True)
                loss.backward()
                projection_opt.step()
                dsc_opt.step()
                for key, value in {"loss": loss, **parts}.items():
                    totals[key] = totals.get(key, 0.0) + float(value.detach())
                batches += 1
                seen += images.shape[0]
                if seen > h["limit"]:
                    break
        self.epochs_done += 1
        return {key: value / max(batches, 1) for key, value in totals.items()}

    # -- inference --------------------------------------------------------------------------------

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        scores, maps = self.model(images)
        return scores, {"anomaly_map": maps}

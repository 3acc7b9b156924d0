"""The registered MSPBA detector: patch sampling, the three-task training, memory banks, prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.coreset import approximate_greedy_coreset
from ..components.kmeans import kmeans
from ..components.training import check_images, iter_images, local_seed
from ..data.loaders import IMAGENET_STD
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import (
    MspbaModel,
    cluster_loss,
    crop_patches,
    position_loss,
    position_offsets,
    svdd_loss,
    svdd_offsets,
)

__all__ = ["Mspba"]

#: Lloyd iterations of the first clustering (per restart) and of each later refresh (official code:
#: ``k_center`` 30, ``k_center_simple`` 40).
KMEANS_ITERATIONS, KMEANS_REFRESH_ITERATIONS = 30, 40


@register_algorithm(INFO)
class Mspba(AnomalyDetector):
    """MSPBA (Tsai, Wu, Lai, WACV 2022): multi-scale patch-based representation learning.

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 256).
    seed : int
        Seeds initialisation, patch sampling, noise and clustering.
    backbone : str
        timm CNN (publication: ``vgg16.tv_in1k``, torchvision's VGG16).
    layers : three ints
        timm feature index each scale's encoder reads (VGG16: 4 = relu5_3, 2 = relu3_3, 1 = relu2_2).
    pretrained, weights_path
        ImageNet weights from the hub cache or a local file (``pretrained=False`` for tests).
    train_backbone : bool
        Fine-tune the backbone with the encoders (the official optimiser includes it; default) or freeze it.
    bn_calibration : bool
        Random-initialised BatchNorm backbones only (tests, CPU demo; not in the paper): re-estimate the
        BatchNorm statistics from the training images before training. Ignored when pretrained.
    patch_sizes : three ints
        Patch sides of the three scales (64, 32, 16).
    strides : three ints
        Test-time grid steps per scale (16, 4, 4); training and test patches are scored on this grid.
    embed_dim : int
        Embedding size ``D`` (64).
    lr : float
        Adam learning rate (1e-5).
    lambda_svdd : float
        Weight of the SVDD loss, ``lambda`` of the paper's eq. 5 (1e-3).
    num_clusters : three ints
        K-means groups per scale (50 each).
    cluster_every : int
        Epochs between re-clusterings; the centres are computed from the embeddings of the
        clustering patches seen in every ``cluster_every``-th epoch (5).
    cluster_start : int
        The clustering loss joins after this many epochs (10; the official code from epoch 11).
    cluster_restarts : int
        Random-partition restarts of the first k-means (20).
    cluster_weight : float
        Weight of the clustering loss (1). ``0`` reproduces the official code's gradients, whose
        clustering loss is computed on detached embeddings and so trains nothing.
    samples_per_image : int
        Samples of each task and scale drawn per training image per epoch (the code's ``repeat``, 100).
    batch_size : int
        Samples per optimiser step (64).
    noise_std : float
        Colour shift and pixel noise of the position task's patches, in units of the [0, 1]
        intensity range (0.02).
    coreset_ratio : float
        Fraction of training patch embeddings kept per scale (1: all of them, as published; below 1
        PatchCore's approximate greedy coreset, for the CPU demo).

    References
    ----------
    C.-C. Tsai, T.-H. Wu, S.-H. Lai, "Multi-Scale Patch-Based Representation Learning for Image
    Anomaly Detection and Segmentation", WACV 2022, pp. 3992-4000.
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        backbone: str = "vgg16.tv_in1k",
        layers: Sequence[int] = (4, 2, 1),
        pretrained: bool = True,
        weights_path: str | None = None,
        train_backbone: bool = True,
        bn_calibration: bool = False,
        patch_sizes: Sequence[int] = (64, 32, 16),
        strides: Sequence[int] = (16, 4, 4),
        embed_dim: int = 64,
        lr: float = 1e-5,
        lambda_svdd: float = 1e-3,
        num_clusters: Sequence[int] = (50, 50, 50),
        cluster_every: int = 5,
        cluster_start: int = 10,
        cluster_restarts: int = 20,
        cluster_weight: float = 1.0,
        samples_per_image: int = 100,
        batch_size: int = 64,
        noise_std: float = 0.02,
        coreset_ratio: float = 1.0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        for name in ("layers", "patch_sizes", "strides", "num_clusters"):
            values = [int(v) for v in self.hparams[name]]
            if len(values) != 3:
                raise ValueError(f"mspba: {name} needs one value per scale (3), got {self.hparams[name]!r}")
            self.hparams[name] = values
        if min(self.hparams["strides"]) < 1 or min(self.hparams["num_clusters"]) < 1:
            raise ValueError("mspba: strides and num_clusters must be positive")
        if max(self.hparams["patch_sizes"]) > input_size or min(self.hparams["patch_sizes"]) < 1:
            raise ValueError(f"mspba: patch sizes {self.hparams['patch_sizes']} must fit input_size {input_size}")
        if embed_dim < 1 or lr <= 0 or lambda_svdd < 0 or cluster_weight < 0 or noise_std < 0:
            raise ValueError("mspba: embed_dim and lr must be positive; lambda_svdd, cluster_weight, noise_std >= 0")
        if min(cluster_every, cluster_restarts, samples_per_image, batch_size) < 1 or cluster_start < 0:
            raise ValueError("mspba: cluster_every, cluster_restarts, samples_per_image and batch_size must be "
                             "positive, cluster_start non-negative")  # fmt: skip
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"mspba: coreset_ratio must be in (0, 1], got {coreset_ratio}")
        with local_seed(seed):
            self.model = MspbaModel(
                backbone=backbone,
                layers=self.hparams["layers"],
                patch_sizes=self.hparams["patch_sizes"],
                embed_dim=embed_dim,
                pretrained=pretrained,
                weights_path=weights_path,
                train_backbone=train_backbone,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None
        self._banks_stale = True

    # -- training -------------------------------------------------------------------------------
    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self._optimizer = torch.optim.Adam(params, lr=self.hparams["lr"])
        return self._optimizer

    def _noisy(self, patches: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The position task's perturbation: a colour shift per patch and channel plus pixel noise."""
        sigma = float(self.hparams["noise_std"])
        if sigma == 0:
            return patches
        n, c, k, _ = patches.shape
        scale = sigma / patches.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)  # [0, 1] units -> normalised units
        shift = torch.randn(n, c, 1, 1, generator=generator).to(patches)
        noise = torch.randn(n, c, k, k, generator=generator).to(patches)
        return patches + (shift + noise) * scale

    def _step_loss(
        self,
        images: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
        clustering: bool,
        collected: list[list[torch.Tensor]] | None,
    ) -> torch.Tensor:
        """The loss of one step: for every scale, position + lambda * SVDD (+ clustering)."""
        size, n = images.shape[-1], index.shape[0]
        total = images.new_zeros(())
        for scale, patch in enumerate(self.hparams["patch_sizes"]):
            first = torch.randint(size - patch + 1, (n, 2), generator=generator)
            second, positions = position_offsets(first, size, patch, generator)
            anchor = torch.randint(size - patch + 1, (n, 2), generator=generator)
            near, far = svdd_offsets(anchor, size, patch, generator)
            lone = torch.randint(size - patch + 1, (n, 2), generator=generator)
            crops = [crop_patches(images, index, c, patch) for c in (first, second, anchor, near, far, lone)]
            crops[0], crops[1] = self._noisy(crops[0], generator), self._noisy(crops[1], generator)
            h = self.model.encode(torch.cat(crops), scale).split(n)
            logits = self.model.classifiers[scale](h[0], h[1])
            loss = position_loss(logits, positions.to(images.device))
            loss = loss + self.hparams["lambda_svdd"] * svdd_loss(h[2], h[3], h[4])
            if collected is not None:
                collected[scale].append(h[5].detach())
            centres = self.model.centres(scale)
            if clustering and centres.shape[0] > 0 and self.hparams["cluster_weight"] > 0:
                loss = loss + self.hparams["cluster_weight"] * cluster_loss(h[5], centres)
            total = total + loss
        return total

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One epoch: ``samples_per_image`` samples of each task and scale per image, then re-clustering."""
        hp = self.hparams
        device = self.device
        if int(self.epochs_done) == 0 and hp["bn_calibration"] and not hp["pretrained"]:
            self.model.extractor.calibrate_batchnorm(batch_images(b).to(device) for b in train_loader)
        self._banks_stale = True
        optimizer = self._get_optimizer()
        epoch = int(self.epochs_done) + 1
        clustering = epoch > hp["cluster_start"]
        recluster = epoch % hp["cluster_every"] == 0
        collected: list[list[torch.Tensor]] | None = [[], [], []] if recluster else None
        generator = torch.Generator().manual_seed(hp["seed"] * 1_000_003 + epoch)
        self.train()
        total, steps = 0.0, 0
        with local_seed(hp["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                order = torch.randperm(images.shape[0] * hp["samples_per_image"], generator=generator)
                for chunk in (order % images.shape[0]).split(hp["batch_size"]):
                    loss = self._step_loss(images, chunk, generator, clustering, collected)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} (epoch {epoch})")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach())
                    steps += 1
        if collected is not None:
            self._recluster([torch.cat(parts) for parts in collected], generator)
        self.epochs_done += 1
        return {"loss": total / max(steps, 1)}

    def _recluster(self, embeddings: list[torch.Tensor], generator: torch.Generator) -> None:
        for scale, features in enumerate(embeddings):
            previous = self.model.centres(scale)
            k = self.hparams["num_clusters"][scale]
            if previous.shape[0] == k:
                centres, _ = kmeans(features, k, iterations=KMEANS_REFRESH_ITERATIONS, init=previous)
            else:
                centres, _ = kmeans(
                    features, k, iterations=KMEANS_ITERATIONS, restarts=self.hparams["cluster_restarts"],
                    generator=generator,
                )  # fmt: skip
            setattr(self.model, f"centres_{scale}", centres.contiguous())

    # -- memory banks and prediction ------------------------------------------------------------
    def pre_eval(self, train_loader) -> None:
        """Embed every training patch of the test grids (one bank per scale)."""
        if not self._banks_stale and self.model.bank(0).shape[0] > 0:
            return
        self.eval()
        hp = self.hparams
        banks: list[list[torch.Tensor]] = [[], [], []]
        with torch.no_grad():
            for images in iter_images(self.name, train_loader, self.input_size, self.device):
                for scale, stride in enumerate(hp["strides"]):
                    banks[scale].append(self.model.embed_grid(images, scale, stride).reshape(-1, hp["embed_dim"]))
        for scale in range(3):
            features = torch.cat(banks[scale])
            banks[scale] = []
            if hp["coreset_ratio"] < 1:
                keep = approximate_greedy_coreset(features, ratio=hp["coreset_ratio"], seed=hp["seed"])
                features = features[keep.to(features.device)]
            setattr(self.model, f"bank_{scale}", features.contiguous())
        self._banks_stale = False

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        maps = self.model(images, self.hparams["strides"])
        total = maps[0] + maps[1] + maps[2]
        product = maps[0] * maps[1] * maps[2]
        return total.amax(dim=(1, 2)), {"anomaly_map": total, "product_map": product}

    def _resize_buffers_for(self, state: dict[str, torch.Tensor]) -> None:
        super()._resize_buffers_for(state)
        self._banks_stale = state.get("model.bank_0", torch.empty(0)).shape[0] == 0

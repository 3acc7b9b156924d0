"""The registered PatchCore detector: hyperparameters, memory-bank construction, prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.coreset import approximate_greedy_coreset
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import PatchCoreModel

__all__ = ["PatchCore"]


@register_algorithm(INFO)
class PatchCore(AnomalyDetector):
    """PatchCore anomaly detector.

    Parameters
    ----------
    input_size : int
        Side of the square input images (VisionAD protocol: 256).
    backbone : str
        timm model name (``wide_resnet50_2.tv_in1k``: the torchvision weights of the paper).
    layers : sequence of str or int
        Backbone stages whose features are used (paper: layers 2 and 3).
    pretrained : bool
        Load ImageNet weights (hub cache or ``weights_path``); ``False`` only for tests.
    weights_path : str, optional
        Local backbone weights file (``.pth`` or ``.safetensors``).
    bn_calibration : bool
        Random-initialised backbones only (``pretrained=False``): re-estimate the backbone's
        BatchNorm statistics from the training images before building the memory bank (not in
        the paper; default off). Ignored with pretrained weights, whose statistics are kept.
    patch_size : int
        Side of the local neighbourhood aggregated into each patch feature (paper: 3).
    pretrain_embed_dim : int
        Per-layer feature dimension after neighbourhood pooling (paper: 1024).
    target_embed_dim : int
        Final patch-feature dimension (paper: 1024).
    coreset_ratio : float
        Fraction of the training patch features kept in the memory bank (paper: 0.1).
    coreset_projection_dim : int
        Random projection dimension used by the coreset selection (paper: 128).
    num_neighbours : int
        Bank neighbours ``b`` of the image-score reweighting (paper: 9; 1 disables it).
    blur_sigma : float
        Gaussian smoothing of the anomaly map in pixels (paper: 4; 0 disables it).
    seed : int
        Seed of the coreset's random projection and starting points.

    References
    ----------
    K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox, P. Gehler, "Towards Total Recall in
    Industrial Anomaly Detection", CVPR 2022.
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str | int] = ("layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        bn_calibration: bool = False,
        patch_size: int = 3,
        pretrain_embed_dim: int = 1024,
        target_embed_dim: int = 1024,
        coreset_ratio: float = 0.1,
        coreset_projection_dim: int = 128,
        num_neighbours: int = 9,
        blur_sigma: float = 4.0,
        seed: int = 0,
    ) -> None:
        layers = list(layers)
        super().__init__(**hparams_from_locals(locals()))
        if not layers:
            raise ValueError("patchcore: layers must name at least one backbone stage")
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patchcore: patch_size must be a positive odd number, got {patch_size}")
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"patchcore: coreset_ratio must be in (0, 1], got {coreset_ratio}")
        if num_neighbours < 1:
            raise ValueError(f"patchcore: num_neighbours must be at least 1, got {num_neighbours}")
        if blur_sigma < 0:
            raise ValueError(f"patchcore: blur_sigma must be >= 0, got {blur_sigma}")
        if min(pretrain_embed_dim, target_embed_dim, coreset_projection_dim) < 1:
            raise ValueError("patchcore: embedding and projection dimensions must be positive")
        self.model = PatchCoreModel(
            backbone=backbone,
            layers=layers,
            pretrained=pretrained,
            weights_path=weights_path,
            patch_size=patch_size,
            pretrain_embed_dim=pretrain_embed_dim,
            target_embed_dim=target_embed_dim,
            num_neighbours=num_neighbours,
            blur_sigma=blur_sigma,
        )
        self._bank_stale = True

    @property
    def memory_bank(self) -> torch.Tensor:
        """The coreset of normal patch features ``(M, target_embed_dim)``; empty before ``pre_eval``."""
        return self.model.memory_bank

    # -- the contract ---------------------------------------------------------------------
    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One-shot method: nothing to optimise; the bank is (re)built by ``pre_eval``."""
        self._bank_stale = True
        return {}

    def pre_eval(self, train_loader) -> None:
        """Build the coreset memory bank from the training images (once per fit)."""
        if not self._bank_stale and self.memory_bank.shape[0] > 0:
            return
        self.eval()
        if self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
            self.model.extractor.calibrate_batchnorm(batch_images(batch).to(self.device) for batch in train_loader)
        chunks = []
        with torch.no_grad():
            for batch in train_loader:
                images = batch_images(batch).to(self.device)
                chunks.append(self.model.embed(images).reshape(-1, int(self.hparams["target_embed_dim"])))
        if not chunks:
            raise ValueError(f"{self.name}: the training loader yielded no images")
        features = torch.cat(chunks)
        del chunks
        ratio = float(self.hparams["coreset_ratio"])
        if ratio < 1:
            keep = approximate_greedy_coreset(
                features,
                ratio=ratio,
                projection_dim=int(self.hparams["coreset_projection_dim"]),
                seed=int(self.hparams["seed"]),
            )
            features = features[keep.to(features.device)]
        self.model.memory_bank = features.contiguous()
        self._bank_stale = False

    def _predict(self, images: torch.Tensor):
        if self.memory_bank.shape[0] == 0:
            raise RuntimeError(
                f"{self.name}: the memory bank is empty; call pre_eval(train_loader) before predict "
                "(the runner does this)"
            )
        scores, maps = self.model(images)
        return scores, {"anomaly_map": maps}

    def _resize_buffers_for(self, state: dict[str, torch.Tensor]) -> None:
        super()._resize_buffers_for(state)
        self._bank_stale = state.get("model.memory_bank", torch.empty(0)).shape[0] == 0

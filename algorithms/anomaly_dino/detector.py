"""The registered AnomalyDINO detector: hyperparameters, memory bank, prediction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import ROTATION_ANGLES, AnomalyDinoModel, rotate_images

__all__ = ["AnomalyDino"]


@register_algorithm(INFO)
class AnomalyDino(AnomalyDetector):
    """AnomalyDINO anomaly detector (full-shot, training-free).

    Parameters
    ----------
    input_size : int
        Side of the square input images; a multiple of the patch size (official: 448, the
        smaller edge).
    backbone : str
        timm DINOv2 ViT with its tag (official: ViT-S/14, ``vit_small_patch14_dinov2.lvd142m``).
    pretrained : bool
        Load the DINOv2 weights (hub cache or ``weights_path``); ``False`` only for tests.
    weights_path : str, optional
        Local backbone weights file (``.pth`` or ``.safetensors``).
    model_kwargs : dict, optional
        timm arguments for a small random-initialised ViT (``depth``, ``embed_dim``,
        ``num_heads``, ``patch_size``): tests and the CPU demo only.
    num_neighbours : int
        Nearest bank tokens averaged per test patch (paper: 1).
    masking : bool
        Zero-shot foreground masking of test images by the first principal component of their
        tokens (official option; off by default, see the package docstring).
    mask_threshold : float
        Foreground threshold on that component (official: 10).
    rotation : bool
        Add each training image rotated by 45, 90, ..., 315 degrees to the bank (official
        few-shot augmentation; off by default).
    top_fraction : float
        Share of the largest patch distances averaged into the image score (paper: 0.01).
    blur_sigma : float
        Gaussian smoothing of the anomaly map in pixels (official: 4; 0 disables it).
    seed : int
        Seeds the random initialisation of a ``pretrained=False`` backbone.

    Notes
    -----
    One-shot: ``fit_epoch`` only marks the bank stale and ``pre_eval`` builds it from all
    training patch tokens. Image score: the mean of the 1 % largest patch distances; anomaly
    map: the patch distances, bilinear to the input size, Gaussian sigma 4. Memory: at 448 px
    each training image adds 1024 tokens of 384 floats (1.5 MiB; x 8 with ``rotation``).

    References
    ----------
    S. Damm, M. Laszkiewicz, J. Lederer, A. Fischer, "AnomalyDINO: Boosting Patch-based Few-shot
    Anomaly Detection with DINOv2", WACV 2025.
    """

    def __init__(
        self,
        *,
        input_size: int = 448,
        backbone: str = "vit_small_patch14_dinov2.lvd142m",
        pretrained: bool = True,
        weights_path: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        num_neighbours: int = 1,
        masking: bool = False,
        mask_threshold: float = 10.0,
        rotation: bool = False,
        top_fraction: float = 0.01,
        blur_sigma: float = 4.0,
        seed: int = 0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        if model_kwargs is not None:
            self.hparams["model_kwargs"] = dict(model_kwargs)
        if num_neighbours < 1:
            raise ValueError(f"anomaly_dino: num_neighbours must be at least 1, got {num_neighbours}")
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"anomaly_dino: top_fraction must be in (0, 1], got {top_fraction}")
        if blur_sigma < 0:
            raise ValueError(f"anomaly_dino: blur_sigma must be >= 0, got {blur_sigma}")
        with local_seed(seed):
            self.model = AnomalyDinoModel(
                backbone=backbone,
                input_size=input_size,
                pretrained=pretrained,
                weights_path=weights_path,
                model_kwargs=model_kwargs,
                num_neighbours=num_neighbours,
                masking=masking,
                mask_threshold=mask_threshold,
                top_fraction=top_fraction,
                blur_sigma=blur_sigma,
            )
        self._bank_stale = True

    @property
    def memory_bank(self) -> torch.Tensor:
        """The L2-normalised reference patch tokens ``(M, C)``; empty before ``pre_eval``."""
        return self.model.memory_bank

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """Training-free: nothing to optimise; the bank is (re)built by ``pre_eval``."""
        self._bank_stale = True
        return {}

    def pre_eval(self, train_loader) -> None:
        """Build the memory bank from every patch token of the training images (once per fit)."""
        if not self._bank_stale and self.memory_bank.shape[0] > 0:
            return
        self.eval()
        angles = ROTATION_ANGLES if self.hparams["rotation"] else (0,)
        chunks = []
        with torch.no_grad():
            for batch in train_loader:
                images = check_images(self.name, batch_images(batch), self.input_size).to(self.device)
                for angle in angles:
                    view = rotate_images(images, angle) if angle else images
                    chunks.append(self.model.embed(view).reshape(-1, self.model.extractor.embed_dim))
        if not chunks:
            raise ValueError(f"{self.name}: the training loader yielded no images")
        self.model.memory_bank = torch.cat(chunks).contiguous()
        self._bank_stale = False

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
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

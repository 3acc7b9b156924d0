"""The registered MemSeg detector: hyperparameters, memory sampling, training steps, prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..base import AnomalyDetector, hparams_from_locals
from ..components.losses import binary_focal_loss
from ..components.scores import topk_mean
from ..components.texture import TextureSource
from ..components.training import check_images, iter_images, local_seed
from ..data.loaders import IMAGENET_MEAN, IMAGENET_STD
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import MemSegModel, synthesize_anomalies, warmup_cosine_lr

__all__ = ["MemSeg", "memseg_loss"]


def memseg_loss(
    logits: torch.Tensor, masks: torch.Tensor, *, l1_weight: float = 0.6, focal_weight: float = 0.4, gamma: float = 4.0
) -> torch.Tensor:
    """``l1_weight * mean|softmax(logits)_1 - mask| + focal_weight * focal_gamma`` (MemSeg section 3.5).

    ``logits`` ``(B, 2, H, W)`` (normal, anomalous), ``masks`` ``(B, 1, H, W)`` or ``(B, H, W)``
    of 0/1. The two-class softmax focal loss equals the binary focal loss of the logit difference
    ``l_1 - l_0`` (``sigmoid(l_1 - l_0) = softmax_1``). Returns a 0-d tensor.
    """
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"memseg_loss: logits must be (B, 2, H, W), got {tuple(logits.shape)}")
    masks = masks.reshape(logits.shape[0], *logits.shape[2:]).to(logits.dtype)
    difference = logits[:, 1] - logits[:, 0]
    l1 = (torch.sigmoid(difference) - masks).abs().mean()
    return l1_weight * l1 + focal_weight * binary_focal_loss(difference, masks, gamma=gamma)


@register_algorithm(INFO)
class MemSeg(AnomalyDetector):
    """MemSeg (Yang et al., 2022) with the defaults of the reference code VisionAD used.

    Parameters
    ----------
    input_size : int
        Square input side in pixels, a multiple of 32 (publication: 256).
    seed : int
        Seeds initialisation, the memory sampling and the synthetic anomalies.
    backbone : str
        timm ResNet-style model with a ``layer4`` stage (``resnet18.tv_in1k``).
    pretrained, weights_path
        ImageNet weights from the hub cache or a local file; ``pretrained=False`` for tests/demo.
    bn_calibration : bool
        Random-initialised backbones only: re-estimate the backbone's BatchNorm statistics from
        the training images first (not in the paper; the CPU demo uses it).
    texture_dir : str, optional
        Folder of texture images (DTD's ``images/``). ``None``: the "structure" source only.
    memory_samples : int
        Normal training images in the memory (publication: 30).
    perlin_threshold : float
        Perlin binarisation threshold (0.5).
    transparency : (float, float)
        Range of the blend factor (0.15, 1).
    l1_weight, focal_weight, focal_gamma : float
        Loss weights and focusing (0.6, 0.4, 4).
    lr, min_lr, weight_decay : float
        AdamW peak lr 3e-3, floor 1e-4, weight decay 5e-4.
    steps, warmup_steps : int
        Optimiser steps (5000) and linear warm-up steps (500); later epochs do nothing.
    top_k : int
        Pixels averaged for the image score (100).

    Raises
    ------
    ValueError
        On an invalid hyperparameter; ``FileNotFoundError`` if ``texture_dir`` does not exist.
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        backbone: str = "resnet18.tv_in1k",
        pretrained: bool = True,
        weights_path: str | None = None,
        bn_calibration: bool = False,
        texture_dir: str | None = None,
        memory_samples: int = 30,
        perlin_threshold: float = 0.5,
        transparency: tuple[float, float] = (0.15, 1.0),
        l1_weight: float = 0.6,
        focal_weight: float = 0.4,
        focal_gamma: float = 4.0,
        lr: float = 3e-3,
        min_lr: float = 1e-4,
        weight_decay: float = 5e-4,
        steps: int = 5000,
        warmup_steps: int = 500,
        top_k: int = 100,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["transparency"] = list(transparency)
        if input_size < 32 or input_size % 32:
            raise ValueError(f"memseg: input_size must be a positive multiple of 32, got {input_size}")
        if memory_samples < 1 or steps < 1 or not 0 <= warmup_steps < steps or top_k < 1:
            raise ValueError(f"memseg: need memory_samples >= 1, steps >= 1, 0 <= warmup_steps < steps and top_k >= 1, "
                             f"got {memory_samples}, {steps}, {warmup_steps}, {top_k}")  # fmt: skip
        if top_k > input_size * input_size:
            raise ValueError(f"memseg: top_k {top_k} exceeds the {input_size}x{input_size} map")
        low, high = transparency
        if not 0 <= low <= high <= 1 or not -1 <= perlin_threshold < 1:
            raise ValueError(f"memseg: transparency must satisfy 0 <= low <= high <= 1 and perlin_threshold lie in "
                             f"[-1, 1), got {list(transparency)}, {perlin_threshold}")  # fmt: skip
        if min(lr, min_lr) <= 0 or min_lr > lr or weight_decay < 0 or min(l1_weight, focal_weight, focal_gamma) < 0:
            raise ValueError("memseg: need 0 < min_lr <= lr, weight_decay >= 0 and non-negative loss weights/gamma")
        self.textures = TextureSource(texture_dir) if texture_dir else None
        self.structure = TextureSource(None, fallback="structure")
        with local_seed(seed):
            self.model = MemSegModel(backbone=backbone, pretrained=pretrained, weights_path=weights_path)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.AdamW | None = None

    def _get_optimizer(self) -> torch.optim.AdamW:
        if self._optimizer is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            h = self.hparams
            self._optimizer = torch.optim.AdamW(params, lr=h["lr"], weight_decay=h["weight_decay"])
        return self._optimizer

    def learning_rate(self, step: int) -> float:
        """The warm-up + cosine learning rate at 0-based ``step``."""
        h = self.hparams
        return warmup_cosine_lr(step, base=h["lr"], minimum=h["min_lr"], total=h["steps"], warmup=h["warmup_steps"])

    def _normalise(self, images01: torch.Tensor) -> torch.Tensor:
        mean = images01.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        return (images01 - mean) / images01.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def _to_unit(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        return (images * images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1) + mean).clamp(0, 1)

    def fill_memory(self, train_loader, generator: torch.Generator) -> None:
        """Store the layer1-3 features of ``memory_samples`` uniformly drawn training images."""
        keep: list[tuple[float, torch.Tensor]] = []
        n = self.hparams["memory_samples"]
        for images in iter_images(self.name, train_loader, self.input_size, self.device):
            keys = torch.rand(images.shape[0], generator=generator).tolist()
            keep = sorted([*keep, *zip(keys, images.unbind(0), strict=True)], key=lambda kv: kv[0])[:n]
        if not keep:
            raise ValueError(f"{self.name}: the training loader yielded no images")
        samples = torch.stack([image for _, image in keep])
        self.model.memory.fill(self.model.frozen_features(samples))

    def training_loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The loss of one batch of normal (normalised) images with freshly synthesised anomalies."""
        h = self.hparams
        synthetic, masks = synthesize_anomalies(
            self._to_unit(images),
            generator,
            textures=self.textures,
            structure=self.structure,
            threshold=h["perlin_threshold"],
            transparency=tuple(h["transparency"]),
        )
        logits = self.model(self._normalise(synthetic))
        return memseg_loss(
            logits, masks, l1_weight=h["l1_weight"], focal_weight=h["focal_weight"], gamma=h["focal_gamma"]
        )

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass: an AdamW step per batch until ``steps`` are done (memory filled first)."""
        device = self.device
        epoch = int(self.epochs_done)
        seed = self.hparams["seed"] * 1_000_003 + epoch
        generator = torch.Generator().manual_seed(seed)
        if epoch == 0:
            if self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
                self.model.extractor.calibrate_batchnorm(batch_images(b).to(device) for b in train_loader)
            self.fill_memory(train_loader, generator)
        optimizer = self._get_optimizer()
        self.train()
        total, batches = 0.0, 0
        with local_seed(seed, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                step = int(self.steps_done)
                if step >= self.hparams["steps"]:
                    break
                loss = self.training_loss(images, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} (step {step + 1})")
                for group in optimizer.param_groups:
                    group["lr"] = self.learning_rate(step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.steps_done += 1
                total += float(loss.detach())
                batches += 1
        self.epochs_done += 1
        return {"loss": total / batches} if batches else {"steps_done": float(self.steps_done)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        probability = F.softmax(self.model(images), dim=1)[:, 1]
        return topk_mean(probability, k=self.hparams["top_k"]), {"anomaly_map": probability}

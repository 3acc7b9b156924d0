"""The registered Dinomaly detector: training loop (StableAdamW, warm-cosine lr, hard mining), prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..base import AnomalyDetector, hparams_from_locals
from ..components.optim import StableAdamW
from ..components.scores import topk_mean
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from . import INFO
from .model import DinomalyModel, anomaly_map, box_gaussian_blur, hard_mining_cosine_loss, warm_cosine_lr

__all__ = ["Dinomaly"]

_FUSE = ((0, 1, 2, 3), (4, 5, 6, 7))


@register_algorithm(INFO)
class Dinomaly(AnomalyDetector):
    """Dinomaly (Guo et al., CVPR 2025), class-separated, with the official script's defaults.

    Parameters
    ----------
    input_size : int
        Square input side, a multiple of 14 (official: 392, after a 448 resize and centre crop;
        here the whole image is resized to it).
    seed : int
        Seeds the initialisation, the bottleneck dropout and training.
    backbone : str
        timm DINOv2 encoder with its tag (official: ``vit_base_patch14_reg4_dinov2.lvd142m``).
    pretrained, weights_path
        Encoder weights from the hub cache or a local file; ``pretrained=False`` only for tests.
    model_kwargs : dict, optional
        timm arguments of a small random-initialised encoder (tests, CPU demo).
    target_layers : sequence of int
        Encoder blocks tapped (official ViT-B: 2-9).
    fuse_layer_encoder, fuse_layer_decoder : sequence of sequence of int
        Reconstruction groups (official: [[0, 1, 2, 3], [4, 5, 6, 7]] both).
    decoder_depth : int
        Linear-attention decoder blocks (official: 8).
    num_heads : int, optional
        Decoder heads (default: the encoder's, 12 for ViT-B).
    dropout : float
        Bottleneck dropout (official: 0.2).
    lr, final_lr, warmup_iters, total_iters : float, float, int, int
        Warm-cosine schedule: 0 -> ``lr`` over ``warmup_iters``, cosine to ``final_lr`` at
        ``total_iters`` (official: 2e-3, 2e-4, 100, 5000). Training stops after ``total_iters``
        optimiser steps (later epochs do nothing).
    betas, weight_decay, eps, amsgrad
        StableAdamW settings (official: (0.9, 0.999), 1e-4, 1e-8, True).
    grad_clip : float
        Gradient-norm clipping of the trainable parameters (official: 0.1).
    hard_mining_p, hard_mining_ramp, hard_mining_factor : float, int, float
        The share of easy points whose gradient is scaled by ``hard_mining_factor``, reached
        linearly over ``hard_mining_ramp`` iterations (official: 0.9, 1000, 0.1).
    top_fraction : float
        Share of the largest map values averaged into the image score (official: 0.01).
    map_size : int, optional
        Side of the returned map, resized bilinearly before the blur (official: 256, the
        evaluation size); ``None`` keeps the input size.
    blur_kernel, blur_sigma : int, float
        The official 5 x 5 Gaussian with sigma 4 (zero padding).
    """

    def __init__(
        self,
        *,
        input_size: int = 392,
        seed: int = 0,
        backbone: str = "vit_base_patch14_reg4_dinov2.lvd142m",
        pretrained: bool = True,
        weights_path: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        target_layers: Sequence[int] = (2, 3, 4, 5, 6, 7, 8, 9),
        fuse_layer_encoder: Sequence[Sequence[int]] = _FUSE,
        fuse_layer_decoder: Sequence[Sequence[int]] = _FUSE,
        decoder_depth: int = 8,
        num_heads: int | None = None,
        dropout: float = 0.2,
        lr: float = 2e-3,
        final_lr: float = 2e-4,
        warmup_iters: int = 100,
        total_iters: int = 5000,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 1e-4,
        eps: float = 1e-8,
        amsgrad: bool = True,
        grad_clip: float = 0.1,
        hard_mining_p: float = 0.9,
        hard_mining_ramp: int = 1000,
        hard_mining_factor: float = 0.1,
        top_fraction: float = 0.01,
        map_size: int | None = 256,
        blur_kernel: int = 5,
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams.update(
            model_kwargs=None if model_kwargs is None else dict(model_kwargs),
            target_layers=list(target_layers),
            fuse_layer_encoder=[list(g) for g in fuse_layer_encoder],
            fuse_layer_decoder=[list(g) for g in fuse_layer_decoder],
            betas=list(betas),
        )
        if not (lr > 0 and final_lr >= 0 and 0 <= warmup_iters < total_iters and len(betas) == 2):
            raise ValueError(
                f"dinomaly: need lr > 0, final_lr >= 0, 0 <= warmup_iters < total_iters and two betas, got "
                f"{lr}, {final_lr}, {warmup_iters}, {total_iters}, {list(betas)}"
            )
        if not (0 <= dropout < 1 and 0 <= hard_mining_p <= 1 and hard_mining_ramp >= 1 and 0 < top_fraction <= 1):
            raise ValueError(
                f"dinomaly: need 0 <= dropout < 1, 0 <= hard_mining_p <= 1, hard_mining_ramp >= 1 and "
                f"0 < top_fraction <= 1, got {dropout}, {hard_mining_p}, {hard_mining_ramp}, {top_fraction}"
            )
        if grad_clip <= 0 or (map_size is not None and map_size < 1):
            raise ValueError(f"dinomaly: need grad_clip > 0 and map_size >= 1 (or None), got {grad_clip}, {map_size}")
        with local_seed(seed):
            self.model = DinomalyModel(
                backbone=backbone,
                input_size=input_size,
                pretrained=pretrained,
                weights_path=weights_path,
                model_kwargs=model_kwargs,
                target_layers=target_layers,
                fuse_layer_encoder=fuse_layer_encoder,
                fuse_layer_decoder=fuse_layer_decoder,
                decoder_depth=decoder_depth,
                num_heads=num_heads,
                dropout=dropout,
            )
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: StableAdamW | None = None

    def _get_optimizer(self) -> StableAdamW:
        if self._optimizer is None:
            h = self.hparams
            self._optimizer = StableAdamW(
                self.model.trainable_parameters(),
                lr=h["lr"],
                betas=tuple(h["betas"]),
                eps=h["eps"],
                weight_decay=h["weight_decay"],
                amsgrad=h["amsgrad"],
            )
        return self._optimizer

    def hard_mining_share(self, step: int) -> float:
        """``p`` at 0-based iteration ``step``: ``min(p_final * step / ramp, p_final)`` (official)."""
        h = self.hparams
        return min(h["hard_mining_p"] * step / h["hard_mining_ramp"], h["hard_mining_p"])

    def learning_rate(self, step: int) -> float:
        """The warm-cosine learning rate at 0-based iteration ``step``."""
        h = self.hparams
        return warm_cosine_lr(step, base=h["lr"], final=h["final_lr"], total=h["total_iters"], warmup=h["warmup_iters"])

    def training_loss(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """The hard-mining loss of one batch at iteration ``step`` (model in training mode)."""
        encoder, decoder = self.model(images)
        return hard_mining_cosine_loss(
            encoder, decoder, p=self.hard_mining_share(step), factor=self.hparams["hard_mining_factor"]
        )

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass: a StableAdamW step per batch until ``total_iters`` steps are done."""
        self.train()
        optimizer = self._get_optimizer()
        params = self.model.trainable_parameters()
        device = self.device
        total, batches = 0.0, 0
        epoch = int(self.epochs_done)
        with local_seed(self.hparams["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                step = int(self.steps_done)
                if step >= self.hparams["total_iters"]:
                    break
                loss = self.training_loss(images, step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} (step {step + 1})")
                for group in optimizer.param_groups:
                    group["lr"] = self.learning_rate(step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, max_norm=self.hparams["grad_clip"])
                optimizer.step()
                self.steps_done += 1
                total += float(loss.detach())
                batches += 1
        self.epochs_done += 1
        return {"loss": total / batches} if batches else {"steps_done": float(self.steps_done)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        encoder, decoder = self.model(images)
        maps = anomaly_map(encoder, decoder, self.input_size)
        size = self.hparams["map_size"]
        if size is not None and size != self.input_size:
            maps = F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        maps = box_gaussian_blur(maps, kernel_size=self.hparams["blur_kernel"], sigma=self.hparams["blur_sigma"])
        scores = topk_mean(maps, ratio=self.hparams["top_fraction"])  # official: the top 1 % of the 256 x 256 map
        return scores, {"anomaly_map": maps}

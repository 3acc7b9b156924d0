"""The registered INP-Former detector: training loop (StableAdamW, warm-cosine lr, soft mining), prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..base import AnomalyDetector, hparams_from_locals
from ..components.optim import StableAdamW
from ..components.scores import topk_mean
from ..components.training import check_images, iter_images, local_seed
from ..components.vit_reconstruction import box_gaussian_blur, cosine_anomaly_map, warm_cosine_lr
from ..registry import register_algorithm
from . import INFO
from .model import InpFormerModel, soft_mining_cosine_loss

__all__ = ["InpFormer"]

_FUSE = ((0, 1, 2, 3), (4, 5, 6, 7))


@register_algorithm(INFO)
class InpFormer(AnomalyDetector):
    """INP-Former (Luo et al., CVPR 2025), single-class, with the official ``INP_Former_Single_Class.py`` defaults.

    Parameters
    ----------
    input_size : int
        Square input side, a multiple of the patch size (official: 392, after a 448 resize and a
        centre crop; here the whole image is resized to it).
    seed : int
        Seeds the initialisation (INP queries included) and training.
    backbone : str
        timm DINOv2 encoder with its tag (official: ``dinov2reg_vit_base_14`` =
        ``vit_base_patch14_reg4_dinov2.lvd142m``).
    pretrained, weights_path
        Encoder weights from the hub cache or a local file; ``pretrained=False`` only for tests.
    model_kwargs : dict, optional
        timm arguments of a small random-initialised encoder (tests, CPU demo).
    target_layers : sequence of int
        Encoder blocks tapped (official ViT-B: 2-9).
    fuse_layer_encoder, fuse_layer_decoder : sequence of sequence of int
        Reconstruction groups (official: [[0, 1, 2, 3], [4, 5, 6, 7]] both).
    decoder_depth, extractor_depth, inp_num : int
        INP-guided decoder blocks (8), INP Extractor blocks (1) and INPs per image (6), official.
    num_heads : int, optional
        Heads of the extractor and the decoder (default: the encoder's, 12 for ViT-B).
    dropout : float
        Bottleneck dropout (official INP-Former: 0; Dinomaly's noisy bottleneck uses 0.2).
    epochs : int
        Length of the cosine schedule in epochs (official: 200): it spans ``epochs`` times the
        number of batches of the first training loader, unless ``total_iters`` is given.
    total_iters : int, optional
        Length of the cosine schedule in optimiser steps (overrides ``epochs``); a run scheduled
        in iterations rather than epochs should pass the same number here.
    lr, final_lr, warmup_iters : float, float, int
        Warm-cosine schedule: 0 -> ``lr`` over ``warmup_iters``, cosine to ``final_lr`` at the end
        (official: 1e-3, 1e-4, 100). Steps past the end keep ``final_lr``.
    betas, weight_decay, eps, amsgrad
        StableAdamW settings (official: (0.9, 0.999), 1e-4, 1e-10, True).
    grad_clip : float
        Gradient-norm clipping of the trainable parameters (official: 0.1).
    soft_mining_power, coherence_weight : float
        Exponent of the soft-mining gradient weights (official ``y=3``) and the weight of the INP
        coherence loss in the total (official: 0.2).
    top_fraction : float
        Share of the largest map values averaged into the image score (official ``max_ratio=0.01``).
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
        extractor_depth: int = 1,
        inp_num: int = 6,
        num_heads: int | None = None,
        dropout: float = 0.0,
        epochs: int = 200,
        total_iters: int | None = None,
        lr: float = 1e-3,
        final_lr: float = 1e-4,
        warmup_iters: int = 100,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 1e-4,
        eps: float = 1e-10,
        amsgrad: bool = True,
        grad_clip: float = 0.1,
        soft_mining_power: float = 3.0,
        coherence_weight: float = 0.2,
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
        if not (lr > 0 and final_lr >= 0 and warmup_iters >= 0 and epochs >= 1 and len(betas) == 2):
            raise ValueError(
                f"inp_former: need lr > 0, final_lr >= 0, warmup_iters >= 0, epochs >= 1 and two betas, got "
                f"{lr}, {final_lr}, {warmup_iters}, {epochs}, {list(betas)}"
            )
        if total_iters is not None and not warmup_iters < total_iters:
            raise ValueError(f"inp_former: need warmup_iters < total_iters, got {warmup_iters} and {total_iters}")
        if not (0 <= dropout < 1 and soft_mining_power >= 0 and coherence_weight >= 0 and 0 < top_fraction <= 1):
            raise ValueError(
                f"inp_former: need 0 <= dropout < 1, soft_mining_power >= 0, coherence_weight >= 0 and "
                f"0 < top_fraction <= 1, got {dropout}, {soft_mining_power}, {coherence_weight}, {top_fraction}"
            )
        if grad_clip <= 0 or (map_size is not None and map_size < 1):
            raise ValueError(f"inp_former: need grad_clip > 0 and map_size >= 1 (or None), got {grad_clip}, {map_size}")
        with local_seed(seed):
            self.model = InpFormerModel(
                backbone=backbone,
                input_size=input_size,
                pretrained=pretrained,
                weights_path=weights_path,
                model_kwargs=model_kwargs,
                target_layers=target_layers,
                fuse_layer_encoder=fuse_layer_encoder,
                fuse_layer_decoder=fuse_layer_decoder,
                decoder_depth=decoder_depth,
                inp_num=inp_num,
                extractor_depth=extractor_depth,
                num_heads=num_heads,
                dropout=dropout,
            )
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        # the schedule's length in steps, fixed at the first epoch (0: not yet known)
        self.register_buffer("schedule_steps", torch.zeros((), dtype=torch.long))
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

    def _fix_schedule(self, train_loader) -> int:
        """The schedule's length in steps: ``total_iters``, else ``epochs x len(train_loader)`` (official)."""
        if int(self.schedule_steps) == 0:
            h = self.hparams
            if h["total_iters"] is not None:
                total = int(h["total_iters"])
            else:
                try:
                    total = int(h["epochs"]) * len(train_loader)
                except TypeError:
                    raise ValueError(
                        "inp_former: the training loader has no length; give total_iters for the lr schedule"
                    ) from None
                if total <= h["warmup_iters"]:
                    raise ValueError(
                        f"inp_former: the schedule ({h['epochs']} epochs x {len(train_loader)} batches = {total} "
                        f"steps) must be longer than warmup_iters ({h['warmup_iters']})"
                    )
            self.schedule_steps.fill_(total)
        return int(self.schedule_steps)

    def learning_rate(self, step: int) -> float:
        """The warm-cosine learning rate at 0-based iteration ``step`` (the schedule must be fixed)."""
        h = self.hparams
        total = int(self.schedule_steps) or int(h["total_iters"] or 0)
        if total <= 0:
            raise RuntimeError("inp_former: the schedule's length is fixed at the first fit_epoch")
        return warm_cosine_lr(step, base=h["lr"], final=h["final_lr"], total=total, warmup=h["warmup_iters"])

    def training_loss(self, images: torch.Tensor) -> torch.Tensor:
        """``L_sm + coherence_weight * L_c`` of one batch (model in training mode)."""
        encoder, decoder, coherence = self.model(images)
        h = self.hparams
        return (
            soft_mining_cosine_loss(encoder, decoder, power=h["soft_mining_power"]) + h["coherence_weight"] * coherence
        )

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass: a StableAdamW step per batch."""
        self.train()
        self._fix_schedule(train_loader)
        optimizer = self._get_optimizer()
        params = self.model.trainable_parameters()
        device = self.device
        total, batches = 0.0, 0
        epoch = int(self.epochs_done)
        with local_seed(self.hparams["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                step = int(self.steps_done)
                loss = self.training_loss(images)
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
        encoder, decoder, _ = self.model(images)
        maps = cosine_anomaly_map(encoder, decoder, self.input_size)
        size = self.hparams["map_size"]
        if size is not None and size != self.input_size:
            maps = F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        maps = box_gaussian_blur(maps, kernel_size=self.hparams["blur_kernel"], sigma=self.hparams["blur_sigma"])
        scores = topk_mean(maps, ratio=self.hparams["top_fraction"])  # official: the top 1 % of the 256 x 256 map
        return scores, {"anomaly_map": maps}

"""The registered AST detector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import AstModel, distillation_loss, teacher_nll

__all__ = ["Ast"]


@register_algorithm(INFO)
class Ast(AnomalyDetector):
    """AST (Rudolph et al., WACV 2023) with the publication's defaults.

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 768, giving a 24 x 24 feature map).
    seed : int
        Seeds initialisation (permutations, networks) and training.
    backbone : str
        timm EfficientNet with its pretrained tag (publication: ``tf_efficientnet_b5.aa_in1k``).
    stage : int
        0-based index of the last stage of blocks run; its last block's output is the feature
        (publication: 5, i.e. block 35 of B5, 304 channels at stride 32).
    pretrained : bool
        ImageNet weights for the backbone (``False`` only for tests and the demo).
    weights_path : str, optional
        Local backbone weights file.
    bn_calibration : bool
        With ``pretrained=False``: re-estimate the random backbone's BatchNorm statistics from the
        training images before the first epoch (not in the paper; for random-feature runs).
    cond_channels : int
        Positional-encoding channels (publication: 32), a multiple of 4.
    teacher_hidden : int
        Hidden channels of the teacher's subnets (publication: 64).
    kernel_sizes : sequence of int
        One per teacher coupling (publication: 3, 3, 3, 5).
    clamp : float
        Soft clamp of the couplings' log-scales (publication: 1.9).
    student_hidden : int
        Student width (publication: 1024).
    student_blocks : int
        Student residual blocks (publication: 4).
    lr : float
        Adam learning rate of both phases (publication: 2e-4).
    weight_decay : float
        Adam weight decay of both phases (publication: 1e-5).
    teacher_epochs : int
        Epochs of the teacher phase; every later epoch trains the student (publication: 72 of 144).

    Notes
    -----
    Epochs ``0 ... teacher_epochs - 1`` minimise the teacher's negative log-likelihood
    (:func:`~.model.teacher_nll`); the following epochs freeze the teacher and minimise the
    student's squared distance to its latent (:func:`~.model.distillation_loss`). Inference: the
    distance map ``mean_c (z_t - s)^2`` at feature resolution; the image score is its mean over
    positions, and the returned map is its bicubic upsampling (``align_corners=False``, as the
    official evaluation) to the input size.
    """

    def __init__(
        self,
        *,
        input_size: int = 768,
        seed: int = 0,
        backbone: str = "tf_efficientnet_b5.aa_in1k",
        stage: int = 5,
        pretrained: bool = True,
        weights_path: str | None = None,
        bn_calibration: bool = False,
        cond_channels: int = 32,
        teacher_hidden: int = 64,
        kernel_sizes: Sequence[int] = (3, 3, 3, 5),
        clamp: float = 1.9,
        student_hidden: int = 1024,
        student_blocks: int = 4,
        lr: float = 2e-4,
        weight_decay: float = 1e-5,
        teacher_epochs: int = 72,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["kernel_sizes"] = [int(k) for k in kernel_sizes]
        if input_size < 32:
            raise ValueError(f"ast: input_size must be at least 32, got {input_size}")
        if not kernel_sizes or any(int(k) < 1 or int(k) % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"ast: kernel_sizes must be positive odd numbers, one per coupling, got {kernel_sizes}")
        if min(teacher_hidden, student_hidden) < 1 or student_blocks < 0 or clamp <= 0:
            raise ValueError("ast: teacher_hidden, student_hidden and clamp must be positive, student_blocks >= 0")
        if lr <= 0 or weight_decay < 0 or teacher_epochs < 1:
            raise ValueError(
                f"ast: need lr > 0, weight_decay >= 0 and teacher_epochs >= 1, got {lr}, {weight_decay}, "
                f"{teacher_epochs}"
            )
        with local_seed(seed):
            generator = torch.Generator().manual_seed(seed)
            self.model = AstModel(
                backbone=backbone,
                stage=stage,
                pretrained=pretrained,
                weights_path=weights_path,
                cond_channels=cond_channels,
                teacher_hidden=teacher_hidden,
                kernel_sizes=[int(k) for k in kernel_sizes],
                clamp=clamp,
                student_hidden=student_hidden,
                student_blocks=student_blocks,
                generator=generator,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    def _optimizer(self, phase: str) -> torch.optim.Optimizer:
        if phase not in self._optimizers:
            net = self.model.teacher if phase == "teacher" else self.model.student
            self._optimizers[phase] = torch.optim.Adam(
                net.parameters(), lr=self.hparams["lr"], eps=1e-8, weight_decay=self.hparams["weight_decay"]
            )
        return self._optimizers[phase]

    @property
    def phase(self) -> str:
        """``"teacher"`` or ``"student"``: what the next epoch trains."""
        return "teacher" if int(self.epochs_done) < self.hparams["teacher_epochs"] else "student"

    def phase_loss(self, phase: str, images: torch.Tensor) -> torch.Tensor:
        """The loss of ``phase`` on a batch of images (the teacher's NLL, or the student's distance)."""
        features = self.model.features(images)
        cond = self.model.condition(features)
        if phase == "teacher":
            z, log_det = self.model.teacher(features, cond)
            return teacher_nll(z, log_det)
        with torch.no_grad():
            target, _ = self.model.teacher(features, cond)
        return distillation_loss(target, self.model.student(features, cond))

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One epoch of the current phase: the teacher for ``teacher_epochs`` epochs, then the student."""
        device = self.device
        epoch = int(self.epochs_done)
        h = self.hparams
        if epoch == 0 and h["bn_calibration"] and not h["pretrained"]:
            self.model.extractor.calibrate_batchnorm(batch_images(batch).to(device) for batch in train_loader)
        phase = self.phase
        optimizer = self._optimizer(phase)
        self.train()
        if phase == "student":
            self.model.teacher.eval()
        total, batches = 0.0, 0
        with local_seed(h["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                loss = self.phase_loss(phase, images)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.name}: the {phase} loss became {loss.item()} (epoch {epoch + 1}); try a lower lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
        self.epochs_done += 1
        return {f"{phase}_loss": total / max(batches, 1)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        distance = self.model(images)  # (B, h, w)
        scores = distance.mean(dim=(1, 2))
        size = (self.input_size, self.input_size)
        maps = F.interpolate(distance.unsqueeze(1), size=size, mode="bicubic", align_corners=False)[:, 0]
        return scores, {"anomaly_map": maps}

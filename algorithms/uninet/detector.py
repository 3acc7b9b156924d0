"""The registered UniNet detector: hyperparameters, the training epoch, prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import UniNetModel, pair_maps, uninet_loss, weighted_decision_score

__all__ = ["UniNet"]


@register_algorithm(INFO)
class UniNet(AnomalyDetector):
    """UniNet (Wei et al., CVPR 2025) with the official defaults (``pangdatangtt/UniNet`` ``7b3469f``).

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 256); a multiple of 32.
    seed : int
        Seeds initialisation (teachers if random, bottleneck, student) and training.
    backbone : str
        timm CNN of both teachers (publication: torchvision's V1 ``wide_resnet50_2``, i.e.
        ``wide_resnet50_2.tv_in1k``; ``resnet18`` for quick runs).
    layers : sequence of str
        The three teacher levels (publication: layers 1-3).
    pretrained : bool
        ImageNet weights for the teachers (``False`` only for tests and the demo).
    weights_path : str, optional
        Local teacher weights file, used instead of the hub.
    bn_calibration : bool
        Random-initialised teachers only: re-estimate the source teacher's BatchNorm statistics
        from the training images before the first epoch and copy it into the target teacher (not
        in the paper; the CPU demo uses it).
    block : {"auto", "basic", "bottleneck"}
        The student decoder's residual block (``"auto"``: RD4AD's ``de_wide_resnet50_2`` bottleneck
        blocks for ResNet-50-like teachers, basic blocks otherwise).
    bottleneck_blocks : int
        Split-branch blocks of the one-class embedding (publication: 3).
    decoder_blocks : sequence of 3 int, optional
        Student blocks per stage, deepest first (default ``(3, 4, 6)`` / ``(2, 2, 2)``).
    temperature : float
        Contrastive temperature T (official default 2; the official code hard-codes 0.1 for
        transistor, pill, cable, bottle, grid and foam, a per-class choice we do not make).
    lambda_weight : float
        Weight of the cosine term against the InfoNCE term (publication: 0.7).
    margin : float
        Margin of the hinge on the positive's probability (publication: 1).
    feature_selection : bool
        Domain-related feature selection in training (publication: on; the official code turns it
        off for transistor).
    lr, teacher_lr : float
        AdamW learning rates of bottleneck + student + DFS (5e-3) and of the target teacher (1e-6;
        the official code uses 1e-4 for transistor).
    weight_decay : float
        AdamW weight decay of both groups (publication: 1e-5).
    betas : sequence of 2 float
        AdamW betas (publication: (0.9, 0.999)).
    alpha, beta : float
        Upper- and lower-limit factors of the weighted decision mechanism (publication: 0.01, 3e-5).
    sigma : float
        Gaussian smoothing of the map before the image score's top-k mean (publication: 4). The
        anomaly map itself is not smoothed (official).

    Notes
    -----
    An epoch: per batch, both teachers describe the images (source frozen, target in train mode),
    the bottleneck and student decode the ``2B`` batch, DFS re-weights the student maps and the
    sum of the six pair losses (``uninet_loss``) is minimised by AdamW, with two parameter groups
    (the official code's two AdamW optimisers, identical per parameter). Prediction: all modules
    in eval mode, no DFS; map and score as in ``model.py``.
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
        bn_calibration: bool = False,
        block: str = "auto",
        bottleneck_blocks: int = 3,
        decoder_blocks: Sequence[int] | None = None,
        temperature: float = 2.0,
        lambda_weight: float = 0.7,
        margin: float = 1.0,
        feature_selection: bool = True,
        lr: float = 5e-3,
        teacher_lr: float = 1e-6,
        weight_decay: float = 1e-5,
        betas: Sequence[float] = (0.9, 0.999),
        alpha: float = 0.01,
        beta: float = 3e-5,
        sigma: float = 4.0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        self.hparams["betas"] = list(betas)
        if decoder_blocks is not None:
            self.hparams["decoder_blocks"] = list(decoder_blocks)
        if input_size < 32 or input_size % 32:
            raise ValueError(f"uninet: input_size must be a positive multiple of 32, got {input_size}")
        if temperature <= 0 or not 0 <= lambda_weight <= 1 or margin < 0:
            raise ValueError(f"uninet: need temperature > 0, 0 <= lambda_weight <= 1 and margin >= 0, got "
                             f"{temperature}, {lambda_weight}, {margin}")  # fmt: skip
        if lr <= 0 or teacher_lr < 0 or weight_decay < 0 or len(betas) != 2:
            raise ValueError(f"uninet: need lr > 0, teacher_lr >= 0, weight_decay >= 0 and two betas, got "
                             f"{lr}, {teacher_lr}, {weight_decay}, {list(betas)}")  # fmt: skip
        if alpha < 0 or beta <= 0 or sigma < 0:
            raise ValueError(f"uninet: need alpha >= 0, beta > 0 and sigma >= 0, got {alpha}, {beta}, {sigma}")
        with local_seed(seed):
            self.model = UniNetModel(
                backbone=backbone,
                layers=layers,
                pretrained=pretrained,
                weights_path=weights_path,
                block=block,
                bottleneck_blocks=bottleneck_blocks,
                decoder_blocks=decoder_blocks,
            )
        if self.model.reduction > input_size:
            raise ValueError(f"uninet: input_size {input_size} is smaller than the bottleneck stride "
                             f"{self.model.reduction}")  # fmt: skip
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            h = self.hparams
            student_side, target = self.model.trainable_groups()
            self._optimizer = torch.optim.AdamW(
                [{"params": student_side}, {"params": target, "lr": h["teacher_lr"]}],
                lr=h["lr"],
                betas=tuple(h["betas"]),
                weight_decay=h["weight_decay"],
            )
        return self._optimizer

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """UniNet's training loss on a batch of normal images (call in train mode)."""
        h = self.hparams
        teachers, students = self.model(images)
        if h["feature_selection"]:
            students = self.model.dfs(students, teachers)
        return uninet_loss(
            students, teachers, temperature=h["temperature"], lambda_weight=h["lambda_weight"], margin=h["margin"]
        )

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass over ``train_loader``: bottleneck, student, DFS and target teacher are trained."""
        device = self.device
        h = self.hparams
        if int(self.epochs_done) == 0 and h["bn_calibration"] and not h["pretrained"]:
            self.model.source.calibrate_batchnorm(batch_images(batch).to(device) for batch in train_loader)
            self.model.target.model.load_state_dict(self.model.source.model.state_dict())
        optimizer = self._get_optimizer()
        self.train()
        epoch = int(self.epochs_done)
        total, batches = 0.0, 0
        with local_seed(h["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                loss = self.loss(images)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} "
                                             f"(epoch {epoch + 1}); try a lower lr")  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
        self.epochs_done += 1
        return {"loss": total / max(batches, 1)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        h = self.hparams
        teachers, students = self.model(images)
        maps = pair_maps(teachers, students)
        summed = self.model.anomaly_map(maps, self.input_size)
        scores = weighted_decision_score(maps, summed, alpha=h["alpha"], beta=h["beta"], sigma=float(h["sigma"]))
        return scores, {"anomaly_map": summed}

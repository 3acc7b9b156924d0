"""The registered MSFlow detector."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.scores import topk_mean
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from . import INFO
from .model import MsflowModel, add_map, log_prob_maps, msflow_loss, mul_map

__all__ = ["Msflow"]

_SCORE_MAPS = ("mul", "add")


@register_algorithm(INFO)
class Msflow(AnomalyDetector):
    """MSFlow (Zhou et al., IEEE TNNLS 2024) with the publication's defaults.

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 512, both MVTec AD and VisA).
    seed : int
        Seeds initialisation (permutations, random-init encoder) and training.
    backbone : str
        timm CNN (publication: ``wide_resnet50_2.tv_in1k``; ``resnet18`` for quick runs).
    layers : sequence of str
        Encoder levels (publication: layer1-layer3).
    pretrained : bool
        ImageNet weights for the encoder (``False`` only for tests).
    weights_path : str, optional
        Local encoder weights file.
    parallel_blocks : sequence of int
        Couplings of each scale's parallel flow (publication: 2, 5, 8).
    cond_channels : int
        Positional-encoding channels of the parallel flows' condition (publication: 64).
    clamp : float
        Soft-clamp bound of every coupling (publication: 1.9).
    lr : float
        Adam learning rate (publication: 1e-4).
    warmup_epochs : int
        Linear warm-up of the learning rate from ``0.1 lr`` to ``lr`` over the first epochs,
        ramped per optimiser step (publication: 3; 0 disables it).
    lr_milestones : sequence of int
        Epochs (0-based, counted from the start) from which the rate is multiplied by ``lr_gamma``
        (publication: 70 and 90).
    lr_gamma : float
        Decay factor at each milestone (publication: 0.33).
    grad_clip : float
        Maximum gradient norm of the flows' parameters (publication: 2; 0 disables clipping).
    top_k : float
        Fraction of the detection map's largest values averaged into the image score
        (publication: 0.03; VisionAD used 0.1).
    score_map : {"mul", "add"}
        Which map the image score is taken from (publication: the ``"mul"`` detection map).

    Notes
    -----
    Training minimises :func:`~algorithms.msflow.model.msflow_loss` over the parallel and fusion
    flows with Adam, one step per batch, gradient norm clipped. Prediction returns both of the
    publication's maps: ``"add"`` (localisation, the primary map) and ``"mul"`` (detection), and
    the image score, the mean of the ``top_k`` largest values of the ``"mul"`` map. Every
    normalisation is per image (no statistics of other images), so nothing needs ``pre_eval``.
    """

    def __init__(
        self,
        *,
        input_size: int = 512,
        seed: int = 0,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        parallel_blocks: Sequence[int] = (2, 5, 8),
        cond_channels: int = 64,
        clamp: float = 1.9,
        lr: float = 1e-4,
        warmup_epochs: int = 3,
        lr_milestones: Sequence[int] = (70, 90),
        lr_gamma: float = 0.33,
        grad_clip: float = 2.0,
        top_k: float = 0.03,
        score_map: str = "mul",
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        self.hparams["parallel_blocks"] = [int(b) for b in parallel_blocks]
        self.hparams["lr_milestones"] = [int(m) for m in lr_milestones]
        if input_size < 32:
            raise ValueError(f"msflow: input_size must be at least 32, got {input_size}")
        if lr <= 0 or warmup_epochs < 0 or not 0 < lr_gamma <= 1 or grad_clip < 0:
            raise ValueError(
                "msflow: need lr > 0, warmup_epochs >= 0, 0 < lr_gamma <= 1 and grad_clip >= 0, "
                f"got {lr}, {warmup_epochs}, {lr_gamma}, {grad_clip}"
            )
        if not 0 < top_k <= 1:
            raise ValueError(f"msflow: top_k must be a fraction in (0, 1], got {top_k}")
        if score_map not in _SCORE_MAPS:
            raise ValueError(f"msflow: score_map must be one of {_SCORE_MAPS}, got {score_map!r}")
        with local_seed(seed):
            generator = torch.Generator().manual_seed(seed)
            self.model = MsflowModel(
                backbone=backbone,
                layers=layers,
                parallel_blocks=parallel_blocks,
                cond_channels=cond_channels,
                clamp=clamp,
                pretrained=pretrained,
                weights_path=weights_path,
                generator=generator,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The flows' parameters (parallel and fusion); the encoder is frozen."""
        return list(self.model.flows.parameters())

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.trainable_parameters(), lr=self.hparams["lr"])
        return self._optimizer

    def learning_rate(self, epoch: int, progress: float = 0.0) -> float:
        """The learning rate at ``progress`` (in ``[0, 1)``) through (0-based) ``epoch``.

        ``lr * w * lr_gamma ** (number of milestones <= epoch)``, with the warm-up factor
        ``w = 0.1 + 0.9 * min(1, (epoch + progress) / warmup_epochs)``: a linear ramp from ``0.1 lr``
        that reaches ``lr`` after ``warmup_epochs`` epochs. (VisionAD's copy gives ``LinearLR`` a
        length of 3 x 100 = 300 steps but steps it once per epoch, so over its 100 epochs the rate
        never reaches ``lr``; that defect is not reproduced.)
        """
        lr = self.hparams["lr"]
        warm = self.hparams["warmup_epochs"]
        factor = 1.0
        if warm > 0:
            factor = 0.1 + 0.9 * min(1.0, (epoch + progress) / warm)
        decays = sum(1 for m in self.hparams["lr_milestones"] if epoch >= m)
        return lr * factor * self.hparams["lr_gamma"] ** decays

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass over ``train_loader``: one Adam step per batch on the flows' negative log-likelihood."""
        self.train()
        self.model.extractor.eval()
        optimizer = self._get_optimizer()
        parameters = self.trainable_parameters()
        epoch = int(self.epochs_done)
        try:
            batches_per_epoch = len(train_loader)
        except TypeError:  # an iterable without a length: the warm-up is ramped per epoch
            batches_per_epoch = 0
        total, steps = 0.0, 0
        device = self.device
        with local_seed(self.hparams["seed"] * 1_000_003 + epoch, device):
            for step, images in enumerate(iter_images(self.name, train_loader, self.input_size, device)):
                progress = step / batches_per_epoch if batches_per_epoch else 0.0
                for group in optimizer.param_groups:
                    group["lr"] = self.learning_rate(epoch, progress)
                latents, log_det = self.model(images)
                loss = msflow_loss(latents, log_det)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.name}: the training loss became {loss.item()} (epoch {epoch + 1}); try a lower lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.hparams["grad_clip"] > 0:
                    torch.nn.utils.clip_grad_norm_(parameters, self.hparams["grad_clip"])
                optimizer.step()
                total += float(loss.detach())
                steps += 1
        self.epochs_done += 1
        return {"loss": total / max(steps, 1), "lr": self.learning_rate(epoch, 0.0)}

    def maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ``"add"`` (localisation) and ``"mul"`` (detection) maps, ``(B, S, S)`` each."""
        latents, _ = self.model(images)
        log_probs = log_prob_maps(latents)
        size = (self.input_size, self.input_size)
        return {"add": add_map(log_probs, size), "mul": mul_map(log_probs, size)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        maps = self.maps(images)
        scores = topk_mean(maps[self.hparams["score_map"]], ratio=self.hparams["top_k"])
        return scores, maps

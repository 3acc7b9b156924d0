"""The registered CFlow-AD detector."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from . import INFO
from .model import CflowModel, fibre_loss

__all__ = ["Cflow"]


@register_algorithm(INFO)
class Cflow(AnomalyDetector):
    """CFlow-AD (Gudovskiy et al., WACV 2022) with the publication's defaults.

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 256).
    seed : int
        Seeds initialisation (orthogonal mixing matrices, random-init encoder) and training.
    backbone : str
        timm CNN (publication: ``wide_resnet50_2.tv_in1k``; ``resnet18`` for quick runs).
    layers : sequence of str
        Encoder levels (publication: layer2-layer4).
    pretrained : bool
        ImageNet weights for the encoder (``False`` only for tests).
    weights_path : str, optional
        Local encoder weights file.
    cond_channels : int
        Positional-encoding channels (publication: 128).
    coupling_blocks : int
        Coupling blocks per decoder (publication: 8).
    clamp : float
        Soft-clamp bound (publication: 1.9).
    fibre_batch : int
        Fibres per optimiser step (publication ``N``: 256).
    lr : float
        Adam learning rate (publication: 2e-4).
    sub_epochs : int
        Epochs per "meta-epoch" of the learning-rate schedule (publication: 8, with 25 meta-epochs).
    meta_epochs : int
        Meta-epochs of the cosine schedule (publication: 25).
    warmup_meta_epochs : int
        Linear warm-up from ``lr / 10`` over the first meta-epochs (publication: 2).

    Notes
    -----
    Training (cflow-ad ``train.py``): per batch of images and per scale, the fibres are shuffled and
    cut into chunks of ``fibre_batch``; each chunk takes its own Adam step on
    ``mean(-logsigmoid(log p / C))``. Inference: per scale ``log p / C`` minus a constant
    ``m_l`` fixed after training (the maximum over the training images, :meth:`pre_eval`),
    exponentiated, bilinearly upsampled (``align_corners=True``), summed over scales; the anomaly
    map is ``L - sum`` (``L`` scales) and the image score its maximum. The official code subtracts
    the maximum over the whole test set instead, which makes one image's map depend on the others
    (``INFO.deviations``).
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer2", "layer3", "layer4"),
        pretrained: bool = True,
        weights_path: str | None = None,
        cond_channels: int = 128,
        coupling_blocks: int = 8,
        clamp: float = 1.9,
        fibre_batch: int = 256,
        lr: float = 2e-4,
        sub_epochs: int = 8,
        meta_epochs: int = 25,
        warmup_meta_epochs: int = 2,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        if input_size < 32:
            raise ValueError(f"cflow: input_size must be at least 32, got {input_size}")
        if fibre_batch < 1 or coupling_blocks < 1:
            raise ValueError(
                f"cflow: fibre_batch and coupling_blocks must be positive, got {fibre_batch}, {coupling_blocks}"
            )
        if lr <= 0 or sub_epochs < 1 or meta_epochs < 1 or not 0 <= warmup_meta_epochs < meta_epochs:
            raise ValueError(
                "cflow: need lr > 0, sub_epochs >= 1, meta_epochs >= 1 and 0 <= warmup_meta_epochs < meta_epochs, "
                f"got {lr}, {sub_epochs}, {meta_epochs}, {warmup_meta_epochs}"
            )
        with local_seed(seed):
            generator = torch.Generator().manual_seed(seed)
            self.model = CflowModel(
                backbone=backbone,
                layers=layers,
                cond_channels=cond_channels,
                coupling_blocks=coupling_blocks,
                clamp=clamp,
                pretrained=pretrained,
                weights_path=weights_path,
                generator=generator,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        # m_l: the maximum of log p / C over the training images per scale (set by pre_eval).
        self.register_buffer("reference_log_prob", torch.zeros(len(self.model.decoders)))
        self.register_buffer("reference_ready", torch.zeros((), dtype=torch.bool))
        self._optimizer: torch.optim.Optimizer | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.model.decoders.parameters(), lr=self.hparams["lr"])
        return self._optimizer

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of (0-based) ``epoch`` (cflow-ad ``utils.adjust_learning_rate``/``warmup_learning_rate``).

        Cosine decay per meta-epoch ``m = epoch // sub_epochs`` from ``lr`` towards
        ``lr * 0.1**3``; during the first ``warmup_meta_epochs`` a linear ramp from ``lr / 10`` to
        the cosine value at the end of the warm-up (ramped per epoch, the official per batch).
        """
        lr, sub, meta, warm = (self.hparams[k] for k in ("lr", "sub_epochs", "meta_epochs", "warmup_meta_epochs"))
        eta_min = lr * 0.1**3
        meta_epoch = min(epoch // sub, meta - 1)

        def cosine(m: float) -> float:
            return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * m / meta)) / 2

        if meta_epoch < warm:
            progress = (epoch + 1) / (warm * sub)
            start, end = lr / 10.0, cosine(warm)
            return start + progress * (end - start)
        return cosine(meta_epoch)

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass: per image batch and scale, shuffled chunks of ``fibre_batch`` fibres, one Adam step each."""
        self.train()
        self.model.extractor.eval()
        optimizer = self._get_optimizer()
        epoch = int(self.epochs_done)
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate(epoch)
        total, steps = 0.0, 0
        chunk = self.hparams["fibre_batch"]
        device = self.device
        with local_seed(self.hparams["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                for level, feature in enumerate(self.model.features(images)):
                    fibres, cond = self.model.fibres(feature), self.model.condition(feature)
                    order = torch.randperm(fibres.shape[0], device=device)
                    for start in range(0, fibres.shape[0], chunk):
                        index = order[start : start + chunk]
                        log_p = self.model.log_likelihood(level, fibres[index], cond[index])
                        loss = fibre_loss(log_p, fibres.shape[1])
                        if not torch.isfinite(loss):
                            raise FloatingPointError(
                                f"{self.name}: the training loss became {loss.item()} "
                                f"(epoch {epoch + 1}); try a lower lr"
                            )
                        # Zeroed, not dropped: the official code (torch 1.x zero_grad) steps one Adam over all
                        # decoders for every chunk, so the other scales' decoders follow their momentum.
                        optimizer.zero_grad(set_to_none=False)
                        loss.backward()
                        optimizer.step()
                        total += float(loss.detach())
                        steps += 1
        self.epochs_done += 1
        self.reference_ready.fill_(False)
        return {"loss": total / max(steps, 1)}

    def pre_eval(self, train_loader) -> None:
        """Fix ``m_l``, the maximum of ``log p / C`` per scale over the training images."""
        self.eval()
        best = torch.full_like(self.reference_log_prob, -torch.inf)
        with torch.no_grad():
            for images in iter_images(self.name, train_loader, self.input_size, self.device):
                for level, log_prob in enumerate(self.model.log_prob_maps(images)):
                    best[level] = torch.maximum(best[level], log_prob.max())
        if not torch.isfinite(best).all():
            raise ValueError(f"{self.name}: pre_eval got no training images (or a non-finite likelihood)")
        self.reference_log_prob.copy_(best)
        self.reference_ready.fill_(True)

    def anomaly_map(self, log_prob_maps: list[torch.Tensor]) -> torch.Tensor:
        """``L - sum_l up(exp(log p_l / C_l - m_l))``, ``(B, S, S)`` (higher is more anomalous)."""
        size = (self.input_size, self.input_size)
        total = None
        for level, log_prob in enumerate(log_prob_maps):
            prob = torch.exp(log_prob - self.reference_log_prob[level]).unsqueeze(1)
            up = F.interpolate(prob, size=size, mode="bilinear", align_corners=True)[:, 0]
            total = up if total is None else total + up
        return len(log_prob_maps) - total

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        if not bool(self.reference_ready):
            raise RuntimeError(f"{self.name}: call pre_eval(train_loader) after training and before predict")
        maps = self.anomaly_map(self.model.log_prob_maps(images))
        return maps.amax(dim=(1, 2)), {"anomaly_map": maps}

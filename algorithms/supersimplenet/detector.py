"""The registered SuperSimpleNet detector: hyperparameters, training epoch, prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import AnomalyDetector, hparams_from_locals
from ..components.losses import binary_focal_loss, truncated_l1_loss
from ..components.training import check_images, iter_images, local_seed
from ..registry import register_algorithm
from ..utils import batch_images
from . import INFO
from .model import SuperSimpleNetModel, synthesize_anomalies

__all__ = ["SuperSimpleNet"]


@register_algorithm(INFO)
class SuperSimpleNet(AnomalyDetector):
    """SuperSimpleNet (Rolih et al., ICPR 2024), unsupervised, with the MVTec AD defaults.

    Parameters
    ----------
    input_size : int
        Square input side in pixels (publication: 256).
    seed : int
        Seeds initialisation, the Perlin masks and the feature noise.
    backbone : str
        timm CNN (``wide_resnet50_2.tv_in1k``: the torchvision V1 weights the noise scale assumes).
    layers : sequence of str
        Backbone stages (publication: layers 2 and 3).
    pretrained, weights_path
        ImageNet weights from the hub cache or a local file; ``pretrained=False`` for tests/demo.
    bn_calibration : bool
        Random-initialised backbones only: re-estimate the backbone's BatchNorm statistics from
        the training images before the first epoch (not in the paper; the CPU demo uses it).
    perlin_threshold : float
        Binarisation threshold of the Perlin masks (publication: 0.2 on MVTec AD, 0.6 on VisA).
    noise_std : float
        Standard deviation of the feature noise (publication: 0.015).
    empty_probability : float
        Probability that a duplicated item's mask is emptied (official ``no_anomaly="empty"``: 0.5).
    adapt_cls_features : bool
        ICPR (True, default): the classification head reads adapted features; JIMS 2025 and
        anomalib: the unadapted ones (the noise is then added to both).
    stop_grad : bool
        Detach the segmentation map in the classification branch (unsupervised setting: True).
    align_corners : bool
        Bilinear upsampling of the backbone features (official code: True; anomalib: False).
    seg_hidden, cls_hidden : int
        Head widths (publication: 1024 and 128).
    focal_gamma, l1_margin : float
        Focal-loss focusing (4) and truncated-L1 margin (0.5).
    adaptor_lr, seg_lr, cls_lr, head_weight_decay : float
        AdamW groups (publication: 1e-4 with AdamW's default weight decay 0.01; 2e-4 and 2e-4
        with weight decay 1e-5).
    epochs : int
        The run's length (publication: 300); places the MultiStepLR milestones at
        ``int(0.8 epochs)`` and ``int(0.9 epochs)``.
    lr_gamma : float
        MultiStepLR factor (0.4).
    blur_sigma : float
        Gaussian smoothing of the map (publication: 4, kernel 25).
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer2", "layer3"),
        pretrained: bool = True,
        weights_path: str | None = None,
        bn_calibration: bool = False,
        perlin_threshold: float = 0.2,
        noise_std: float = 0.015,
        empty_probability: float = 0.5,
        adapt_cls_features: bool = True,
        stop_grad: bool = True,
        align_corners: bool = True,
        seg_hidden: int = 1024,
        cls_hidden: int = 128,
        focal_gamma: float = 4.0,
        l1_margin: float = 0.5,
        adaptor_lr: float = 1e-4,
        seg_lr: float = 2e-4,
        cls_lr: float = 2e-4,
        head_weight_decay: float = 1e-5,
        epochs: int = 300,
        lr_gamma: float = 0.4,
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.hparams["layers"] = list(layers)
        if not layers:
            raise ValueError("supersimplenet: layers must name at least one backbone stage")
        if not -1.0 <= perlin_threshold < 1.0:
            raise ValueError(f"supersimplenet: perlin_threshold must be in [-1, 1) (Perlin noise range), got "
                             f"{perlin_threshold}")  # fmt: skip
        if noise_std <= 0 or not 0.0 <= empty_probability <= 1.0:
            raise ValueError(f"supersimplenet: noise_std must be positive and empty_probability in [0, 1], got "
                             f"{noise_std}, {empty_probability}")  # fmt: skip
        if min(seg_hidden, cls_hidden, epochs) < 1 or focal_gamma < 0 or l1_margin < 0 or blur_sigma < 0:
            raise ValueError("supersimplenet: seg_hidden, cls_hidden and epochs must be positive; focal_gamma, "
                             "l1_margin and blur_sigma non-negative")  # fmt: skip
        if min(adaptor_lr, seg_lr, cls_lr) <= 0 or head_weight_decay < 0 or not 0 < lr_gamma <= 1:
            raise ValueError("supersimplenet: learning rates must be positive, head_weight_decay >= 0, "
                             "lr_gamma in (0, 1]")  # fmt: skip
        with local_seed(seed):
            self.model = SuperSimpleNetModel(
                backbone=backbone,
                layers=layers,
                pretrained=pretrained,
                weights_path=weights_path,
                align_corners=align_corners,
                seg_hidden=seg_hidden,
                cls_hidden=cls_hidden,
                adapt_cls_features=adapt_cls_features,
                stop_grad=stop_grad,
                blur_sigma=blur_sigma,
            )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            h, m = self.hparams, self.model
            self._optimizer = torch.optim.AdamW(
                [
                    {"params": m.adaptor.parameters(), "lr": h["adaptor_lr"]},
                    {"params": m.seg_head.parameters(), "lr": h["seg_lr"], "weight_decay": h["head_weight_decay"]},
                    {
                        "params": [*m.cls_conv.parameters(), *m.cls_fc.parameters()],
                        "lr": h["cls_lr"],
                        "weight_decay": h["head_weight_decay"],
                    },
                ]
            )
            milestones = [int(h["epochs"] * 0.8), int(h["epochs"] * 0.9)]
            self._scheduler = torch.optim.lr_scheduler.MultiStepLR(self._optimizer, milestones, gamma=h["lr_gamma"])
        return self._optimizer

    def loss(
        self, seg_logits: torch.Tensor, cls_logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """``focal(map, mask) + truncated L1(map, mask) + focal(score, label)`` (ICPR 2024, eq. 2-4).

        ``seg_logits`` and ``masks`` are ``(N, 1, h, w)``; ``cls_logits`` and ``labels`` ``(N,)``.
        """
        gamma, margin = self.hparams["focal_gamma"], self.hparams["l1_margin"]
        return (
            binary_focal_loss(seg_logits, masks, gamma=gamma)
            + truncated_l1_loss(seg_logits, masks, margin=margin, normality=False)
            + binary_focal_loss(cls_logits, labels, gamma=gamma)
        )

    def training_loss(self, images: torch.Tensor, mask_generator: torch.Generator, noise_generator=None):
        """The loss of one batch of normal images, with freshly synthesised anomalies."""
        m = self.model
        features = m.features(images)
        adapted = m.adaptor(features)
        adapted, noisy_features, masks, labels = synthesize_anomalies(
            adapted,
            None if m.adapt_cls_features else features,
            threshold=self.hparams["perlin_threshold"],
            noise_std=self.hparams["noise_std"],
            empty_probability=self.hparams["empty_probability"],
            mask_generator=mask_generator,
            noise_generator=noise_generator,
        )
        seg, logits = m.heads(adapted, adapted if m.adapt_cls_features else noisy_features)
        return self.loss(seg, logits, masks, labels)

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One epoch over the (duplicated, noised) training batches; then the lr schedule steps."""
        device = self.device
        if int(self.epochs_done) == 0 and self.hparams["bn_calibration"] and not self.hparams["pretrained"]:
            self.model.extractor.calibrate_batchnorm(batch_images(batch).to(device) for batch in train_loader)
        optimizer = self._get_optimizer()
        self.train()
        epoch = int(self.epochs_done)
        seed = self.hparams["seed"] * 1_000_003 + epoch
        mask_generator = torch.Generator().manual_seed(seed)
        noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
        total, batches = 0.0, 0
        with local_seed(seed, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                loss = self.training_loss(images, mask_generator, noise_generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.name}: the training loss became {loss.item()} "
                                             f"(epoch {epoch + 1}); try a lower lr")  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
        assert self._scheduler is not None
        self._scheduler.step()
        self.epochs_done += 1
        return {"loss": total / max(batches, 1)}

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        scores, maps = self.model(images)
        return scores, {"anomaly_map": maps}

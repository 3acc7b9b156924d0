"""The registered EfficientAD detector."""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..base import AnomalyDetector, hparams_from_locals
from ..components.training import check_images, iter_images, local_seed, quantile
from ..registry import register_algorithm
from . import INFO
from .model import MODEL_SIZES, AutoEncoder, load_pdn_weights, make_pdn, pdn_output_size

__all__ = ["EfficientAd", "color_jitter", "holdout_size", "image_fingerprints", "paper_epochs"]

_MAP_PADDINGS = ("constant", "replicate")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".JPEG")

RANDOM_TEACHER_WARNING = (
    "EfficientAD without teacher_weights uses a randomly initialised teacher; the published method "
    "needs a teacher PDN distilled from an ImageNet backbone (teacher_weights=/path/teacher_medium.pth). "
    "Results are not comparable with the paper."
)


def paper_epochs(n_train: int, *, batch_size: int = 1, train_steps: int = 70_000) -> int:
    """Epochs that give the paper's ``train_steps`` optimiser steps on ``n_train`` images."""
    if n_train < 1 or batch_size < 1:
        raise ValueError(f"n_train and batch_size must be positive, got {n_train} and {batch_size}")
    return math.ceil(train_steps / math.ceil(n_train / batch_size))


def holdout_size(n_train: int) -> int:
    """Images held out for map normalisation: the official split ``n - int(0.9 n)`` (none for one image).

    The official code (``efficientad.py``) splits the MVTec AD training set with
    ``random_split(full_train_set, [int(0.9 n), n - int(0.9 n)])`` and computes the map-normalisation
    quantiles on the 10 % it does not train on.
    """
    if n_train < 0:
        raise ValueError(f"n_train must be non-negative, got {n_train}")
    return n_train - int(0.9 * n_train) if n_train >= 2 else 0


def image_fingerprints(images: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64 content fingerprints (8-byte BLAKE2b of each image's float32 values).

    The training loader is shuffled and yields no identities, so the held-out images are
    recognised by content: the loader decodes and resizes the same file to the same tensor in
    every epoch. Identical images share a fingerprint (and so a side of the split).
    """
    data = images.detach().to("cpu", torch.float32).contiguous().numpy()
    digests = [hashlib.blake2b(image.tobytes(), digest_size=8).digest() for image in data]
    return torch.tensor([int.from_bytes(d, "little", signed=True) for d in digests], dtype=torch.int64)


def color_jitter(images: torch.Tensor, generator: torch.Generator, *, strength: float = 0.2) -> torch.Tensor:
    """Randomly change brightness, contrast or saturation (one, chosen per image) of normalised images.

    Mirrors the paper's ``RandomChoice([ColorJitter(brightness=0.2), ColorJitter(contrast=0.2),
    ColorJitter(saturation=0.2)])`` on ImageNet-normalised ``(B, 3, H, W)`` tensors: undo the
    normalisation, apply a factor drawn uniformly from ``[1 - strength, 1 + strength]``, clip to
    ``[0, 1]`` and normalise again. Randomness comes from ``generator`` only (CPU generator).
    """
    n = images.shape[0]
    mean = images.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    choice = torch.randint(0, 3, (n,), generator=generator).to(images.device)
    factor = (1.0 + strength * (2.0 * torch.rand((n,), generator=generator) - 1.0)).to(images)
    factor = factor.view(n, 1, 1, 1)
    x = (images * std + mean).clamp(0.0, 1.0)
    gray = (x * images.new_tensor(_GRAY).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    bright = x * factor
    contrast = factor * x + (1.0 - factor) * gray.mean(dim=(1, 2, 3), keepdim=True)
    saturation = factor * x + (1.0 - factor) * gray
    out = torch.where(
        (choice == 0).view(n, 1, 1, 1), bright, torch.where((choice == 1).view(n, 1, 1, 1), contrast, saturation)
    )
    return (out.clamp(0.0, 1.0) - mean) / std


class _PenaltyImages:
    """Images from a folder for the optional ImageNet penalty (resize 2x, random grey, centre crop)."""

    def __init__(self, folder: str, size: int) -> None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"efficient_ad: imagenet_dir {root} is not a directory")
        self.files = sorted(
            p for p in root.rglob("*") if p.suffix in _IMAGE_SUFFIXES or p.suffix.lower() in _IMAGE_SUFFIXES
        )
        if not self.files:
            raise ValueError(f"efficient_ad: imagenet_dir {root} holds no images ({', '.join(_IMAGE_SUFFIXES[:5])})")
        self.size = size

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        import cv2
        import numpy as np

        batch = []
        for _ in range(n):
            path = self.files[int(torch.randint(len(self.files), (1,), generator=generator))]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"efficient_ad: cannot decode penalty image {path}")
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            big = 2 * self.size
            image = cv2.resize(image, (big, big), interpolation=cv2.INTER_LINEAR)
            start = (big - self.size) // 2
            image = image[start : start + self.size, start : start + self.size]
            if float(torch.rand((), generator=generator)) < 0.3:
                grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
                image = np.repeat(grey[:, :, None], 3, axis=2)
            batch.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0)
        x = torch.stack(batch)
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        return (x - mean) / std


@register_algorithm(INFO)
class EfficientAd(AnomalyDetector):
    """EfficientAD (Batzner, Heckler & König, WACV 2024) with the publication's defaults.

    Parameters
    ----------
    input_size : int
        Square input side (publication: 256); at least 64.
    seed : int
        Seeds initialisation, colour jitter, dropout and penalty-image sampling.
    model_size : {"medium", "small"}
        PDN variant (publication default here: medium, "EfficientAD-M").
    out_channels : int
        Teacher descriptor channels (publication: 384; the student outputs twice as many).
    width : float
        Multiplier of the PDNs' inner channels (1.0 = publication; smaller only for quick tests).
    teacher_weights : str, optional
        Local ``state_dict`` of the distilled teacher PDN (e.g. ``teacher_medium.pth`` from the
        authors' release). **Without it the teacher is random**, which is not the published method:
        a ``UserWarning`` is raised and ``metadata["random_teacher"]`` is True.
    pretrained : bool
        Read ``teacher_weights`` (default). Loading a checkpoint passes ``False``: the saved
        ``state.pt`` already holds the teacher, so the original file need not exist any more.
    imagenet_dir : str, optional
        Folder of ImageNet (or other natural) images for the student penalty; off when ``None``.
    lr, weight_decay : float
        Adam settings (publication: 1e-4 and 1e-5).
    train_steps : int
        Planned optimiser steps (publication: 70,000); the learning rate drops x0.1 after 95% of
        them, and training stops after all of them (later epochs do nothing). The publication's
        schedule (``INFO.schedule``: 70,000 iterations of batch 1) makes the runner stop at the same
        step; :func:`paper_epochs` gives the epochs that reach it on a training set of a given size.
    hard_quantile : float
        Hard-feature mining quantile of the student-teacher loss (publication: 0.999).
    q_a, q_b : float
        Map-normalisation quantiles (publication: 0.9 and 0.995).
    map_padding : {"constant", "replicate"}
        How the PDN's missing border (4 map pixels a side at 256 px) is filled before upsampling:
        ``"constant"`` zeros (publication), or ``"replicate"`` the nearest valid value. Zero is the
        ``q_a`` level of normal images, so with small inputs, where the border is a large share of
        the image (44 % at 128 px, 75 % at 64 px), zeros outrank most normal pixels; ``"replicate"``
        avoids that.

    Notes
    -----
    Hold-out: as the official code, 10 % of the training images (``n - int(0.9 n)``, a seeded
    choice made at the start of the first epoch and recognised by content, :func:`image_fingerprints`)
    are never trained on; the ``q_a`` / ``q_b`` quantiles of each raw partial map are computed on
    them in ``pre_eval``. Teacher channel statistics come from the other 90 %. Before
    ``pre_eval`` has run, the partial maps are used unnormalised. Maps:
    ``"combined"`` (primary) ``= 0.5 * st + 0.5 * ae`` where each partial map is
    ``0.1 * (m - q_a) / (q_b - q_a)``, zero-padded back to a quarter of the input size and
    bilinearly upsampled; ``"student_teacher"`` and ``"student_autoencoder"`` are the partial maps.
    Score: the maximum of the combined map after padding and upsampling, as the official code.
    anomalib 2.7 departs from the official code here: it pads and upsamples *before* normalising
    and takes the quantiles on the padded, upsampled maps (``tests/test_anomalib_peers.py``).
    """

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        model_size: str = "medium",
        out_channels: int = 384,
        width: float = 1.0,
        teacher_weights: str | None = None,
        pretrained: bool = True,
        imagenet_dir: str | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        train_steps: int = 70_000,
        hard_quantile: float = 0.999,
        q_a: float = 0.9,
        q_b: float = 0.995,
        map_padding: str = "constant",
    ) -> None:
        super().__init__(**hparams_from_locals(locals()))
        if model_size not in MODEL_SIZES:
            raise ValueError(f"efficient_ad: model_size must be one of {MODEL_SIZES}, got {model_size!r}")
        if input_size < 64:
            raise ValueError(f"efficient_ad: input_size must be at least 64, got {input_size}")
        if not (0.0 < hard_quantile < 1.0 and 0.0 <= q_a < q_b <= 1.0):
            raise ValueError(
                f"efficient_ad: need 0 < hard_quantile < 1 and 0 <= q_a < q_b <= 1, got {hard_quantile}, {q_a}, {q_b}"
            )
        if map_padding not in _MAP_PADDINGS:
            raise ValueError(f"efficient_ad: map_padding must be one of {_MAP_PADDINGS}, got {map_padding!r}")
        if lr <= 0 or weight_decay < 0 or train_steps < 1:
            raise ValueError(
                f"efficient_ad: need lr > 0, weight_decay >= 0, train_steps >= 1, got {lr}, "
                f"{weight_decay}, {train_steps}"
            )
        self.feature_size = pdn_output_size(input_size)
        with local_seed(seed):
            self.teacher = make_pdn(model_size, out_channels, width=width)
            self.student = make_pdn(model_size, 2 * out_channels, width=width)
            self.autoencoder = AutoEncoder(out_channels, input_size=input_size, output_size=self.feature_size)
        if teacher_weights and pretrained:
            load_pdn_weights(self.teacher, teacher_weights)
        elif not teacher_weights:
            warnings.warn(RANDOM_TEACHER_WARNING, UserWarning, stacklevel=2)
        self.metadata = {
            "random_teacher": not teacher_weights,
            "warning": "" if teacher_weights else RANDOM_TEACHER_WARNING,
        }
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        # Checked now, except when loading a saved model (the folder is only needed to train).
        self._penalty = _PenaltyImages(imagenet_dir, input_size) if imagenet_dir and pretrained else None
        shape = (1, out_channels, 1, 1)
        self.register_buffer("teacher_mean", torch.zeros(shape))
        self.register_buffer("teacher_std", torch.ones(shape))
        self.register_buffer("teacher_stats_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("map_quantiles", torch.tensor([0.0, 1.0, 0.0, 1.0]))  # st_a, st_b, ae_a, ae_b
        self.register_buffer("map_quantiles_ready", torch.zeros((), dtype=torch.bool))
        # Fingerprints of the training images held out for map normalisation (data-sized).
        self.register_buffer("holdout_fingerprints", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    # -- training -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> EfficientAd:
        super().train(mode)
        self.teacher.eval()  # the teacher is fixed
        return self

    def _teacher_features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (self.teacher(images) - self.teacher_mean) / self.teacher_std

    def _compute_teacher_stats(self, train_loader) -> None:
        """Choose the hold-out split, then the teacher's per-channel mean and std on the rest.

        One pass over the training images: each image's fingerprint and its channel sums. The
        hold-out (:func:`holdout_size`, 10 %) is a seeded random choice among the distinct
        fingerprints in sorted order, so it does not depend on the loader's shuffling. As the
        official code, the statistics come from the training part (``teacher_normalization``
        on ``train_loader``), all pixels of all its images.
        """
        device = self.device
        fingerprints, sums, sums_sq, pixels = [], [], [], 0
        with torch.no_grad():
            for images in iter_images(self.name, train_loader, self.input_size, device):
                out = self.teacher(images).double()
                fingerprints.append(image_fingerprints(images))
                sums.append(out.sum(dim=(2, 3)).cpu())
                sums_sq.append((out**2).sum(dim=(2, 3)).cpu())
                pixels = out.shape[2] * out.shape[3]
        fingerprints_all = torch.cat(fingerprints)
        distinct = torch.unique(fingerprints_all)  # sorted
        generator = torch.Generator().manual_seed(self.hparams["seed"])
        chosen = torch.randperm(len(distinct), generator=generator)[: holdout_size(len(distinct))]
        self.holdout_fingerprints = distinct[chosen].sort().values.to(device)
        keep = ~torch.isin(fingerprints_all, self.holdout_fingerprints.cpu())
        total = torch.cat(sums)[keep].sum(dim=0)
        total_sq = torch.cat(sums_sq)[keep].sum(dim=0)
        count = int(keep.sum()) * pixels
        mean = total / count
        var = (total_sq / count - mean**2).clamp_min(0.0)
        self.teacher_mean.copy_(mean.view_as(self.teacher_mean).float())
        self.teacher_std.copy_(var.sqrt().clamp_min(1e-6).view_as(self.teacher_std).float())
        self.teacher_stats_ready.fill_(True)

    def _held_out(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: which images of a batch belong to the normalisation hold-out."""
        if self.holdout_fingerprints.numel() == 0:
            return torch.zeros(images.shape[0], dtype=torch.bool)
        return torch.isin(image_fingerprints(images), self.holdout_fingerprints.cpu())

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            params = [*self.student.parameters(), *self.autoencoder.parameters()]
            self._optimizer = torch.optim.Adam(params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        return self._optimizer

    def _losses(self, images: torch.Tensor, jittered: torch.Tensor, penalty: torch.Tensor | None) -> dict:
        c = self.hparams["out_channels"]
        distance_st = (self._teacher_features(images) - self.student(images)[:, :c]) ** 2
        d_hard = quantile(distance_st.detach(), self.hparams["hard_quantile"])
        loss_st = distance_st[distance_st >= d_hard].mean()
        if penalty is not None:
            loss_st = loss_st + (self.student(penalty)[:, :c] ** 2).mean()
        ae_out = self.autoencoder(jittered)
        loss_ae = ((self._teacher_features(jittered) - ae_out) ** 2).mean()
        loss_stae = ((ae_out - self.student(jittered)[:, c:]) ** 2).mean()
        return {"loss_st": loss_st, "loss_ae": loss_ae, "loss_stae": loss_stae}

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass: (first epoch only) teacher statistics, then student + autoencoder steps."""
        if self.hparams["imagenet_dir"] and self._penalty is None:
            self._penalty = _PenaltyImages(self.hparams["imagenet_dir"], self.input_size)
        if not bool(self.teacher_stats_ready):
            self._compute_teacher_stats(train_loader)
        self.train()
        optimizer = self._get_optimizer()
        device = self.device
        epoch_seed = self.hparams["seed"] * 1_000_003 + int(self.epochs_done)
        generator = torch.Generator().manual_seed(epoch_seed)
        drop_at = int(0.95 * self.hparams["train_steps"])
        sums = {"loss": 0.0, "loss_st": 0.0, "loss_ae": 0.0, "loss_stae": 0.0}
        batches = 0
        with local_seed(epoch_seed, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                if int(self.steps_done) >= self.hparams["train_steps"]:
                    break  # the planned number of steps is done
                held_out = self._held_out(images)
                if bool(held_out.any()):
                    images = images[~held_out.to(images.device)]
                    if images.shape[0] == 0:
                        continue  # a batch of held-out images only
                jittered = color_jitter(images, generator)
                penalty = self._penalty.sample(images.shape[0], generator).to(device) if self._penalty else None
                losses = self._losses(images, jittered, penalty)
                loss = losses["loss_st"] + losses["loss_ae"] + losses["loss_stae"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.name}: the training loss became {loss.item()} "
                        f"(step {int(self.steps_done) + 1}); try a lower lr"
                    )
                lr = self.hparams["lr"] * (0.1 if int(self.steps_done) >= drop_at else 1.0)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.steps_done += 1
                sums["loss"] += float(loss.detach())
                for key, value in losses.items():
                    sums[key] += float(value.detach())
                batches += 1
        self.epochs_done += 1
        if batches == 0:
            return {"steps_done": float(self.steps_done)}
        return {key: value / batches for key, value in sums.items()}

    # -- evaluation -----------------------------------------------------------------------
    def _raw_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.hparams["out_channels"]
        teacher = self._teacher_features(images)
        student = self.student(images)
        ae_out = self.autoencoder(images)
        map_st = torch.mean((teacher - student[:, :c]) ** 2, dim=1)
        map_ae = torch.mean((ae_out - student[:, c:]) ** 2, dim=1)
        return map_st, map_ae

    def pre_eval(self, train_loader) -> None:
        """Map-normalisation quantiles (``q_a``, ``q_b``) of both raw partial maps on the hold-out.

        As the official code (``map_normalization`` on the validation loader): the quantiles of the
        unpadded student-teacher and student-autoencoder maps of the training images held out
        in the first epoch (10 %). When none of the loader's images is held out (``pre_eval``
        before any training, a one-image training set, or another loader) all its images are used.
        """
        was_training = self.training
        self.eval()
        maps_st, maps_ae, held_st, held_ae = [], [], [], []
        try:
            with torch.no_grad():
                for images in iter_images(self.name, train_loader, self.input_size, self.device):
                    map_st, map_ae = self._raw_maps(images)
                    held = self._held_out(images).to(map_st.device)
                    maps_st.append(map_st)
                    maps_ae.append(map_ae)
                    held_st.append(map_st[held])
                    held_ae.append(map_ae[held])
        finally:
            self.train(was_training)
        if sum(len(m) for m in held_st):
            maps_st, maps_ae = held_st, held_ae
        q_a, q_b = self.hparams["q_a"], self.hparams["q_b"]
        all_st, all_ae = torch.cat(maps_st), torch.cat(maps_ae)
        values = [quantile(all_st, q_a), quantile(all_st, q_b), quantile(all_ae, q_a), quantile(all_ae, q_b)]
        self.map_quantiles.copy_(torch.stack(values).float())
        self.map_quantiles_ready.fill_(True)

    def _normalise(self, raw: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        if bool(self.map_quantiles_ready):
            return 0.1 * (raw - start) / (end - start).clamp_min(1e-12)
        return raw

    def _finish(self, raw: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        raw = self._normalise(raw, start, end)
        full = self.input_size // 4  # the PDN's stride; its valid output lacks a border
        pad_lo = (full - self.feature_size) // 2
        pad_hi = full - self.feature_size - pad_lo
        mode = self.hparams["map_padding"]
        padded = F.pad(raw.unsqueeze(1), (pad_lo, pad_hi, pad_lo, pad_hi), mode=mode)
        size = (self.input_size, self.input_size)
        return F.interpolate(padded, size=size, mode="bilinear", align_corners=False)[:, 0]

    def _predict(self, images: torch.Tensor):
        check_images(self.name, images, self.input_size)
        map_st, map_ae = self._raw_maps(images)
        q = self.map_quantiles
        st = self._finish(map_st, q[0], q[1])
        ae = self._finish(map_ae, q[2], q[3])
        combined = 0.5 * st + 0.5 * ae
        # As the official code: the maximum of the combined map after padding and upsampling.
        scores = combined.amax(dim=(1, 2))
        return scores, {"combined": combined, "student_teacher": st, "student_autoencoder": ae}

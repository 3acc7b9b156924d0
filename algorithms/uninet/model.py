"""UniNet networks: two teachers, the one-class bottleneck, the reverse student, feature selection, losses.

Wei, Jiang, Liu, Wang, Yu, Han, "UniNet: A Contrastive Learning-guided Unified Framework with
Feature Selection for Anomaly Detection", CVPR 2025; official code ``pangdatangtt/UniNet`` @
``7b3469f`` (MIT). Everything here is re-implemented from the paper and the facts recorded in
``shared/reference/algorithms-next.md`` (section B4), checked against the official code's
behaviour and against anomalib 2.7 (``algorithms/tests/test_uninet_anomalib.py``).

* **Teachers.** The *source* teacher is an ImageNet CNN (WRN50-2, layers 1-3), frozen and in
  eval mode. The *target* teacher starts as a copy of it and is trained (tiny learning rate) in
  train mode, so its BatchNorm statistics follow the training data.
* **Bottleneck and student.** RD4AD's multi-scale fusion (``components.distillation``) on a
  batch of ``2B``: the target teacher's features, then the source teacher's, concatenated along
  the batch; UniNet's split-branch embedding blocks; RD4AD's de-ResNet student decoder. The
  student's ``2B`` outputs are split into halves.
* **Cross pairing.** Student(target half) is compared with the *source* teacher and
  student(source half) with the *target* teacher, at each of the three levels: six pairs, in the
  order ``[(source_l, student_t_l) for l] + [(target_l, student_s_l) for l]``.
* **DFS** (domain-related feature selection, training only): each student map is multiplied per
  channel and position by ``softmax_hw(t) * (theta + mean_hw(t))`` of its paired teacher map
  ``t``, with ``theta = min(sigmoid(w) + 0.5, 1)`` per channel and ``w`` learned (initial 0,
  theta 1).
* **Loss** per pair, with student ``s`` and teacher ``t`` L2-normalised per position:
  ``lambda * mean(1 - cos) + (1 - lambda) * InfoNCE + mean(relu(margin - p_ii))`` where ``p_ii`` is
  the softmax probability (over the positions ``j`` of the same image, logits ``s_i . t_j / T``) of
  the matching position; summed over the six pairs.
* **Inference** ("weighted decision mechanism"): the map is the sum over the six pairs of the
  per-pixel ``1 - cos(t, s)``, bilinearly upsampled (``align_corners=True``), not smoothed. The
  image score is the mean of the ``k`` largest values of the Gaussian-smoothed (sigma 4) map,
  ``k = max(1, floor(S^2 w))`` with ``w = max(alpha * mean(kept maxima), beta)``, where the kept
  maxima are the per-pair map maxima whose softmax probability (over the six) exceeds the mean.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.blur import gaussian_blur
from ..components.distillation import BLOCK_KINDS, OneClassBottleneck, ReverseDecoder
from ..components.feature_extractor import FeatureExtractor
from ..components.scores import topk_mean

__all__ = [
    "DomainFeatureSelection",
    "UniNetModel",
    "pair_maps",
    "uninet_loss",
    "uninet_pair_loss",
    "weighted_decision_score",
]


class DomainFeatureSelection(nn.Module):
    """DFS: per-channel, per-position re-weighting of the student features by their teacher's.

    ``s * softmax_hw(t) * (theta + mean_hw(t))`` with ``theta = min(sigmoid(w) + 0.5, 1)``, one
    ``w`` per channel and level (initial 0, so ``theta = 1``); the level's ``w`` is shared by the
    two pairs of that level (official ``DFS.py``: ``theta{idx+1}`` for the first three pairs,
    ``theta{idx-2}`` for the last three). The softmax subtracts the per-channel spatial maximum
    first (official ``max=True``; it changes nothing mathematically).

    The official code creates ``w`` with ``nn.Parameter(...).to("cuda")``, which returns a plain
    tensor that is not registered: ``DFS.parameters()`` is empty, ``w`` never trains (theta stays 1)
    and the module fails without CUDA. Here ``w`` is a registered parameter, trained with the
    student (the intended behaviour; a deviation recorded in ``INFO``). Registering is not enough:
    at ``w = 0`` the argument ``sigmoid(w) + 0.5`` is exactly 1, the kink of the ``min``, where
    ``torch.clamp`` passes a zero gradient, so a registered ``w`` would still never move (anomalib
    2.7 registers it and computes it with ``torch.clamp``: its theta stays 1 too). We compute the
    same value as ``x - relu(x - 1)``, which takes the derivative from below at the kink: theta can
    leave 1 downwards (it cannot exceed 1), as the published formula intends.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in channels])

    def theta(self, level: int) -> torch.Tensor:
        """``min(sigmoid(w) + 0.5, 1)`` of ``level`` (0-based), shape ``(1, C, 1, 1)``; gradient from below at 1."""
        x = torch.sigmoid(self.weights[level]) + 0.5
        return x - F.relu(x - 1.0)

    def forward(self, students: Sequence[torch.Tensor], teachers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        levels = len(self.weights)
        out = []
        for index, (s, t) in enumerate(zip(students, teachers, strict=True)):
            b, c, h, w = s.shape
            flat = t.reshape(b, c, h * w)
            weights = torch.softmax(flat - flat.amax(dim=-1, keepdim=True), dim=-1).view(b, c, h, w)
            global_mean = t.mean(dim=(-2, -1), keepdim=True)
            out.append(s * (weights * (self.theta(index % levels) + global_mean)))
        return out


def uninet_pair_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    temperature: float,
    lambda_weight: float = 0.7,
    margin: float = 1.0,
) -> torch.Tensor:
    """UniNet's loss for one (student, teacher) pair of ``(B, C, h, w)`` maps (unsupervised setting).

    With ``s_i``, ``t_i`` the L2-normalised channel vectors at position ``i`` of one image and
    ``p_ii = exp(s_i.t_i / T) / (sum_j exp(s_i.t_j / T) + 1e-8)``:
    ``lambda * mean(1 - s_i.t_i) + (1 - lambda) * mean(-log(p_ii + 1e-8)) + mean(relu(margin - p_ii))``,
    means over images and positions (official ``Loss.py``, ``mask=None``; the ``1e-8`` are the official
    code's). The ``(h w) x (h w)`` similarity matrix per image is the memory hot spot (64 MB per
    image at layer 1 of a 256 px input).
    """
    b, c, h, w = student.shape
    s = F.normalize(student.reshape(b, c, h * w), dim=1)  # (B, C, N)
    t = F.normalize(teacher.reshape(b, c, h * w), dim=1)
    cosine = (s * t).sum(dim=1)  # (B, N)
    cos_loss = (1.0 - cosine).mean()
    logits = torch.bmm(s.transpose(1, 2), t) / temperature  # (B, N, N): s_i . t_j / T
    denominator = logits.exp().sum(dim=2)
    p_diag = torch.exp(cosine / temperature) / (denominator + 1e-8)
    contrastive = -torch.log(p_diag + 1e-8).mean()
    margin_loss = F.relu(margin - p_diag).mean()
    return lambda_weight * cos_loss + (1.0 - lambda_weight) * contrastive + margin_loss


def uninet_loss(
    students: Sequence[torch.Tensor],
    teachers: Sequence[torch.Tensor],
    *,
    temperature: float,
    lambda_weight: float = 0.7,
    margin: float = 1.0,
) -> torch.Tensor:
    """Sum of :func:`uninet_pair_loss` over the paired lists (six pairs in UniNet)."""
    total = students[0].new_zeros(())
    for s, t in zip(students, teachers, strict=True):
        total = total + uninet_pair_loss(s, t, temperature=temperature, lambda_weight=lambda_weight, margin=margin)
    return total


def pair_maps(teachers: Sequence[torch.Tensor], students: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per-pixel ``1 - cos`` along channels of each (teacher, student) pair: ``(B, h, w)`` each."""
    return [1.0 - F.cosine_similarity(t, s, dim=1) for t, s in zip(teachers, students, strict=True)]


def weighted_decision_score(
    maps: Sequence[torch.Tensor], summed: torch.Tensor, *, alpha: float = 0.01, beta: float = 3e-5, sigma: float = 4.0
) -> torch.Tensor:
    """UniNet's image score (the "weighted decision mechanism"), per image, from the pair maps.

    Parameters
    ----------
    maps : sequence of torch.Tensor
        The pair maps ``(B, h_j, w_j)`` before upsampling (their maxima give the weight).
    summed : torch.Tensor
        ``(B, S, S)`` the upsampled sum of the pair maps (the anomaly map).
    alpha, beta : float
        Upper- and lower-limit factors of the weight (official: 0.01 and 3e-5).
    sigma : float
        Gaussian smoothing of ``summed`` before the top-k mean (official: 4, ``scipy.ndimage``; 0: none).

    Returns
    -------
    torch.Tensor
        ``(B,)``: the mean of the ``max(1, floor(S^2 w))`` largest values of the smoothed map, with
        ``w = max(alpha * mean(m_j : softmax(m)_j > mean softmax(m)), beta)`` and ``m_j`` the six
        per-pair maxima. When no probability exceeds the mean (all maxima equal) ``w = beta``
        (the official code would average an empty list; anomalib does the same as here).
    """
    maxima = torch.stack([m.flatten(1).amax(dim=1) for m in maps], dim=1)  # (B, P)
    probs = torch.softmax(maxima, dim=1)
    kept = probs > probs.mean(dim=1, keepdim=True)
    count = kept.sum(dim=1)
    mean_kept = (maxima * kept).sum(dim=1) / count.clamp(min=1)
    weight = torch.where(count > 0, torch.clamp(alpha * mean_kept, min=beta), torch.full_like(mean_kept, beta))
    smoothed = gaussian_blur(summed, sigma) if sigma > 0 else summed
    n = summed.shape[-2] * summed.shape[-1]
    scores = []
    for image, w in zip(smoothed, weight.tolist()):
        k = min(n, max(1, int(n * w)))
        scores.append(topk_mean(image.unsqueeze(0), k=k)[0])
    return torch.stack(scores)


class UniNetModel(nn.Module):
    """Source and target teachers, one-class bottleneck, de-ResNet student and DFS.

    Parameters
    ----------
    backbone, layers, pretrained, weights_path
        The teachers (three levels halving the resolution each), see ``FeatureExtractor``.
    block : {"auto", "basic", "bottleneck"}
        The student decoder's residual block (``"auto"``: bottleneck blocks for encoders whose
        last level has at least 1024 channels, RD4AD's ``de_wide_resnet50_2``; basic otherwise).
    bottleneck_blocks : int
        Split-branch blocks of the one-class embedding (official: 3).
    decoder_blocks : sequence of 3 int, optional
        Student blocks per stage, deepest first (default ``(3, 4, 6)`` / ``(2, 2, 2)``).
    width_factor : int, optional
        Inner width multiplier of bottleneck and decoder blocks (default 2 for ``wide_*``
        backbones, else 1; the official code builds both wide for WRN50-2).
    """

    def __init__(
        self,
        *,
        backbone: str,
        layers: Sequence[str | int],
        pretrained: bool,
        weights_path: str | None,
        block: str = "auto",
        bottleneck_blocks: int = 3,
        decoder_blocks: Sequence[int] | None = None,
        width_factor: int | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != 3:
            raise ValueError(f"UniNet needs exactly 3 teacher levels, got {list(layers)}")
        self.source = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.target = FeatureExtractor(backbone, layers, pretrained=False, frozen=False)
        self.target.model.load_state_dict(self.source.model.state_dict())  # a copy of the source teacher
        channels = self.source.channels
        reductions = self.source.reductions
        if any(r2 != 2 * r1 for r1, r2 in itertools.pairwise(reductions)):
            raise ValueError(f"teacher levels must halve the resolution each time, got reductions {reductions}")
        if block == "auto":
            block = "bottleneck" if channels[2] >= 1024 else "basic"
        if block not in BLOCK_KINDS:
            raise ValueError(f"block must be 'auto' or one of {BLOCK_KINDS}, got {block!r}")
        decoder_blocks = (
            tuple(decoder_blocks) if decoder_blocks is not None else ((3, 4, 6) if block == "bottleneck" else (2, 2, 2))
        )
        if bottleneck_blocks < 1 or len(decoder_blocks) != 3 or min(decoder_blocks) < 1:
            raise ValueError(
                f"bottleneck_blocks must be >= 1 and decoder_blocks three ints >= 1, got "
                f"{bottleneck_blocks} and {list(decoder_blocks)}"
            )
        if width_factor is None:
            width_factor = 2 if backbone.startswith("wide_") else 1
        self.channels = list(channels)
        self.reduction = reductions[2] * 2  # the bottleneck's stride
        self.bottleneck = OneClassBottleneck(
            channels, blocks=bottleneck_blocks, kind="split", width_factor=width_factor
        )
        self.student = ReverseDecoder(channels, blocks=decoder_blocks, kind=block, width_factor=width_factor)
        self.dfs = DomainFeatureSelection(channels)
        # The official BN_layer and de-ResNet initialise every Conv2d (not the transposed ones)
        # with Kaiming-normal (fan_out, ReLU); BatchNorm weights 1, biases 0 (PyTorch's default).
        for module in itertools.chain(self.bottleneck.modules(), self.student.modules()):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return ``(teachers, students)``: six maps each, paired by index.

        ``teachers = source levels 1-3 + target levels 1-3``; ``students`` = the student's output
        for the target-teacher half at levels 1-3, then for the source-teacher half, so that each
        student map is compared with the *other* teacher.
        """
        source = self.source(images)
        target = self.target(images)
        inputs = [torch.cat([t, s], dim=0) for t, s in zip(target, source, strict=True)]
        decoded = self.student(self.bottleneck(inputs))
        halves = [d.chunk(2, dim=0) for d in decoded]
        students = [h[0] for h in halves] + [h[1] for h in halves]
        return [*source, *target], students

    def trainable_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(student side, target teacher)``: bottleneck + student + DFS, and the target teacher."""
        student_side = [*self.student.parameters(), *self.bottleneck.parameters(), *self.dfs.parameters()]
        return student_side, list(self.target.parameters())

    @staticmethod
    def anomaly_map(maps: Sequence[torch.Tensor], size: int) -> torch.Tensor:
        """Sum of the pair maps, each bilinearly upsampled (``align_corners=True``) to ``size``: ``(B, S, S)``."""
        total = None
        for m in maps:
            up = F.interpolate(m.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=True)[:, 0]
            total = up if total is None else total + up
        return total

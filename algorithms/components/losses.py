"""Losses shared by the synthetic-anomaly methods: binary focal loss and truncated L1.

* Binary focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, eq. 4
  without the alpha balance): ``FL = -(1 - p_t)**gamma * log(p_t)``, ``p_t = p`` where the target
  is 1 and ``1 - p`` where it is 0; the mean over elements. Used with gamma 4 by SuperSimpleNet
  and MemSeg, gamma 2 by GLASS; no alpha in any of their defaults. GLASS's (and DRAEM's) focal loss
  smooths the one-hot target to ``[smooth, 1 - smooth]`` and adds ``smooth`` to ``p_t`` before the
  log (``smooth = 1e-5``): ``p_t' = (1 - smooth) p_t + smooth (1 - p_t) + smooth`` (``smooth=``).
* Truncated L1 (SimpleNet, Liu et al., CVPR 2023, eq. 6; SuperSimpleNet eq. 3; GLASS): a hinge
  at margin ``th`` on a *normality* score ``s``: ``mean(max(0, th - s_normal)) +
  mean(max(0, th + s_anomalous))``. SimpleNet's discriminator outputs normality; SuperSimpleNet's
  segmentation head outputs an anomaly logit, i.e. the negated normality (``normality=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["binary_focal_loss", "truncated_l1_loss"]


def binary_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    gamma: float = 2.0,
    from_logits: bool = True,
    eps: float = 1e-12,
    smooth: float = 0.0,
) -> torch.Tensor:
    """Mean binary focal loss ``-(1 - p_t)**gamma * log(p_t)`` over all elements.

    Parameters
    ----------
    inputs : torch.Tensor
        Logits (``from_logits=True``, the numerically stable form: ``log p_t`` is computed with
        ``binary_cross_entropy_with_logits``) or probabilities in ``[0, 1]``; any shape.
    targets : torch.Tensor
        Same shape, values in ``[0, 1]`` (binary labels or masks; soft targets follow the same
        formula with ``p_t = p t + (1 - p)(1 - t)``).
    gamma : float
        Focusing parameter ``>= 0`` (0 gives the binary cross-entropy).
    from_logits : bool
        Whether ``inputs`` are logits.
    eps : float
        Probabilities are clamped to ``[eps, 1 - eps]`` before the log (``from_logits=False`` only).
    smooth : float
        Label smoothing of the two-class focal loss of DRAEM and GLASS (their ``FocalLoss``,
        ``smooth=1e-5``): ``p_t`` becomes ``(1 - smooth) p_t + smooth (1 - p_t) + smooth`` and no
        ``eps`` clamp is applied; ``0`` (default) is the plain formula. Binary targets only.

    Returns
    -------
    torch.Tensor
        0-d tensor.

    Raises
    ------
    ValueError
        If the shapes differ, the input is empty or ``gamma < 0``.
    """
    if inputs.shape != targets.shape:
        raise ValueError(f"binary_focal_loss: inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} differ")
    if inputs.numel() == 0:
        raise ValueError("binary_focal_loss: empty input")
    if gamma < 0:
        raise ValueError(f"binary_focal_loss: gamma must be >= 0, got {gamma}")
    if not 0.0 <= smooth < 0.5:
        raise ValueError(f"binary_focal_loss: smooth must be in [0, 0.5), got {smooth}")
    targets = targets.to(inputs.dtype)
    if smooth > 0:
        p = torch.sigmoid(inputs) if from_logits else inputs
        p_t = p * targets + (1 - p) * (1 - targets)
        p_t = (1 - smooth) * p_t + smooth * (1 - p_t) + smooth
        return (-((1 - p_t) ** gamma) * torch.log(p_t)).mean()
    if from_logits:
        p = torch.sigmoid(inputs)
        ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    else:
        p = inputs.clamp(eps, 1.0 - eps)
        ce = F.binary_cross_entropy(p, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return (ce * (1 - p_t) ** gamma).mean()


def truncated_l1_loss(
    scores: torch.Tensor, anomalous: torch.Tensor, *, margin: float = 0.5, normality: bool = True
) -> torch.Tensor:
    """Truncated L1: ``mean(max(0, th - s[normal])) + mean(max(0, th + s[anomalous]))``.

    Parameters
    ----------
    scores : torch.Tensor
        Scores of any shape: normality scores (``normality=True``, SimpleNet's discriminator) or
        anomaly logits (``normality=False``, SuperSimpleNet's segmentation head; negated here).
    anomalous : torch.Tensor
        Same shape (or broadcastable); non-zero marks anomalous (synthetic) elements.
    margin : float
        The truncation ``th`` (0.5 in SimpleNet and SuperSimpleNet).
    normality : bool
        Whether ``scores`` grow with normality.

    Returns
    -------
    torch.Tensor
        0-d tensor. A term whose set is empty contributes 0 (SuperSimpleNet's convention).
    """
    if margin < 0:
        raise ValueError(f"truncated_l1_loss: margin must be >= 0, got {margin}")
    anomalous = torch.broadcast_to(anomalous, scores.shape) > 0
    normal_scores = scores if normality else -scores
    normal_term = (margin - normal_scores[~anomalous]).clamp_min(0)
    anomalous_term = (margin + normal_scores[anomalous]).clamp_min(0)
    zero = scores.new_zeros(())
    return (normal_term.mean() if normal_term.numel() else zero) + (
        anomalous_term.mean() if anomalous_term.numel() else zero
    )

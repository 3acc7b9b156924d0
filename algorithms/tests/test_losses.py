"""Binary focal loss and truncated L1 on hand-computed examples (and torchvision's focal loss)."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from algorithms.components.losses import binary_focal_loss, truncated_l1_loss


def test_focal_loss_hand_computed_from_logits():
    # logit 0, target 1: p_t = 0.5, CE = ln 2, weight 0.5**2        -> 0.25 ln 2     = 0.1732868
    # logit ln 3, target 0: p = 0.75, p_t = 0.25, CE = ln 4, 0.75**2 -> 0.5625 ln 4  = 0.7797905
    loss = binary_focal_loss(torch.tensor([0.0, math.log(3.0)]), torch.tensor([1.0, 0.0]), gamma=2.0)
    assert loss.item() == pytest.approx((0.25 * math.log(2) + 0.5625 * math.log(4)) / 2, rel=1e-6)


def test_focal_loss_hand_computed_from_probabilities():
    # p 0.9, target 1, gamma 4: 0.1**4 * -ln 0.9 ; p 0.2, target 0: 0.2**4 * -ln 0.8
    loss = binary_focal_loss(torch.tensor([0.9, 0.2]), torch.tensor([1, 0]), gamma=4.0, from_logits=False)
    expected = (1e-4 * -math.log(0.9) + 0.2**4 * -math.log(0.8)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_gamma_zero_is_cross_entropy_and_matches_torchvision():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, 1, 9, 9, generator=generator)
    targets = (torch.rand(2, 1, 9, 9, generator=generator) > 0.7).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert binary_focal_loss(logits, targets, gamma=0.0).item() == pytest.approx(bce.item(), rel=1e-6)
    for gamma in (2.0, 4.0):
        ref = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=gamma, reduction="mean")
        assert binary_focal_loss(logits, targets, gamma=gamma).item() == pytest.approx(ref.item(), rel=1e-6)
        probs = binary_focal_loss(torch.sigmoid(logits), targets, gamma=gamma, from_logits=False)
        assert probs.item() == pytest.approx(ref.item(), rel=1e-4)


def test_focal_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="differ"):
        binary_focal_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="gamma"):
        binary_focal_loss(torch.zeros(3), torch.zeros(3), gamma=-1)
    with pytest.raises(ValueError, match="empty"):
        binary_focal_loss(torch.zeros(0), torch.zeros(0))


def test_truncated_l1_hand_computed():
    scores = torch.tensor([1.0, 0.2, -0.7, 0.3])
    anomalous = torch.tensor([0, 0, 1, 1])
    # normality scores: normal mean(max(0, .5 - [1, .2])) = .15; anomalous mean(max(0, .5 + [-.7, .3])) = .4
    assert truncated_l1_loss(scores, anomalous).item() == pytest.approx(0.55)
    # anomaly logits: normal mean(max(0, .5 + [1, .2])) = 1.1; anomalous mean(max(0, .5 - [-.7, .3])) = .7
    assert truncated_l1_loss(scores, anomalous, normality=False).item() == pytest.approx(1.8)
    # an empty set contributes 0 (all normal here): mean(max(0, .5 - [1, .2, -.7, .3])) = 1.7 / 4
    assert truncated_l1_loss(scores, torch.zeros(4)).item() == pytest.approx(0.425)
    # margin 0: normal terms 0; anomalous mean(max(0, [-.7, .3])) = .15
    assert truncated_l1_loss(scores, anomalous, margin=0.0).item() == pytest.approx(0.15)


def test_truncated_l1_gradient_reaches_only_violating_elements():
    scores = torch.tensor([1.0, 0.2, -0.7, 0.3], requires_grad=True)
    truncated_l1_loss(scores, torch.tensor([0, 0, 1, 1])).backward()
    assert scores.grad.tolist() == pytest.approx([0.0, -0.5, 0.0, 0.5])

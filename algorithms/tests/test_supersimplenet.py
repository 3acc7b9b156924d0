"""SuperSimpleNet: shapes at the publication size, parameter counts, loss, synthetic anomalies, API.

anomalib's implementation is the oracle in ``test_supersimplenet_anomalib.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.registry import create_algorithm, get_algorithm_info
from algorithms.supersimplenet.model import synthesize_anomalies


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_publication_shapes_and_trainable_parameters():
    """WRN50-2 layers 2 + 3 (512 + 1024 = 1536 channels), 256 px: a 64 x 64 feature grid.

    Trainable parameters from the publication's architecture (ICPR 2024, section 3; official
    ``model/supersimplenet.py``), C = 1536:
    adaptor Conv1x1 C -> C: C*C + C = 2,360,832;
    segmentation head Conv1x1 C -> 1024 (+bias), BN(1024), Conv1x1 1024 -> 1 (no bias):
    1536*1024 + 1024 + 2*1024 + 1024 = 1,576,960;
    classification Conv5x5 (C + 1) -> 128 (+bias), BN(128), Linear 258 -> 1:
    1537*128*25 + 128 + 256 + 259 = 4,919,043.
    """
    with torch.device("meta"):  # shapes and counts without the compute (a WRN50-2 at 256 px is slow on CPU)
        model = create_algorithm("supersimplenet", pretrained=False)  # wide_resnet50_2.tv_in1k architecture
    m = model.model
    assert _count(m.adaptor) == 2_360_832
    assert _count(m.seg_head) == 1_576_960
    assert _count(m.cls_conv) + _count(m.cls_fc) == 4_919_043
    assert _count(m.extractor) == 0
    assert _count(model) == 2_360_832 + 1_576_960 + 4_919_043
    images = torch.empty(2, 3, 256, 256, device="meta")
    model.eval()
    with torch.no_grad():
        features = m.features(images)
        assert features.shape == (2, 1536, 64, 64)
        seg, logits = m.heads(m.adaptor(features), m.adaptor(features))
        assert seg.shape == (2, 1, 64, 64) and logits.shape == (2,)
        scores, maps = m(images)
    assert maps.shape == (2, 256, 256) and scores.shape == (2,)


def test_defaults_are_the_publication_settings():
    info = get_algorithm_info("supersimplenet")
    assert (info.schedule.epochs, info.schedule.batch_size, info.input_size) == (300, 32, 256)
    with torch.device("meta"):
        h = create_algorithm("supersimplenet", pretrained=False).hparams
    assert h["backbone"] == "wide_resnet50_2.tv_in1k" and h["layers"] == ["layer2", "layer3"]
    assert (h["perlin_threshold"], h["noise_std"], h["empty_probability"], h["focal_gamma"]) == (0.2, 0.015, 0.5, 4.0)
    lrs = (h["adaptor_lr"], h["seg_lr"], h["cls_lr"], h["head_weight_decay"], h["lr_gamma"])
    assert lrs == (1e-4, 2e-4, 2e-4, 1e-5, 0.4)
    assert h["adapt_cls_features"] and h["stop_grad"] and h["align_corners"]


def test_loss_on_a_hand_computed_example():
    """seg logits [0, ln 3] with mask [1, 0], score logit 0 with label 1, gamma 4, margin 0.5:
    focal(map) = (0.5**4 ln 2 + 0.75**4 ln 4) / 2; truncated L1 = max(0, .5 + ln 3) + max(0, .5 - 0);
    focal(score) = 0.5**4 ln 2."""
    model = create_algorithm("supersimplenet", tiny=True)
    seg = torch.tensor([0.0, math.log(3.0)]).reshape(1, 1, 1, 2)
    masks = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    loss = model.loss(seg, torch.tensor([0.0]), masks, torch.tensor([1.0]))
    focal_map = (0.5**4 * math.log(2) + 0.75**4 * math.log(4)) / 2
    expected = focal_map + (0.5 + math.log(3)) + 0.5 + 0.5**4 * math.log(2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def _synth(seed: int, threshold: float = 0.2, b: int = 8):
    adapted = torch.randn(b, 6, 20, 20, generator=torch.Generator().manual_seed(99))
    return adapted, synthesize_anomalies(
        adapted,
        adapted.clone(),
        threshold=threshold,
        noise_std=0.015,
        empty_probability=0.5,
        mask_generator=torch.Generator().manual_seed(seed),
        noise_generator=torch.Generator().manual_seed(seed + 1),
    )


def test_synthetic_anomalies_are_seeded_and_consistent():
    adapted, (noisy, noisy_features, masks, labels) = _synth(0)
    _, again = _synth(0)
    for a, b in zip((noisy, noisy_features, masks, labels), again, strict=True):
        assert torch.equal(a, b)
    _, other = _synth(1)
    assert not torch.equal(other[2], masks)
    assert noisy.shape == (16, 6, 20, 20) and masks.shape == (16, 1, 20, 20) and labels.shape == (16,)
    # labels say whether the mask is non-empty; some items are emptied, some not
    assert torch.equal(labels, (masks.flatten(1).sum(1) > 0).float())
    assert 0 < labels.sum() < 16
    # noise only inside the masks, of the asked scale, shared by both feature sets
    delta = noisy - torch.cat([adapted, adapted])
    assert torch.all(delta[(masks == 0).expand_as(delta)] == 0)
    inside = delta[(masks == 1).expand_as(delta)]
    assert inside.std().item() == pytest.approx(0.015, rel=0.1)
    assert torch.equal(noisy_features - torch.cat([adapted, adapted]), delta)


def test_visa_threshold_gives_smaller_anomalies():
    areas = {}
    for threshold in (0.2, 0.6):
        _, (_, _, masks, labels) = _synth(3, threshold, b=32)
        areas[threshold] = masks.sum() / max(labels.sum(), 1)
    assert areas[0.6] < areas[0.2]


def test_training_lowers_the_loss_and_steps_the_schedule():
    model = create_algorithm("supersimplenet", tiny=True, epochs=3)
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    losses = [model.fit_epoch(list(images.split(4)))["loss"] for _ in range(3)]
    assert losses[-1] < losses[0]
    lrs = [group["lr"] for group in model._optimizer.param_groups]
    assert lrs == pytest.approx([1e-4 * 0.4**2, 2e-4 * 0.4**2, 2e-4 * 0.4**2])  # milestones int(2.4) = int(2.7) = 2


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="perlin_threshold"):
        create_algorithm("supersimplenet", tiny=True, perlin_threshold=1.5)
    with pytest.raises(ValueError, match="empty_probability"):
        create_algorithm("supersimplenet", tiny=True, empty_probability=2.0)
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        create_algorithm("supersimplenet", tiny=True).predict(torch.randn(1, 3, 32, 32))

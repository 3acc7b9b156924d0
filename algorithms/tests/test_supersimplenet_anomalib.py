"""SuperSimpleNet against anomalib 2.7's ``SupersimplenetModel`` (the oracle): equal maps, scores, losses.

Weight mapping (anomalib ``SupersimplenetModel`` -> ours ``SuperSimpleNet.model``):

* ``feature_extractor.feature_extractor.feature_extractor.*`` (timm ``features_only``) -> ``extractor.model.*``
* ``adaptor.projection.*`` -> ``adaptor.*``
* ``segdec.seg_head.*`` -> ``seg_head.*``; ``segdec.cls_conv.*`` -> ``cls_conv.*``; ``segdec.cls_fc.*`` -> ``cls_fc.*``
* ``anomaly_map_generator.smoothing.kernel``: a fixed Gaussian (sigma 4, 25 taps), not copied

Differences isolated here:

* anomalib upsamples the backbone features with ``align_corners=False``; the official code
  (``model/feature_extractor.py``) with ``True``, our default. With ``align_corners=False`` ours
  equals anomalib; with the official setting the features differ (shown below).
* anomalib 2.7 outputs ``sigmoid`` of the blurred map and of the classification logit; ours (and
  the official map) are the logits: compared through the sigmoid (a monotone map, same rankings).
* anomalib's default is the JIMS 2025 variant (classification head on unadapted features); ours
  the ICPR 2024 one. Both are compared (``adapt_cls_features``).

anomalib is imported (about 10 s: its package init pulls in every model); the backbone is built
without pretrained weights (no network) by handing its real ``TimmFeatureExtractor`` ``pre_trained=False``.
"""

from __future__ import annotations

import functools

import pytest
import torch

from algorithms.registry import create_algorithm

torch_model = pytest.importorskip("anomalib.models.image.supersimplenet.torch_model")
ssn_loss = pytest.importorskip("anomalib.models.image.supersimplenet.loss")

SIZE = 96


def _anomalib_model(monkeypatch, adapt_cls_features: bool):
    extractor = functools.partial(torch_model.TimmFeatureExtractor, pre_trained=False)
    monkeypatch.setattr(torch_model, "TimmFeatureExtractor", extractor)
    torch.manual_seed(0)
    return torch_model.SupersimplenetModel(
        backbone="resnet18", layers=["layer2", "layer3"], stop_grad=True, adapt_cls_features=adapt_cls_features
    )


def map_anomalib_state(theirs) -> dict[str, torch.Tensor]:
    """anomalib ``SupersimplenetModel`` state -> our ``SuperSimpleNetModel`` state (documented above)."""
    prefixes = {
        "feature_extractor.feature_extractor.feature_extractor.": "extractor.model.",
        "adaptor.projection.": "adaptor.",
        "segdec.seg_head.": "seg_head.",
        "segdec.cls_conv.": "cls_conv.",
        "segdec.cls_fc.": "cls_fc.",
    }
    out = {}
    for key, value in theirs.state_dict().items():
        if key.startswith("anomaly_map_generator."):  # the fixed Gaussian kernel, not learned
            continue
        for old, new in prefixes.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value.clone()
                break
        else:
            raise KeyError(f"unmapped anomalib parameter {key}")
    return out


def _pair(monkeypatch, adapt_cls_features: bool, align_corners: bool = False):
    theirs = _anomalib_model(monkeypatch, adapt_cls_features)
    ours = create_algorithm(
        "supersimplenet",
        input_size=SIZE,
        backbone="resnet18",
        pretrained=False,
        adapt_cls_features=adapt_cls_features,
        align_corners=align_corners,
    )
    # non-trivial BatchNorm statistics in the heads (fresh ones are 0 / 1)
    generator = torch.Generator().manual_seed(1)
    for name, buffer in theirs.segdec.named_buffers():
        if "running_mean" in name:
            buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
        elif "running_var" in name:
            buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    ours.model.load_state_dict(map_anomalib_state(theirs), strict=True)
    return theirs.eval(), ours.eval()


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("adapt_cls_features", [True, False], ids=["icpr", "jims"])
def test_maps_and_scores_equal_anomalib(monkeypatch, adapt_cls_features):
    theirs, ours = _pair(monkeypatch, adapt_cls_features)
    images = _images()
    with torch.no_grad():
        expected = theirs(images)
    prediction = ours.predict(images)
    assert expected.anomaly_map.shape == (3, 1, SIZE, SIZE)
    # anomalib 2.7 returns the sigmoid of the blurred map and of the score (monotone: same rankings)
    maps, scores = torch.from_numpy(prediction.maps["anomaly_map"]), torch.from_numpy(prediction.scores)
    torch.testing.assert_close(torch.sigmoid(maps), expected.anomaly_map[:, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.sigmoid(scores), expected.pred_score, atol=1e-4, rtol=1e-4)
    assert prediction.scores.std() > 0


def test_features_differ_only_by_align_corners(monkeypatch):
    """anomalib's one architectural departure from the official code: ``align_corners=False``."""
    theirs, ours = _pair(monkeypatch, True, align_corners=False)
    _, official = _pair(monkeypatch, True, align_corners=True)
    images = _images(2)
    with torch.no_grad():
        expected = theirs.feature_extractor(images)
        torch.testing.assert_close(ours.model.features(images), expected, atol=1e-5, rtol=1e-5)
        differs = (official.model.features(images) - expected).abs().max()
    assert differs > 1e-2


@pytest.mark.parametrize("adapt_cls_features", [True, False], ids=["icpr", "jims"])
def test_training_heads_and_loss_equal_anomalib(monkeypatch, adapt_cls_features):
    """Train-mode heads on the same synthetic anomalies, and the loss, equal anomalib's.

    The Perlin masks come from different generators, so ours are made once and fed to both.
    """
    theirs, ours = _pair(monkeypatch, adapt_cls_features)
    theirs.train()
    ours.train()
    images = _images(2, seed=3)
    generator = torch.Generator().manual_seed(0)
    features = ours.model.features(images)
    adapted = ours.model.adaptor(features)
    from algorithms.supersimplenet.model import synthesize_anomalies

    noisy, noisy_features, masks, labels = synthesize_anomalies(
        adapted,
        None if adapt_cls_features else features,
        threshold=0.2,
        noise_std=0.015,
        empty_probability=0.5,
        mask_generator=generator,
        noise_generator=torch.Generator().manual_seed(1),
    )
    assert masks.shape == (4, 1, *features.shape[-2:]) and labels.shape == (4,)
    cls_in = noisy if adapt_cls_features else noisy_features
    seg, logits = ours.model.heads(noisy, cls_in)
    their_seg, their_logits = theirs.segdec(seg_features=noisy, cls_features=cls_in)
    torch.testing.assert_close(seg, their_seg, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, their_logits, atol=1e-5, rtol=1e-5)
    loss = ours.loss(seg, logits, masks, labels)
    expected = ssn_loss.SSNLoss()(pred_map=seg, pred_score=logits, target_mask=masks, target_label=labels)
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-5)

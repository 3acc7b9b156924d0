"""CFlow-AD: shapes at the publication size, parameter counts, the loss on a hand example, the
fibre-chunked training, the learning-rate schedule and per-image maps."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from algorithms.cflow.model import CflowModel, fibre_log_likelihood, fibre_loss
from algorithms.components.feature_extractor import FeatureExtractor
from algorithms.components.flows import ConditionalFlow
from algorithms.components.positional import positional_encoding_2d
from algorithms.registry import create_algorithm


def _decoder_parameters(channels: int, cond: int = 128, blocks: int = 8) -> int:
    # cflow-ad model.py: subnet_fc(d, C) = Linear(d, 2d) -> ReLU -> Linear(2d, C) with d = C/2 + P
    # (AllInOneBlock's subnet outputs log-scales and shifts for the other half: 2 (C/2) = C), plus
    # FrEIA's global affine scale and offset (C each); the orthogonal mixing matrix is frozen.
    d = channels // 2 + cond
    return blocks * ((d * 2 * d + 2 * d) + (2 * d * channels + channels) + 2 * channels)


def test_publication_shapes_and_parameter_counts():
    # The publication encoder at 256 px; the decoders' parameter counts from the formula above,
    # building the layer2 decoder (8 blocks) for real. (Building the 2048-channel decoders draws
    # eight 2048 x 2048 orthogonal matrices, seconds each: too slow for a unit test.)
    torch.manual_seed(0)
    extractor = FeatureExtractor("wide_resnet50_2.tv_in1k", ("layer2", "layer3", "layer4"), pretrained=False)
    with torch.no_grad():
        features = extractor(torch.rand(1, 3, 256, 256))
    assert [tuple(f.shape) for f in features] == [(1, 512, 32, 32), (1, 1024, 16, 16), (1, 2048, 8, 8)]
    flow = ConditionalFlow(512, steps=8, cond_channels=128, subnet="fc", hidden_ratio=2.0, clamp=1.9)
    feature = features[0]
    fibres = CflowModel.fibres(feature)
    cond = positional_encoding_2d(128, 32, 32).reshape(128, -1).t()
    with torch.no_grad():
        z, log_det = flow(fibres, cond)
    assert z.shape == (32 * 32, 512) and log_det.shape == (32 * 32,)
    # Trainable parameters per decoder: 5,523,456 (layer2), 17,074,176 (layer3), 59,049,984 (layer4):
    # 81.6M for the three decoders; the frozen WRN50-2 encoder has none.
    assert sum(p.numel() for p in flow.parameters() if p.requires_grad) == _decoder_parameters(512) == 5_523_456
    assert _decoder_parameters(1024) == 17_074_176 and _decoder_parameters(2048) == 59_049_984
    assert not any(p.requires_grad for p in extractor.parameters())


def test_loss_on_hand_example():
    z = torch.tensor([[3.0, 4.0]])
    log_det = torch.tensor([1.0])
    # log p = -2 ln sqrt(2 pi) - 0.5 * 25 + 1
    expected_log_p = -math.log(2 * math.pi) - 12.5 + 1.0
    log_p = fibre_log_likelihood(z, log_det)
    assert log_p.item() == pytest.approx(expected_log_p, rel=1e-6)
    # -logsigmoid(u) = log(1 + exp(-u)) with u = log p / C
    assert fibre_loss(log_p, 2).item() == pytest.approx(math.log1p(math.exp(-expected_log_p / 2)), rel=1e-6)


def test_condition_is_the_positional_encoding_in_fibre_order():
    model = create_algorithm("cflow", tiny=True).model
    feature = torch.randn(2, 4, 3, 5)
    cond = model.condition(feature)
    pe = positional_encoding_2d(16, 3, 5)
    assert cond.shape == (2 * 15, 16)
    fibres = model.fibres(feature)
    # fibre 1 * 15 + 2 * 5 + 4: image 1, row 2, column 4
    torch.testing.assert_close(fibres[1 * 15 + 2 * 5 + 4], feature[1, :, 2, 4])
    torch.testing.assert_close(cond[1 * 15 + 2 * 5 + 4], pe[:, 2, 4])


def test_learning_rate_schedule():
    detector = create_algorithm("cflow", tiny=True, lr=2e-4, sub_epochs=8, meta_epochs=25, warmup_meta_epochs=2)
    eta_min = 2e-4 * 1e-3

    def cosine(m):
        return eta_min + (2e-4 - eta_min) * (1 + math.cos(math.pi * m / 25)) / 2

    assert detector.learning_rate(0) == pytest.approx(2e-5 + (cosine(2) - 2e-5) / 16)
    assert detector.learning_rate(15) == pytest.approx(cosine(2))
    assert detector.learning_rate(16) == pytest.approx(cosine(2))
    assert detector.learning_rate(199) == pytest.approx(cosine(24))
    rates = [detector.learning_rate(e) for e in range(16, 200)]
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_training_takes_one_step_per_fibre_chunk_and_maps_are_per_image():
    torch.manual_seed(0)
    detector = create_algorithm("cflow", tiny=True, fibre_batch=50)
    images = torch.rand(4, 3, 64, 64)
    loader = [images[:3], images[3:]]
    with pytest.raises(RuntimeError, match="pre_eval"):
        detector.predict(images[:1])
    before = [p.detach().clone() for p in detector.model.decoders.parameters()]
    logs = detector.fit_epoch(loader)
    assert math.isfinite(logs["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, detector.model.decoders.parameters()))
    # resnet18 at 64 px: layer2 8x8, layer3 4x4 fibres per image; chunks of 50 per batch and scale.
    # Every chunk steps the one Adam over all decoders (grads zeroed, not dropped, as the official
    # code under torch 1.x), so every parameter counts every step.
    expected_steps = sum(math.ceil(b * 64 / 50) + math.ceil(b * 16 / 50) for b in (3, 1))
    state = detector._optimizer.state[next(iter(detector.model.decoders.parameters()))]
    assert int(state["step"]) == expected_steps
    detector.pre_eval(loader)
    train_maps = detector.predict(images).maps["anomaly_map"]
    assert train_maps.min() >= -1e-5  # every training fibre is at most the reference likelihood
    alone = detector.predict(images[2:3]).maps["anomaly_map"]
    torch.testing.assert_close(torch.as_tensor(alone[0]), torch.as_tensor(train_maps[2]), atol=1e-5, rtol=1e-5)


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        create_algorithm("cflow", tiny=True, cond_channels=10)
    with pytest.raises(ValueError, match="fibre_batch"):
        create_algorithm("cflow", tiny=True, fibre_batch=0)
    with pytest.raises(ValueError, match="warmup_meta_epochs"):
        create_algorithm("cflow", tiny=True, meta_epochs=2, warmup_meta_epochs=2)

"""PFM and PEFM: what makes them those methods (shapes, parameter counts, loss, map, positional encoding)."""

from __future__ import annotations

import pytest
import torch

from algorithms.components.positional import positional_encoding_2d
from algorithms.pefm.model import PefmModel
from algorithms.pfm.model import DualProjection, PfmModel
from algorithms.registry import create_algorithm


def _cbr(a: int, b: int) -> int:  # Conv1x1(a -> b) with bias, BatchNorm(b) weight and bias
    return a * b + b + 2 * b


def _conv(a: int, b: int) -> int:
    return a * b + b


def dual_projection_parameters(cs: int, ct: int, latent: int) -> int:
    """Trainable parameters of one official ``DualProjectionNet`` (``MB-PFM-ResNet.py``; ``PEFM_AD.py`` "small")."""
    s_encoder = _cbr(cs, cs // 2 + latent) + _cbr(cs // 2 + latent, 2 * latent)
    t_encoder = _cbr(ct, ct // 2 + latent) + _cbr(ct // 2 + latent, 2 * latent)
    shared = _conv(2 * latent, latent)
    t_decoder = _cbr(latent, 2 * latent) + _cbr(2 * latent, ct // 2 + latent) + _conv(ct // 2 + latent, ct)
    s_decoder = _cbr(latent, 2 * latent) + _cbr(2 * latent, cs // 2 + latent) + _conv(cs // 2 + latent, cs)
    return s_encoder + t_encoder + shared + t_decoder + s_decoder


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_parameter_count_of_the_first_pfm_projector_by_hand():
    # ResNet34 layer1 (64 ch) <-> ResNet50 layer1 (256 ch), L = 200, worked out term by term:
    # S-enc 15,544 + 94,000; shared 80,200; T-dec 81,200 + 132,184 + 84,224;
    # T-enc 84,952 + 132,400; S-dec 81,200 + 93,496 + 14,912
    assert dual_projection_parameters(64, 256, 200) == 894_312
    assert _trainable(DualProjection(64, 256, 200)) == 894_312


@pytest.mark.parametrize(
    ("model_class", "latents"),
    [(PfmModel, (200, 400, 900)), (PefmModel, (200, 400, 800))],
)
def test_publication_model_shapes_and_trainable_parameters(model_class, latents):
    """ResNet34 (64/128/256 ch) -> ResNet50 (256/512/1024 ch) at 256 px: grids 64, 32, 16."""
    model = model_class(
        student_backbone="resnet34.tv_in1k",
        teacher_backbone="resnet50.tv_in1k",
        layers=("layer1", "layer2", "layer3"),
        latent_dims=latents,
        input_size=256,
        pretrained=False,
    )
    assert model.student.channels == [64, 128, 256] and model.teacher.channels == [256, 512, 1024]
    expected = [
        dual_projection_parameters(cs, ct, latent) for cs, ct, latent in zip([64, 128, 256], [256, 512, 1024], latents)
    ]
    assert [_trainable(p) for p in model.projectors] == expected
    assert _trainable(model) == sum(expected)  # both backbones frozen
    assert _trainable(model.student) == _trainable(model.teacher) == 0
    model.eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 256, 256))
    for (s, t, s_hat, t_hat), cs, ct, grid in zip(outputs, [64, 128, 256], [256, 512, 1024], [64, 32, 16]):
        assert s.shape == s_hat.shape == (1, cs, grid, grid)
        assert t.shape == t_hat.shape == (1, ct, grid, grid)
        torch.testing.assert_close(s.norm(dim=1), torch.ones(1, grid, grid))  # channel-L2-normalised
    assert model.anomaly_map(outputs).shape == (1, 256, 256)


def test_loss_and_map_on_a_hand_computed_example():
    model = create_algorithm("pfm", tiny=True).model  # input_size 32
    # one scale, 2 channels on a 2 x 2 grid; the errors are constant over the grid
    s, t = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    s_hat = torch.zeros(1, 2, 2, 2)
    s_hat[:, 0] = 1.0  # squared error 1 in one channel of S
    t_hat = torch.full((1, 2, 2, 2), 2.0)  # squared error 4 in both channels of T
    (loss,) = model.scale_losses([(s, t, s_hat, t_hat)])
    assert loss.item() == pytest.approx(0.5 + 4.0)  # mean 4/8 + mean 32/8
    second = (s, t, s, t)  # a perfect mapping at a second scale
    heat = model.anomaly_map([(s, t, s_hat, t_hat), second])
    assert heat.shape == (1, 32, 32)
    # (1 + 8) / 2 = 4.5 at the first scale, 0 at the second; the mean of the scales
    torch.testing.assert_close(heat, torch.full((1, 32, 32), 2.25))


def test_pefm_adds_the_positional_encoding_to_both_projector_inputs():
    torch.manual_seed(0)
    plain = DualProjection(8, 12, 4).eval()
    encoded = DualProjection(8, 12, 4, positional_grid=(3, 5)).eval()
    encoded.load_state_dict(plain.state_dict())  # the encodings are not saved: fixed, rebuilt on creation
    s, t = torch.randn(2, 8, 3, 5), torch.randn(2, 12, 3, 5)
    with torch.no_grad():
        expected = plain(s + positional_encoding_2d(8, 3, 5), t + positional_encoding_2d(12, 3, 5))
        for a, b in zip(encoded(s, t), expected):
            torch.testing.assert_close(a, b)
        with pytest.raises(ValueError, match=r"encodes a \(3, 5\) grid"):
            encoded(torch.randn(1, 8, 4, 4), torch.randn(1, 12, 4, 4))
    assert all(p.positional_grid is None for p in create_algorithm("pfm", tiny=True).model.projectors)
    pefm_grids = [p.positional_grid for p in create_algorithm("pefm", tiny=True).model.projectors]
    assert pefm_grids == [(8, 8), (4, 4), (2, 2)]  # 32 px: strides 4, 8, 16


def test_published_defaults_and_per_scale_learning_rates():
    from algorithms.pefm.detector import Pefm
    from algorithms.pfm.detector import Pfm

    pfm, pefm = Pfm.__init__.__kwdefaults__, Pefm.__init__.__kwdefaults__
    assert (pfm["student_backbone"], pfm["teacher_backbone"]) == ("resnet34.tv_in1k", "resnet50.tv_in1k")
    assert (pfm["latent_dims"], pfm["lrs"], pfm["weight_decay"]) == ((200, 400, 900), (3e-3, 3e-4, 3e-4), 1e-5)
    assert (pefm["latent_dims"], pefm["lrs"]) == ((200, 400, 800), (3e-4, 3e-4, 3e-4))
    model = create_algorithm("pfm", tiny=True, lrs=[1e-2, 2e-3, 3e-4])
    groups = model._get_optimizer().param_groups
    assert [g["lr"] for g in groups] == [1e-2, 2e-3, 3e-4]
    assert [sum(p.numel() for p in g["params"]) for g in groups] == [_trainable(p) for p in model.model.projectors]
    with pytest.raises(ValueError, match="one positive learning rate per layer"):
        create_algorithm("pfm", tiny=True, lrs=[1e-3])


def test_bn_calibration_runs_once_before_the_first_epoch_only_when_asked():
    from algorithms.tests.test_conformance import _images

    train = list(_images(4, 32, seed=1).split(2))
    plain = create_algorithm("pfm", tiny=True)
    calibrated = create_algorithm("pfm", tiny=True, bn_calibration=True)
    stem = "model.student.model.bn1.running_mean"
    assert torch.equal(plain.state_dict()[stem], calibrated.state_dict()[stem])
    plain.fit_epoch(train)
    calibrated.fit_epoch(train)
    assert torch.equal(plain.state_dict()[stem], torch.zeros(64))
    after_first = calibrated.state_dict()[stem].clone()
    assert not torch.equal(after_first, torch.zeros(64))
    calibrated.fit_epoch(train)
    assert torch.equal(calibrated.state_dict()[stem], after_first)

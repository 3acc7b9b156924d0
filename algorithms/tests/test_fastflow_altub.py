"""FastFlow + AltUB: the learned base's NLL on a hand-computed example, identity with FastFlow at
initialisation, the alternating schedule with its own learning rate, shapes and parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.fastflow_altub.model import LearnedBase
from algorithms.registry import create_algorithm
from algorithms.tests.test_conformance import _images


def test_nll_in_the_learned_base_on_a_hand_computed_example():
    base = LearnedBase([2])
    with torch.no_grad():
        base.means[0].copy_(torch.tensor([1.0, 0.0]))
        base.log_stds[0].copy_(torch.tensor([math.log(2.0), 0.0]))
    z = torch.tensor([3.0, 1.0]).view(1, 2, 1, 1)
    ((z_std, log_det),) = base.standardise([(z, torch.tensor([0.5]))])
    torch.testing.assert_close(z_std.flatten(), torch.tensor([1.0, 1.0]))  # (3 - 1) / 2, (1 - 0) / 1
    assert log_det.item() == pytest.approx(0.5 - math.log(2.0))  # log|det J| - h w sum log sigma
    # FastFlow's NLL of the standardised latents is AltUB's: 0.5 * (1 + 1) + log 2 - 0.5
    model = create_algorithm("fastflow_altub", tiny=True).model
    assert model.negative_log_likelihood([(z_std, log_det)]).item() == pytest.approx(1.0 + math.log(2.0) - 0.5)


def test_base_is_sized_from_the_backbone_channels_at_publication_size():
    """WRN50-2 layers 1-3 at 256 px: 256, 512, 1024 channels on 64, 32, 16 grids; 2 x 1792 = 3584 parameters."""
    base = LearnedBase([256, 512, 1024])
    assert sum(p.numel() for p in base.parameters() if p.requires_grad) == 2 * (256 + 512 + 1024)
    outputs = [(torch.randn(2, c, s, s), torch.zeros(2)) for c, s in ((256, 64), (512, 32), (1024, 16))]
    for (z, log_det), (c, s) in zip(base.standardise(outputs), ((256, 64), (512, 32), (1024, 16))):
        assert z.shape == (2, c, s, s) and log_det.shape == (2,)
    tiny = create_algorithm("fastflow_altub", tiny=True)
    plain = create_algorithm("fastflow", tiny=True)
    trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert trainable(tiny) == trainable(plain) + 2 * (64 + 128 + 256)  # resnet18 layers 1-3


def test_at_initialisation_it_is_fastflow():
    """mu = 0, log sigma = 0: the standard normal, so the same loss and maps as FastFlow with the same weights."""
    altub = create_algorithm("fastflow_altub", tiny=True, seed=3)
    plain = create_algorithm("fastflow", tiny=True, seed=3)
    plain.load_state_dict({k.replace("model.flow.", "model."): v for k, v in altub.state_dict().items()
                           if not k.startswith(("model.base.", "steps_done"))})  # fmt: skip
    images = _images(2, 64, seed=1)
    altub.eval()
    plain.eval()
    with torch.no_grad():
        a, p = altub.model(images), plain.model(images)
        torch.testing.assert_close(altub.model.negative_log_likelihood(a), plain.model.negative_log_likelihood(p))
    torch.testing.assert_close(torch.from_numpy(altub.predict(images).maps["anomaly_map"]),
                               torch.from_numpy(plain.predict(images).maps["anomaly_map"]))  # fmt: skip


def test_every_kth_step_updates_only_the_base_with_its_own_learning_rate():
    model = create_algorithm("fastflow_altub", tiny=True, alt_interval=3, base_lr=0.05)
    batch = [_images(2, 64, seed=1)]
    flow = lambda: [p.detach().clone() for p in model.model.flow.parameters() if p.requires_grad]  # noqa: E731
    base = lambda: [p.detach().clone() for p in model.model.base.parameters()]  # noqa: E731
    for step in range(2):  # steps 0 and 1: FastFlow's optimiser, flows and base
        before_flow, before_base = flow(), base()
        assert model.fit_epoch(batch)["base_steps"] == 0
        assert all(not torch.equal(a, b) for a, b in zip(before_flow, flow())), step
        assert all(not torch.equal(a, b) for a, b in zip(before_base, base())), step
    before_flow, before_base = flow(), base()
    assert model.fit_epoch(batch)["base_steps"] == 1  # step 2 = the 3rd: base only
    assert all(torch.equal(a, b) for a, b in zip(before_flow, flow()))
    # its first Adam step moves every base parameter by base_lr (g / (|g| + eps) = +-1)
    for a, b in zip(before_base, base()):
        torch.testing.assert_close((a - b).abs(), torch.full_like(a, 0.05), rtol=1e-4, atol=1e-6)
    assert int(model.steps_done) == 3 and [model.is_base_step(s) for s in range(6)] == [0, 0, 1, 0, 0, 1]


def test_config_checks_know_fastflows_and_altubs_hyperparameters():
    from algorithms.runspec import ConfigError, RunSpec

    spec = RunSpec.from_entry(
        {"algorithm": "fastflow_altub", "params": {"flow_steps": 2, "alt_interval": 5, "base_lr": 0.01}},
        shared={"categories": ["synthetic/woven"]},
    )
    spec.check_params()
    bad = RunSpec.from_entry({"algorithm": "fastflow_altub", "params": {"alt_intervall": 5}},
                             shared={"categories": ["synthetic/woven"]})  # fmt: skip
    with pytest.raises(ConfigError, match="alt_intervall"):
        bad.check_params()
    with pytest.raises(ValueError, match="alt_interval must be an integer >= 2"):
        create_algorithm("fastflow_altub", tiny=True, alt_interval=1)

"""FastFlow and the 2-D flow blocks: exact invertibility and log-determinants, loss, maps, API."""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.components.flows import AffineCouplingStep, Flow2d, global_scale, soft_clamp
from algorithms.registry import create_algorithm, get_algorithm_info, load_algorithm


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter random values (global scales around their initial 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = p.detach().clone() if name.endswith("global_scale") else torch.zeros_like(p)
            p.copy_(base + 0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_soft_clamp_is_freias_tanh_form():
    """``clamp * tanh(s)`` (FrEIA AllInOneBlock, official FastFlow): bounded by ``clamp``, increasing,
    slope ``clamp`` at zero; by hand at a few points."""
    x = torch.linspace(-100, 100, 1001, dtype=torch.float64)
    y = soft_clamp(x, 2.0)
    assert y.abs().max() <= 2.0 and torch.all(torch.diff(y) >= 0)
    assert soft_clamp(torch.tensor([1e-4], dtype=torch.float64), 2.0).item() == pytest.approx(2e-4, rel=1e-8)
    assert soft_clamp(torch.tensor([0.5], dtype=torch.float64), 2.0).item() == pytest.approx(0.9242343145, rel=1e-9)
    assert soft_clamp(torch.tensor([-1.0], dtype=torch.float64), 1.9).item() == pytest.approx(-1.4470288963, rel=1e-9)


def test_global_scale_starts_at_one_and_is_freias_softplus():
    step = AffineCouplingStep(4, kernel_size=1)
    torch.testing.assert_close(global_scale(step.global_scale), torch.ones(1, 4, 1, 1))
    g = torch.tensor([-3.0, 0.0, 4.0], dtype=torch.float64)
    expected = [0.1 * 2 * math.log1p(math.exp(0.5 * v)) for v in g.tolist()]  # softplus_beta(x) = log(1+e^{bx})/b
    assert global_scale(g).tolist() == pytest.approx(expected, rel=1e-12)


def test_subnets_are_default_initialised_not_zero():
    """The official code (FrEIA subnets) keeps PyTorch's default initialisation of the last
    convolution; an untrained flow is therefore not the identity."""
    flow = Flow2d(6, steps=2)
    assert all(step.subnet[-1].weight.abs().sum() > 0 for step in flow.steps)
    x = torch.randn(1, 6, 4, 4, generator=torch.Generator().manual_seed(0))
    z, log_det = flow(x)
    assert not torch.allclose(z, x[:, flow.steps[0].permutation]) and log_det.abs().item() > 0


def test_flow_inverse_recovers_the_input():
    flow = Flow2d(6, steps=4, generator=torch.Generator().manual_seed(1))
    _randomise(flow)
    x = torch.randn(3, 6, 5, 5, generator=torch.Generator().manual_seed(2))
    z, _ = flow(x)
    assert z.shape == x.shape
    assert not torch.allclose(z, x)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_coupling_log_det_matches_the_jacobian(kernel_size):
    torch.manual_seed(0)
    step = AffineCouplingStep(5, kernel_size=kernel_size, generator=torch.Generator().manual_seed(3)).double()
    _randomise(step, seed=kernel_size)
    x = torch.randn(1, 5, 3, 3, dtype=torch.float64)
    _, log_det = step(x)
    jac = torch.autograd.functional.jacobian(lambda v: step(v.view(1, 5, 3, 3))[0].reshape(-1), x.reshape(-1))
    expected = torch.linalg.slogdet(jac).logabsdet
    assert log_det.shape == (1,)
    assert log_det.item() == pytest.approx(expected.item(), abs=1e-8)


def test_flow_log_det_is_the_sum_over_steps():
    flow = Flow2d(4, steps=3, generator=torch.Generator().manual_seed(0)).double()
    _randomise(flow)
    x = torch.randn(2, 4, 2, 2, dtype=torch.float64)
    jac_dets = []
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, 4, 2, 2))[0].reshape(-1), x[i].reshape(-1))
        jac_dets.append(torch.linalg.slogdet(jac).logabsdet.item())
    _, log_det = flow(x)
    assert log_det.tolist() == pytest.approx(jac_dets, abs=1e-8)


def test_kernels_alternate_three_and_one_unless_conv3x3_only():
    flow = Flow2d(4, steps=4)
    assert [s.subnet[0].kernel_size[0] for s in flow.steps] == [3, 1, 3, 1]
    flow = Flow2d(4, steps=3, conv3x3_only=True)
    assert [s.subnet[0].kernel_size[0] for s in flow.steps] == [3, 3, 3]
    # hidden ratio 1.0 of the subnet's input (the conditioning half); it outputs scale + shift
    wide = Flow2d(8, steps=1)
    assert [tuple(c.weight.shape) for c in wide.steps[0].subnet[::2]] == [(4, 4, 3, 3), (8, 4, 3, 3)]
    # the WRN-50 layout (256, 512, 1024 channels, 8 steps alternating 3x3/1x1) has the ~41M flow
    # weights of the reference: 0.75 * C^2 * (4 * 9 + 4 * 1) per scale, plus biases and affines
    weights = sum(0.75 * c * c * 40 for c in (256, 512, 1024))
    assert weights == pytest.approx(41.3e6, rel=1e-3)
    small = Flow2d(16, steps=8)
    conv_weights = sum(c.weight.numel() for step in small.steps for c in step.subnet[::2])
    assert conv_weights == 0.75 * 16 * 16 * 40


def test_flow_rejects_bad_settings():
    with pytest.raises(ValueError, match="at least 2 channels"):
        AffineCouplingStep(1, kernel_size=3)
    with pytest.raises(ValueError, match="odd"):
        AffineCouplingStep(4, kernel_size=2)
    with pytest.raises(ValueError, match="at least one step"):
        Flow2d(4, steps=0)


def test_publication_defaults_are_documented_in_the_signature():
    info = get_algorithm_info("fastflow")
    import inspect

    from algorithms.fastflow.detector import Fastflow

    defaults = {k: v.default for k, v in inspect.signature(Fastflow.__init__).parameters.items() if k != "self"}
    assert defaults["backbone"] == "wide_resnet50_2"
    assert defaults["flow_steps"] == 8 and defaults["hidden_ratio"] == 1.0 and defaults["clamp"] == 2.0
    assert defaults["lr"] == 1e-3 and defaults["weight_decay"] == 1e-5 and defaults["input_size"] == 256
    assert (info.schedule.epochs, info.schedule.batch_size, info.schedule.input_size) == (500, 32, 256)


def test_loss_and_map_follow_the_definitions():
    model = create_algorithm("fastflow", tiny=True)
    model.eval()
    x = _images(2)
    with torch.no_grad():
        outputs = model.model(x)
        loss = model.model.negative_log_likelihood(outputs)
        expected = sum((0.5 * (z**2).sum(dim=(1, 2, 3)) - log_det).mean() for z, log_det in outputs)  # summed
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        prediction = model.predict(x)
    anomaly_map = prediction.maps["anomaly_map"]
    assert anomaly_map.shape == (2, 64, 64)
    assert anomaly_map.min() >= 0.0 and anomaly_map.max() <= 1.0
    # one scale by hand: 1 - exp(-0.5 * mean_c z^2), upsampled, averaged over scales
    z0 = outputs[0][0]
    level0 = 1 - torch.exp(-0.5 * (z0**2).mean(dim=1, keepdim=True))
    level0 = torch.nn.functional.interpolate(level0, size=(64, 64), mode="bilinear")[:, 0]
    maps = model.model.anomaly_map(outputs)
    assert len(outputs) == 3
    assert not torch.allclose(maps, level0)
    assert prediction.scores.tolist() == pytest.approx(anomaly_map.reshape(2, -1).max(axis=1).tolist())


def test_layer_norms_fit_the_input_size_and_reject_others():
    model = create_algorithm("fastflow", tiny=True, input_size=96)
    assert [tuple(n.normalized_shape) for n in model.model.norms] == [(64, 24, 24), (128, 12, 12), (256, 6, 6)]
    with pytest.raises(ValueError, match=r"\(B, 3, 96, 96\)"):
        model.predict(_images(1, size=64))


def test_training_determinism_and_save_load(tmp_path):
    loader = [_images(4, seed=10)]
    test = _images(3, seed=12)
    models, losses = [], []
    for offset in range(2):
        torch.manual_seed(1234 + offset)  # the global random state must not matter
        model = create_algorithm("fastflow", tiny=True, seed=7)
        losses.append([model.fit_epoch(loader)["loss"] for _ in range(2)])
        models.append(model)
    first, second = losses[0]
    assert math.isfinite(first) and second < first  # the negative log-likelihood goes down
    assert losses[0] == losses[1] and int(models[0].epochs_done) == 2
    a, b = models[0].predict(test), models[1].predict(test)
    assert list(a.maps) == ["anomaly_map"]
    assert (a.scores == b.scores).all() and (a.maps["anomaly_map"] == b.maps["anomaly_map"]).all()
    untrained = [create_algorithm("fastflow", tiny=True, seed=s) for s in (7, 8)]
    assert not torch.equal(
        untrained[0].model.flows[0].steps[0].permutation, untrained[1].model.flows[0].steps[0].permutation
    )
    models[0].save(tmp_path / "ff")
    loaded = load_algorithm(tmp_path / "ff")
    c = loaded.predict(test)
    assert (c.scores == a.scores).all() and (c.maps["anomaly_map"] == a.maps["anomaly_map"]).all()


def test_mean_score_reduction_and_bad_hyperparameters():
    model = create_algorithm("fastflow", tiny=True, score_reduction="mean")
    p = model.predict(_images(2))
    assert p.scores.tolist() == pytest.approx(p.maps["anomaly_map"].mean(axis=(1, 2)).tolist(), rel=1e-5)
    with pytest.raises(ValueError, match="score_reduction"):
        create_algorithm("fastflow", tiny=True, score_reduction="median")
    with pytest.raises(ValueError, match="no images"):
        model.fit_epoch([])
    with pytest.raises(ValueError, match="expected images of shape"):
        model.fit_epoch([torch.zeros(2, 1, 64, 64)])

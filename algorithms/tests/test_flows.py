"""Conditional flow blocks (components/flows.py): exact invertibility and log-determinants
checked against autograd's Jacobian (``torch.autograd.functional.jacobian`` + ``slogdet``)."""

from __future__ import annotations

import pytest
import torch

from algorithms.components.flows import (
    AllInOneStep,
    ChannelLayerNorm,
    ConditionalAffineCoupling,
    ConditionalFlow,
    GlobalAffine,
    GlowCoupling,
    Permutation,
    SoftPermutation,
    atan_clamp,
    conv_ln_subnet,
    random_orthogonal,
    soft_clamp,
)


def _perturb(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter away from its initialisation so that no block is near the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _check(block: torch.nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> None:
    block = _perturb(block.double())
    for module in block.modules():
        if isinstance(module, SoftPermutation):  # orthogonal in float64, not a float32 rounding of it
            module.weight = random_orthogonal(module.channels, torch.Generator().manual_seed(5))
    x = x.double()
    cond = None if cond is None else cond.double()
    y, log_det = block(x, cond)
    assert y.shape == x.shape and log_det.shape == (x.shape[0],)
    # Exact invertibility.
    torch.testing.assert_close(block.inverse(y, cond), x, atol=1e-10, rtol=1e-10)
    # Log-determinant of each sample against autograd's Jacobian.
    for b in range(x.shape[0]):
        cond_b = None if cond is None else cond[b : b + 1]

        def f(flat, b=b, cond_b=cond_b):
            return block(flat.view_as(x[b : b + 1]), cond_b)[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(f, x[b : b + 1].reshape(-1), vectorize=True)
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(log_det[b], logabs, atol=1e-9, rtol=1e-9)
    assert not torch.allclose(log_det, torch.zeros_like(log_det)) or isinstance(block, (Permutation, SoftPermutation))


GEN = torch.Generator().manual_seed(1)
FIBRES = torch.randn(3, 5, generator=GEN)
FIBRE_COND = torch.randn(3, 4, generator=GEN)
MAPS = torch.randn(2, 5, 2, 2, generator=GEN)
MAP_COND = torch.randn(2, 2, 2, 2, generator=GEN)


def _replicate_subnet(in_channels: int, out_channels: int) -> torch.nn.Module:
    # A subnet other than the built-in ones (replicate padding, tanh), as AST's teacher passes its own.
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, 3, 3, padding=1, padding_mode="replicate"),
        torch.nn.Tanh(),
        torch.nn.Conv2d(3, out_channels, 3, padding=1, padding_mode="replicate"),
    )


@pytest.mark.parametrize(
    ("make", "x", "cond"),
    [
        (lambda: ConditionalAffineCoupling(5, cond_channels=4, subnet="fc"), FIBRES, FIBRE_COND),
        (lambda: ConditionalAffineCoupling(5, subnet="fc"), FIBRES, None),
        (lambda: ConditionalAffineCoupling(5, cond_channels=2, subnet="conv"), MAPS, MAP_COND),
        (lambda: GlobalAffine(5), FIBRES, None),
        (lambda: GlobalAffine(5), MAPS, None),
        (lambda: SoftPermutation(5, generator=torch.Generator().manual_seed(0)), FIBRES, None),
        (lambda: SoftPermutation(5, generator=torch.Generator().manual_seed(0)), MAPS, None),
        (lambda: Permutation(5, generator=torch.Generator().manual_seed(0)), MAPS, None),
        (lambda: AllInOneStep(5, cond_channels=4, subnet="fc", permute_soft=True), FIBRES, FIBRE_COND),
        (lambda: AllInOneStep(5, cond_channels=2, subnet="conv", permute_soft=False), MAPS, MAP_COND),
        (lambda: ConditionalAffineCoupling(5, cond_channels=2, subnet="conv_ln", hidden_ratio=1.0), MAPS, MAP_COND),
        (lambda: ConditionalFlow(5, steps=2, cond_channels=2, subnet="conv_ln", permute_soft=False), MAPS, MAP_COND),
        (lambda: ConditionalFlow(5, steps=3, cond_channels=4, subnet="fc"), FIBRES, FIBRE_COND),
        (lambda: GlowCoupling(5, cond_channels=4, subnet="fc"), FIBRES, FIBRE_COND),
        (lambda: GlowCoupling(5, cond_channels=2, subnet="conv", kernel_size=3), MAPS, MAP_COND),
        (lambda: GlowCoupling(4, subnet="conv", kernel_size=1), MAPS[:, :4], None),
        (lambda: GlowCoupling(5, cond_channels=2, subnet="conv", subnet_factory=_replicate_subnet), MAPS, MAP_COND),
    ],
    ids=[
        "coupling-fc-cond",
        "coupling-fc",
        "coupling-conv-cond",
        "global-affine-fibres",
        "global-affine-maps",
        "soft-permutation-fibres",
        "soft-permutation-maps",
        "permutation",
        "all-in-one-fc-soft",
        "all-in-one-conv-hard",
        "coupling-conv-ln-cond",
        "conditional-flow-conv-ln",
        "conditional-flow",
        "glow-fc-cond",
        "glow-conv-cond",
        "glow-conv",
        "glow-own-subnet",
    ],
)
def test_block_is_invertible_with_exact_log_det(make, x, cond):
    torch.manual_seed(0)
    _check(make(), x, cond)


def test_random_orthogonal_is_special_orthogonal_and_seeded():
    q = random_orthogonal(7, torch.Generator().manual_seed(3))
    torch.testing.assert_close(q @ q.T, torch.eye(7, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.linalg.det(q) == pytest.approx(1.0, abs=1e-10)
    torch.testing.assert_close(q, random_orthogonal(7, torch.Generator().manual_seed(3)))
    assert not torch.allclose(q, random_orthogonal(7, torch.Generator().manual_seed(4)))


def test_clamps_and_initial_global_affine():
    s = torch.tensor([-100.0, -1.0, 0.0, 0.5, 100.0])
    torch.testing.assert_close(soft_clamp(s, 1.9), 1.9 * torch.tanh(s))
    # 0.636 ~ 2/pi: the arctan clamp tends to about +-clamp and has slope 0.636 at zero.
    out = atan_clamp(torch.tensor([-1e9, 0.0]), 3.0)
    assert out[0] == pytest.approx(-3.0 * 0.636 * torch.pi / 2, rel=1e-6) and out[1] == 0
    assert atan_clamp(torch.tensor(1e-4), 3.0) == pytest.approx(0.636e-4, rel=1e-6)
    affine = GlobalAffine(3)
    x = torch.randn(2, 3, 4)
    y, log_det = affine(x)
    torch.testing.assert_close(y, x)  # identity at initialisation, as FrEIA's global_affine_init=1
    torch.testing.assert_close(log_det, torch.zeros(2), atol=1e-6, rtol=0)


def test_condition_and_shape_errors_are_clear():
    block = AllInOneStep(4, cond_channels=3, subnet="fc")
    with pytest.raises(ValueError, match="needs a condition"):
        block(torch.randn(2, 4))
    with pytest.raises(ValueError, match="condition shape"):
        block(torch.randn(2, 4), torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"expected \(B, 4\)"):
        block(torch.randn(2, 5), torch.randn(2, 3))
    with pytest.raises(ValueError, match="without a condition"):
        ConditionalAffineCoupling(4)(torch.randn(2, 4), torch.randn(2, 1))
    with pytest.raises(ValueError, match="subnet must be"):
        ConditionalAffineCoupling(4, subnet="mlp")
    with pytest.raises(ValueError, match="at least 2 channels"):
        GlowCoupling(1)
    with pytest.raises(ValueError, match="subnet must be"):
        GlowCoupling(4, subnet="mlp", subnet_factory=_replicate_subnet)


def test_glow_coupling_builds_both_subnets_with_the_factory():
    shapes = []

    def factory(in_channels, out_channels):
        shapes.append((in_channels, out_channels))
        return _replicate_subnet(in_channels, out_channels)

    block = GlowCoupling(5, cond_channels=2, subnet="conv", subnet_factory=factory)
    # subnet2 reads x2 (3 channels) + condition and writes s, t for x1 (2 channels); subnet1 the converse.
    assert shapes == [(3 + 2, 2 * 2), (2 + 2, 2 * 3)]
    assert block.subnet2[0].padding_mode == "replicate"


def test_all_in_one_parameter_count_matches_cflow_subnet():
    # CFlow-AD (cflow-ad model.py subnet_fc): Linear(C/2 + P, 2 (C/2 + P)) -> ReLU -> Linear(., C),
    # plus FrEIA's global scale and offset (C each). C = 512 (WRN50 layer2), P = 128.
    step = AllInOneStep(512, cond_channels=128, subnet="fc")
    d = 256 + 128
    expected = (d * 2 * d + 2 * d) + (2 * d * 512 + 512) + 2 * 512
    assert sum(p.numel() for p in step.parameters() if p.requires_grad) == expected


def test_channel_layer_norm_normalises_each_position_over_channels():
    # MSFlow's subnets: LayerNorm over the channels of (B, C, H, W) maps, each position on its own.
    norm = ChannelLayerNorm(6)
    x = torch.randn(2, 6, 3, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1
    y = norm(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 3, 4), atol=1e-3, rtol=0)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(y, expected)
    with pytest.raises(ValueError, match="expected \\(B, C, H, W\\)"):
        norm(torch.randn(2, 6))
    # conv_ln_subnet: Conv(in, hidden) -> LayerNorm(hidden) -> ReLU -> Conv(hidden, out).
    subnet = conv_ln_subnet(5, 8, 7)
    expected_count = (5 * 7 * 9 + 7) + 2 * 7 + (7 * 8 * 9 + 8)
    assert sum(p.numel() for p in subnet.parameters()) == expected_count
    assert subnet(torch.randn(1, 5, 4, 4)).shape == (1, 8, 4, 4)

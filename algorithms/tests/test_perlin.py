"""Perlin-noise masks: determinism under a seed, value range, shapes, threshold, rotation."""

from __future__ import annotations

import pytest
import torch

from algorithms.components.perlin import next_power_of_two, perlin_masks, perlin_noise


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_next_power_of_two():
    assert [next_power_of_two(n) for n in (1, 2, 3, 36, 64, 65)] == [1, 2, 4, 64, 64, 128]
    with pytest.raises(ValueError):
        next_power_of_two(0)


@pytest.mark.parametrize("size", [(64, 64), (36, 36), (17, 50), (1, 8)])
def test_noise_shape_dtype_and_range(size):
    for seed in range(5):
        noise = perlin_noise(*size, generator=_gen(seed))
        assert noise.shape == size and noise.dtype == torch.float32
        assert noise.abs().max() <= 1.0 + 1e-6


def test_noise_is_deterministic_under_a_seed_and_differs_across_seeds():
    a = perlin_masks(4, 36, 36, threshold=0.2, generator=_gen(3))
    b = perlin_masks(4, 36, 36, threshold=0.2, generator=_gen(3))
    assert torch.equal(a, b)
    noise = [perlin_noise(32, 32, generator=_gen(s), res=(4, 4)) for s in (1, 2)]
    assert not torch.equal(noise[0], noise[1])
    # the global RNG plays no part
    torch.manual_seed(0)
    c = perlin_masks(4, 36, 36, threshold=0.2, generator=_gen(3))
    torch.manual_seed(1)
    assert torch.equal(c, a)


def test_noise_vanishes_on_the_lattice_and_varies_between():
    """Gradient noise is 0 at every lattice point (the corner offsets are 0 there)."""
    noise = perlin_noise(32, 32, generator=_gen(0), res=(4, 2))  # cells of 8 x 16 px, no resize
    assert torch.allclose(noise[::8, ::16], torch.zeros(4, 2), atol=1e-7)
    assert noise.abs().max() > 0.05


def test_lattice_resolution_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="powers of two"):
        perlin_noise(32, 32, generator=_gen(), res=(3, 4))
    with pytest.raises(ValueError, match="positive"):
        perlin_noise(0, 32, generator=_gen())


def test_masks_are_binary_with_the_asked_shape_and_device():
    masks = perlin_masks(6, 20, 28, threshold=0.2, generator=_gen(1))
    assert masks.shape == (6, 1, 20, 28) and masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert masks.sum() > 0
    assert perlin_masks(0, 8, 8, threshold=0.5, generator=_gen()).shape == (0, 1, 8, 8)


def test_threshold_behaviour():
    low = perlin_masks(8, 32, 32, threshold=0.0, generator=_gen(5))
    mid = perlin_masks(8, 32, 32, threshold=0.2, generator=_gen(5))
    high = perlin_masks(8, 32, 32, threshold=0.6, generator=_gen(5))
    # same noise, higher threshold: nested masks, strictly smaller area overall
    assert torch.all(high <= mid) and torch.all(mid <= low)
    assert high.sum() < mid.sum() < low.sum()
    # at threshold 0 about half the canvas is covered (noise is symmetric about 0)
    assert 0.3 < low.mean() < 0.7
    assert perlin_masks(4, 16, 16, threshold=1.0, generator=_gen()).sum() == 0
    assert perlin_masks(4, 16, 16, threshold=-1.01, generator=_gen()).mean() == 1
    with pytest.raises(ValueError, match="finite"):
        perlin_masks(1, 8, 8, threshold=float("nan"), generator=_gen())


def test_rotation_is_seeded_and_rotates():
    straight = perlin_noise(64, 64, generator=_gen(7), res=(1, 8))
    rotated = perlin_noise(64, 64, generator=_gen(7), res=(1, 8), rotate=True)
    again = perlin_noise(64, 64, generator=_gen(7), res=(1, 8), rotate=True)
    assert torch.equal(rotated, again)
    assert not torch.allclose(straight, rotated)
    assert rotated.abs().max() <= 1.0 + 1e-6
    # res (1, 8): stripes vary along x only; after a rotation they also vary along y
    assert (straight[:, 32] - straight[:, 32].mean()).abs().max() < 0.6
    assert (rotated - straight).abs().max() > 0.1

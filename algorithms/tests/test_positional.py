"""The 2-D sinusoidal positional encoding against its formula on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.components.positional import positional_encoding_2d


def test_four_channels_are_sin_cos_of_column_then_row():
    # D = 4: d = 2, one frequency w_0 = 1: P = [sin x, cos x, sin y, cos y]
    pe = positional_encoding_2d(4, 2, 3)
    assert pe.shape == (4, 2, 3) and pe.dtype == torch.float32
    x = torch.tensor([0.0, 1.0, 2.0])
    for row in range(2):
        torch.testing.assert_close(pe[0, row], x.sin())
        torch.testing.assert_close(pe[1, row], x.cos())
    torch.testing.assert_close(pe[2, :, 0], torch.tensor([0.0, math.sin(1.0)]))
    torch.testing.assert_close(pe[3, :, 2], torch.tensor([1.0, math.cos(1.0)]))


def test_eight_channels_use_the_second_frequency_ten_thousand_to_minus_half():
    # D = 8: d = 4, w_1 = exp(-2 ln(1e4) / 4) = 0.01
    pe = positional_encoding_2d(8, 3, 5, dtype=torch.float64)
    assert pe[2, 0, 4].item() == pytest.approx(math.sin(0.04), abs=1e-15)  # sin(0.01 x), x = 4
    assert pe[3, 0, 4].item() == pytest.approx(math.cos(0.04), abs=1e-15)
    assert pe[6, 2, 0].item() == pytest.approx(math.sin(0.02), abs=1e-15)  # sin(0.01 y), y = 2
    assert pe[7, 2, 3].item() == pytest.approx(math.cos(0.02), abs=1e-15)
    assert pe[4, 2, 1].item() == pytest.approx(math.sin(2.0), abs=1e-15)
    # column channels do not depend on the row and vice versa
    assert torch.equal(pe[:4], pe[:4, :1].expand(4, 3, 5))
    assert torch.equal(pe[4:], pe[4:, :, :1].expand(4, 3, 5))


def test_general_formula_and_range():
    d, h, w = 64, 7, 9
    pe = positional_encoding_2d(d, h, w, dtype=torch.float64)
    half = d // 2
    for i in range(half // 2):
        freq = 10_000 ** (-2 * i / half)
        assert pe[2 * i + 1, 3, 8].item() == pytest.approx(math.cos(8 * freq), abs=1e-12)
        assert pe[half + 2 * i, 6, 0].item() == pytest.approx(math.sin(6 * freq), abs=1e-12)
    assert pe.abs().max() <= 1.0


@pytest.mark.parametrize("channels", [0, 2, 6, 10, 3.0])
def test_channels_must_be_a_positive_multiple_of_four(channels):
    with pytest.raises(ValueError, match="multiple of 4"):
        positional_encoding_2d(channels, 4, 4)


def test_grid_must_not_be_empty():
    with pytest.raises(ValueError, match="at least 1"):
        positional_encoding_2d(8, 0, 4)

"""The shared patch embedding (``components/patch_embedding.py``) against the reference formulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from algorithms.components.patch_embedding import adaptive_avg_pool_channels, patch_embedding


@pytest.mark.parametrize(
    ("length", "size"), [(1152, 384), (1152, 1024), (2304, 1024), (2048, 1024), (10, 7), (5, 12), (7, 7), (13, 1)]
)
def test_channel_pooling_is_adaptive_avg_pool1d(length, size):
    """The gather-based pooling of the channel-first tensor equals ``F.adaptive_avg_pool1d`` of
    each position's channel vector (the reference code's formulation): same windows (even,
    uneven, overlapping, upsampling), same sums."""
    x = torch.randn(2, length, 9, generator=torch.Generator().manual_seed(length + size))
    expected = F.adaptive_avg_pool1d(x.transpose(1, 2).reshape(-1, 1, length), size).reshape(2, 9, size)
    ours = adaptive_avg_pool_channels(x, size)
    assert ours.shape == (2, size, 9)
    torch.testing.assert_close(ours, expected.transpose(1, 2), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="at least 1"):
        adaptive_avg_pool_channels(x, 0)
    with pytest.raises(ValueError, match=r"\(B, L, N\)"):
        adaptive_avg_pool_channels(x[0], 3)


def _reference(features, p, pre_dim, target_dim):
    """The reference code's order of operations (patchcore-inspection ``PatchMaker.patchify``,
    ``Preprocessing``, ``Aggregator``): unfold each layer at its own resolution, upsample the
    *unpooled* patches of deeper layers, pool each layer, stack layer-major, pool again."""
    b = features[0].shape[0]
    h, w = features[0].shape[-2:]
    per_layer = []
    for feature in features:
        _, c, fh, fw = feature.shape
        patches = F.unfold(feature, kernel_size=p, padding=(p - 1) // 2).reshape(b, c * p * p, fh, fw)
        if (fh, fw) != (h, w):
            patches = F.interpolate(patches, size=(h, w), mode="bilinear", align_corners=False)
        patches = patches.permute(0, 2, 3, 1).reshape(-1, 1, c * p * p)
        per_layer.append(F.adaptive_avg_pool1d(patches, pre_dim)[:, 0])
    stacked = torch.stack(per_layer, dim=1).reshape(b * h * w, 1, -1)
    return F.adaptive_avg_pool1d(stacked, target_dim).reshape(b, h, w, target_dim)


@pytest.mark.parametrize(("p", "pre_dim", "target_dim"), [(3, 96, 80), (3, 100, 70), (1, 40, 40), (5, 64, 128)])
def test_patch_embedding_is_the_reference_locally_aware_patch_feature(p, pre_dim, target_dim):
    generator = torch.Generator().manual_seed(p + pre_dim)
    features = [torch.randn(2, 16, 8, 8, generator=generator), torch.randn(2, 24, 4, 4, generator=generator)]
    ours = patch_embedding(features, patch_size=p, pretrain_embed_dim=pre_dim, target_embed_dim=target_dim)
    assert ours.shape == (2, 8, 8, target_dim) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, _reference(features, p, pre_dim, target_dim), rtol=1e-5, atol=1e-6)


def test_a_constant_map_embeds_to_its_constant_away_from_the_zero_padded_border():
    features = [torch.full((1, 4, 6, 6), 2.0), torch.full((1, 8, 6, 6), 2.0)]
    out = patch_embedding(features, patch_size=3, pretrain_embed_dim=12, target_embed_dim=6)
    torch.testing.assert_close(out[:, 1:-1, 1:-1], torch.full((1, 4, 4, 6), 2.0))
    assert out[0, 0, 0].max() < 2.0  # the 3x3 window of a corner holds 5 padded zeros of 9


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        ([], {}, "empty"),
        ([torch.zeros(2, 3, 4)], {}, r"\(B, C, h, w\)"),
        ([torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 2, 2)], {}, "batch size"),
        ([torch.zeros(1, 3, 4, 4)], {"patch_size": 2}, "odd"),
        ([torch.zeros(1, 3, 4, 4)], {"target_embed_dim": 0}, "at least 1"),
    ],
)
def test_bad_input_is_named(features, kwargs, message):
    arguments = {"patch_size": 3, "pretrain_embed_dim": 8, "target_embed_dim": 8} | kwargs
    with pytest.raises(ValueError, match=message):
        patch_embedding(features, **arguments)

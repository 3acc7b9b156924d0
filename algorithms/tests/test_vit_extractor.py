"""ViTFeatureExtractor: the tapped blocks against timm's own intermediates and a hand-run forward."""

from __future__ import annotations

import pytest
import timm
import torch

from algorithms.components.feature_extractor import PretrainedWeightsUnavailable
from algorithms.components.vit_extractor import ViTFeatureExtractor

TINY = {"depth": 4, "embed_dim": 32, "num_heads": 2}
REG = "vit_small_patch14_reg4_dinov2.lvd142m"
PLAIN = "vit_small_patch14_dinov2.lvd142m"


def _extractor(backbone: str = REG, blocks=(1, 3), *, size: int = 56, norm: bool = False, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return ViTFeatureExtractor(backbone, blocks, input_size=size, pretrained=False, norm=norm, model_kwargs=TINY, **kw)


def _full_model(extractor: ViTFeatureExtractor, backbone: str, size: int) -> torch.nn.Module:
    """An untruncated timm model of the same architecture holding the extractor's weights."""
    full = timm.create_model(backbone, pretrained=False, img_size=size, num_classes=0, **TINY).eval()
    missing, unexpected = full.load_state_dict(extractor.model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("blocks.") for k in missing)  # only the untapped deeper blocks
    return full


@pytest.mark.parametrize(("backbone", "prefix"), [(REG, 5), (PLAIN, 1)])
@pytest.mark.parametrize("norm", [False, True])
def test_taps_equal_timm_forward_intermediates(backbone, prefix, norm):
    extractor = _extractor(backbone, blocks=(3, 1), norm=norm)
    assert extractor.num_prefix_tokens == prefix and extractor.grid_size == (4, 4)
    assert extractor.block_indices == [3, 1] and len(extractor.model.blocks) == 4
    images = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    full = _full_model(extractor, backbone, 56)
    with torch.no_grad():
        expected = full.forward_intermediates(
            images, indices=[3, 1], norm=norm, intermediates_only=True, return_prefix_tokens=True
        )
    # forward_intermediates returns them in block order
    by_block = {1: expected[0], 3: expected[1]}
    tokens = extractor.forward_tokens(images)
    maps = extractor(images)
    for out_tokens, out_map, block in zip(tokens, maps, (3, 1)):
        spatial, prefix_tokens = by_block[block]
        assert out_tokens.shape == (2, prefix + 16, 32) and out_map.shape == (2, 32, 4, 4)
        torch.testing.assert_close(out_map, spatial, rtol=0, atol=1e-6)
        torch.testing.assert_close(out_tokens[:, :prefix], prefix_tokens, rtol=0, atol=1e-6)


def test_taps_equal_running_the_blocks_by_hand():
    extractor = _extractor(REG, blocks=(0, 2))
    full = _full_model(extractor, REG, 56)
    images = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # DINOv2 with registers: [cls, 4 registers, 16 patches], patch tokens get the positional
        # embedding (timm folds the class token's into the token itself: no_embed_class).
        patches = full.patch_embed.proj(images).flatten(2).transpose(1, 2) + full.pos_embed
        x = torch.cat([full.cls_token, full.reg_token, patches], dim=1)
        outputs = []
        for block in full.blocks:
            x = x + block.ls1(block.attn(block.norm1(x)))
            x = x + block.ls2(block.mlp(block.norm2(x)))
            outputs.append(x)
    tokens = extractor.forward_tokens(images)
    torch.testing.assert_close(tokens[0], outputs[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(tokens[1], outputs[2], rtol=0, atol=1e-5)
    # the patch map is the token sequence without its 5 prefix tokens, row-major over the grid
    grid = extractor(images)[1]
    assert torch.equal(grid[0, :, 1, 2], tokens[1][0, 5 + 1 * 4 + 2])


def test_negative_indices_and_publication_shapes():
    # Dinomaly: ViT-B/14 with registers at 392 px: a 28 x 28 grid of 768-d tokens plus 5 prefix tokens.
    # Built on the meta device: shapes without the cost of initialising 86M parameters.
    with torch.device("meta"):
        extractor = ViTFeatureExtractor(
            "vit_base_patch14_reg4_dinov2.lvd142m", [2, 9], input_size=392, pretrained=False
        )
        maps = extractor(torch.zeros(1, 3, 392, 392))
    assert extractor.embed_dim == 768 and extractor.grid_size == (28, 28) and extractor.num_prefix_tokens == 5
    assert len(extractor.model.blocks) == 10  # blocks 10 and 11 are never run
    assert [tuple(m.shape) for m in maps] == [(1, 768, 28, 28)] * 2
    last = _extractor(PLAIN, blocks=(-1,))
    assert last.block_indices == [3]


def test_frozen_by_default_and_trainable_on_request():
    extractor = _extractor()
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.model.training  # stays in eval mode: no drop-path / dropout
    out = extractor(torch.randn(1, 3, 56, 56))
    assert not out[0].requires_grad
    trainable = _extractor(frozen=False)
    assert all(p.requires_grad for p in trainable.parameters())
    assert trainable(torch.randn(1, 3, 56, 56))[0].requires_grad


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        _extractor(size=50)
    with pytest.raises(ValueError, match="block index 4 is outside the model's 4 blocks"):
        _extractor(blocks=(4,))
    with pytest.raises(ValueError, match="at least one transformer block"):
        _extractor(blocks=())
    with pytest.raises(ValueError, match="not a timm VisionTransformer"):
        ViTFeatureExtractor("resnet18", [0], input_size=56, pretrained=False)
    extractor = _extractor()
    with pytest.raises(ValueError, match=r"expected 56 x 56 images"):
        extractor(torch.zeros(1, 3, 70, 70))


def test_weights_from_a_local_file_and_clear_errors(tmp_path):
    source = _extractor(seed=3)
    path = tmp_path / "vit.pth"
    torch.save(source.model.state_dict(), path)
    loaded = ViTFeatureExtractor(REG, (1, 3), input_size=56, pretrained=True, weights_path=str(path), model_kwargs=TINY)
    images = torch.randn(1, 3, 56, 56)
    for a, b in zip(source(images), loaded(images)):
        assert torch.equal(a, b)
    with pytest.raises(PretrainedWeightsUnavailable, match="not found"):
        ViTFeatureExtractor(REG, (1,), input_size=56, weights_path=str(tmp_path / "missing.pth"), model_kwargs=TINY)
    torch.save({"cls_token": torch.zeros(1, 1, 32)}, tmp_path / "partial.pth")
    with pytest.raises(PretrainedWeightsUnavailable, match="does not fit"):
        ViTFeatureExtractor(REG, (1,), input_size=56, weights_path=str(tmp_path / "partial.pth"), model_kwargs=TINY)


def test_missing_hub_weights_say_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PretrainedWeightsUnavailable, match="weights_path=") as info:
        ViTFeatureExtractor(REG, (1,), input_size=56, pretrained=True, model_kwargs=TINY)
    assert REG in str(info.value)

"""MemSeg: shapes at 256 px, trainable parameter counts, the loss by hand, seeded synthesis, memory."""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.components.texture import TextureSource
from algorithms.memseg.detector import MemSeg, memseg_loss
from algorithms.memseg.model import MSFF, MemoryModule, synthesize_anomalies, warmup_cosine_lr


def conv(ci: int, co: int, k: int) -> int:
    return ci * co * k * k + co


def bn(c: int) -> int:
    return 2 * c


def coord_att(c: int) -> int:  # Hou et al. 2021: reduction 32, >= 8 mid channels
    mid = max(8, c // 32)
    return conv(c, mid, 1) + bn(mid) + 2 * conv(mid, c, 1)


def msff_block(c: int) -> int:  # Conv3x3(C, C) * CoordAtt(C) -> Conv3x3(C, C/2) -> Conv3x3(C/2, C/2)
    return conv(c, c, 3) + coord_att(c) + conv(c, c // 2, 3) + conv(c // 2, c // 2, 3)


def upconv(ci: int, co: int) -> int:  # Upsample + Conv3x3 + BN + ReLU
    return conv(ci, co, 3) + bn(co)


def n_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def publication() -> MemSeg:
    return MemSeg(pretrained=False, backbone="resnet18")


def test_trainable_parameters_per_module(publication):
    # ResNet-18 layer4 (He et al. 2016, table 1): two BasicBlocks 256 -> 512 (stride 2, 1x1
    # downsample) and 512 -> 512; stem and layers 1-3 frozen (MemSeg section 3.3).
    layer4 = (256 * 512 * 9 + 512 * 512 * 9 + 256 * 512 + 3 * bn(512)) + (2 * 512 * 512 * 9 + 2 * bn(512))
    assert layer4 == 8_393_728
    assert n_trainable(publication.model.extractor) == layer4
    # MSFF on the concatenated 128 / 256 / 512 channels, top-down Conv3x3 256 -> 128, 128 -> 64
    msff = msff_block(128) + msff_block(256) + msff_block(512) + conv(256, 128, 3) + conv(128, 64, 3)
    assert n_trainable(publication.model.msff) == msff
    # U-Net decoder (TooTouch/MemSeg, shared/reference/algorithms-next.md A10)
    decoder = (
        upconv(512, 256) + upconv(512, 128) + upconv(256, 64) + upconv(128, 48) + conv(64, 48, 3)
        + upconv(96, 48) + conv(48, 2, 3)
    )  # fmt: skip
    assert n_trainable(publication.model.decoder) == decoder
    assert n_trainable(publication.model.memory) == 0


def test_module_shapes_at_256(publication):
    model = publication.model
    images = torch.randn(2, 3, 256, 256)
    stem, *levels, deep = model.extractor(images)
    assert [tuple(f.shape[1:]) for f in levels] == [(64, 64, 64), (128, 32, 32), (256, 16, 16)]
    assert tuple(stem.shape[1:]) == (64, 128, 128) and tuple(deep.shape[1:]) == (512, 8, 8)
    model.memory.fill([f[:1] for f in levels])
    concatenated = model.memory.select(levels)
    assert [tuple(f.shape[1:]) for f in concatenated] == [(128, 64, 64), (256, 32, 32), (512, 16, 16)]
    fused = model.msff(concatenated)
    assert [tuple(f.shape[1:]) for f in fused] == [(64, 64, 64), (128, 32, 32), (256, 16, 16)]
    assert tuple(model.decoder(deep, stem, fused).shape) == (2, 2, 256, 256)


def test_loss_hand_computed():
    # pixel A: logits (0, 0) -> p = 0.5, mask 1; pixel B: logits (0, ln 3) -> p = 0.75, mask 0
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])  # (1, 2, 1, 2)
    masks = torch.tensor([[[[1.0, 0.0]]]])
    l1 = (0.5 + 0.75) / 2
    focal = (-(0.5**4) * math.log(0.5) - (0.75**4) * math.log(0.25)) / 2
    assert memseg_loss(logits, masks).item() == pytest.approx(0.6 * l1 + 0.4 * focal, rel=1e-6)
    with pytest.raises(ValueError, match="logits"):
        memseg_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2))


def test_synthesis_is_seeded_and_local():
    images = torch.rand(3, 3, 64, 64)
    structure = TextureSource(None, fallback="structure")

    def run(seed):
        return synthesize_anomalies(images, torch.Generator().manual_seed(seed), textures=None, structure=structure)

    (a, ma), (b, mb), (c, _) = run(1), run(1), run(2)
    assert torch.equal(a, b) and torch.equal(ma, mb) and not torch.equal(a, c)
    assert ma.shape == (3, 1, 64, 64) and set(ma.unique().tolist()) <= {0.0, 1.0} and ma.sum() > 0
    assert torch.equal(a * (1 - ma), images * (1 - ma))  # only the masked region changes
    assert a.min() >= 0 and a.max() <= 1


def test_memory_picks_the_nearest_sample_and_attention_follows_differences():
    memory = MemoryModule(3)
    bank = [torch.randn(4, c, s, s) for c, s in ((8, 8), (16, 4), (32, 2))]
    memory.fill(bank)
    query = [f[2:3] + 0.01 * torch.randn_like(f[2:3]) for f in bank]
    assert memory.nearest(query).tolist() == [2]
    exact = memory.select([f[1:2] for f in bank])
    assert all(torch.equal(x[:, x.shape[1] // 2 :], torch.zeros_like(x[:, x.shape[1] // 2 :])) for x in exact)
    # zero differences give zero spatial attention, hence zero fused features
    with torch.no_grad():
        assert all(float(f.abs().max()) == 0 for f in MSFF((8, 16, 32))(exact))
    with pytest.raises(RuntimeError, match="memory bank is empty"):
        MemoryModule(3).nearest(query)


def test_schedule():
    lr = [warmup_cosine_lr(s, base=3e-3, minimum=1e-4, total=5000, warmup=500) for s in (0, 250, 500, 2750, 5000)]
    assert lr == pytest.approx([1e-4, 1.55e-3, 3e-3, 1.55e-3, 1e-4])


def test_training_keeps_frozen_stages_and_fills_memory():
    detector = MemSeg(input_size=64, backbone="resnet18", pretrained=False, memory_samples=3, top_k=10, steps=1,
                      warmup_steps=0)  # fmt: skip
    frozen = {k: v.clone() for k, v in detector.model.extractor.state_dict().items() if ".layer4." not in f".{k}"}
    deep = detector.model.extractor.model.layer4[0].conv1.weight.clone()
    loader = [torch.randn(2, 3, 64, 64) for _ in range(3)]
    detector.fit_epoch(loader)
    assert detector.model.memory.size == 3 and int(detector.steps_done) == 1
    state = detector.model.extractor.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    assert not torch.equal(detector.model.extractor.model.layer4[0].conv1.weight, deep)
    assert detector.fit_epoch(loader) == {"steps_done": 1.0}  # the step budget is spent


@pytest.mark.parametrize(
    "kwargs",
    [{"input_size": 48}, {"memory_samples": 0}, {"warmup_steps": 5000}, {"transparency": (0.5, 0.2)}, {"min_lr": 1.0}],
)
def test_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="memseg"):
        MemSeg(pretrained=False, backbone="resnet18", **kwargs)

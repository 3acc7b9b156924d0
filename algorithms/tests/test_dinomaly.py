"""Dinomaly: shapes and parameters, linear attention, the hard-mining loss, StableAdamW, the lr schedule,
the map, and anomalib 2.7 as oracle (same backbone, copied weights)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms.components.optim import StableAdamW
from algorithms.dinomaly.detector import Dinomaly
from algorithms.dinomaly.model import (
    LinearAttention,
    anomaly_map,
    box_gaussian_blur,
    count_parameters,
    hard_mining_cosine_loss,
    warm_cosine_lr,
)
from algorithms.registry import create_algorithm


def _images(n: int, size: int = 56, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- the publication configuration -------------------------------------------------------------


def test_publication_shapes_and_trainable_parameters():
    """ViT-B/14-reg encoder at 392 px: two groups of 768 x 28 x 28 maps.

    Trainable parameters from the official architecture (``dinomaly_mvtec_sep.py``: ``bMlp(768, 3072,
    768)`` with biases, 8 ``Block``s of width 768, MLP ratio 4, qkv bias, LayerNorms): bottleneck
    768*3072 + 3072 + 3072*768 + 768 = 4,722,432; a decoder block 2 LayerNorms (2*1536), qkv
    768*2304 + 2304, projection 768*768 + 768, MLP 768*3072 + 3072 + 3072*768 + 768 = 7,087,872
    (= 12 C^2 + 13 C); in all 4,722,432 + 8 * 7,087,872 = 61,425,408 (the reference notes: ~62M).
    """
    with torch.device("meta"):
        model = Dinomaly(pretrained=False)
        encoder, decoder = model.model(torch.zeros(2, 3, 392, 392))
    assert [tuple(m.shape) for m in encoder + decoder] == [(2, 768, 28, 28)] * 4
    assert count_parameters(model.model.bottleneck) == 4_722_432
    assert count_parameters(model.model.decoder[0]) == 7_087_872 == 12 * 768**2 + 13 * 768
    assert count_parameters(model) == 61_425_408
    assert model.model.encoder.block_indices == [2, 3, 4, 5, 6, 7, 8, 9]
    assert model.model.decoder[0].attn.num_heads == 12 and model.model.decoder[0].norm1.eps == 1e-8
    assert all(not p.requires_grad for p in model.model.encoder.parameters())


# -- building blocks ---------------------------------------------------------------------------


def test_linear_attention_equals_the_formula():
    torch.manual_seed(0)
    attention = LinearAttention(8, 2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    q, k, v = attention.qkv(x).reshape(2, 5, 3, 2, 4).unbind(2)  # (B, N, heads, d)
    phi = lambda t: torch.where(t > 0, t + 1, torch.exp(t))  # noqa: E731  elu(t) + 1
    out = torch.zeros(2, 5, 2, 4, dtype=torch.float64)
    for b in range(2):
        for h in range(2):
            for i in range(5):
                weights = torch.stack([phi(q[b, i, h]) @ phi(k[b, j, h]) for j in range(5)])
                out[b, i, h] = (weights[:, None] * v[b, :, h]).sum(0) / weights.sum()
    expected = attention.proj(out.reshape(2, 5, 8))
    torch.testing.assert_close(attention(x), expected, rtol=0, atol=1e-12)


def test_hard_mining_loss_by_hand():
    # one image, 2 channels, 1 x 2 points; one group
    e = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # points (1, 0) and (0, 1)
    d = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]]], requires_grad=True)  # (1, 0) and (1, 1)
    loss = hard_mining_cosine_loss([e], [d], p=0.0)
    # global cosine of (1, 0, 0, 1) and (1, 1, 0, 1): 2 / (sqrt 2 sqrt 3)
    assert math.isclose(float(loss), 1 - 2 / math.sqrt(6), rel_tol=1e-6)
    loss.backward()
    plain = d.grad.clone()
    # p = 0.5: k = int(2 * 0.5) = 1, the threshold is the largest point distance; the other point
    # (distance 0: (1, 0) vs (1, 0)) is easy and its gradient is multiplied by 0.1
    d.grad = None
    hard_mining_cosine_loss([e], [d], p=0.5, factor=0.1).backward()
    torch.testing.assert_close(d.grad[..., 0], 0.1 * plain[..., 0])
    torch.testing.assert_close(d.grad[..., 1], plain[..., 1])
    # two groups are averaged
    two = hard_mining_cosine_loss([e, e], [d, d.detach() * 0 + e], p=0.0)
    assert math.isclose(float(two), (1 - 2 / math.sqrt(6)) / 2, rel_tol=1e-6)


def test_loss_and_gradients_equal_anomalib():
    from anomalib.models.image.dinomaly.components import CosineHardMiningLoss

    generator = torch.Generator().manual_seed(0)
    encoder = [torch.randn(3, 16, 5, 5, generator=generator) for _ in range(2)]
    decoder = [torch.randn(3, 16, 5, 5, generator=generator) for _ in range(2)]
    for step in (0, 400, 5000):
        ours_d = [d.clone().requires_grad_() for d in decoder]
        theirs_d = [d.clone().requires_grad_() for d in decoder]
        p = min(0.9 * step / 1000, 0.9)
        ours = hard_mining_cosine_loss(encoder, ours_d, p=p, factor=0.1)
        # anomalib's hooks act on the tensors it is given: hand it views so the hooks reach our leaves
        theirs = CosineHardMiningLoss()(encoder, [d * 1.0 for d in theirs_d], global_step=step)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        ours.backward()
        theirs.backward()
        for a, b in zip(ours_d, theirs_d):
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-9)


def test_stable_adamw_first_step_by_hand_and_anomalib():
    # step 1, amsgrad: m = 0.1 g, v = 0.001 g^2, v_hat = g^2, d = |g| + eps, update = lr m / 0.1 / s / d
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    g = torch.tensor([0.5, -1.0, 2.0])
    p.grad = g.clone()
    lr, wd, eps = 0.01, 0.1, 1e-8
    StableAdamW([p], lr=lr, weight_decay=wd, amsgrad=True, eps=eps).step()
    d = g.abs() + eps
    rms = math.sqrt(float(((g / d) ** 2).mean()))  # = 1 (up to eps): no clipping
    expected = torch.tensor([1.0, -2.0, 0.5]) * (1 - lr * wd) - lr / max(1.0, rms) * g / d
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7)
    # the update clipping: a gradient that jumps (RMS(g / sqrt(v_hat)) > 1 at step 2) shrinks the step
    from anomalib.models.image.dinomaly.components import StableAdamW as Reference

    generator = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4, 3, generator=generator))
    b = torch.nn.Parameter(a.detach().clone())
    ours = StableAdamW([a], lr=2e-3, weight_decay=1e-4, amsgrad=True, eps=1e-8)
    theirs = Reference([b], lr=2e-3, weight_decay=1e-4, amsgrad=True, eps=1e-8)
    for step in range(6):
        grad = torch.randn(4, 3, generator=generator) * (10.0 if step == 3 else 1.0)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="betas"):
        StableAdamW([a], betas=(0.9, 1.0))


def test_warm_cosine_schedule_equals_the_official_table():
    base, final, total, warmup = 2e-3, 2e-4, 5000, 100
    iters = np.arange(total - warmup)
    table = np.concatenate(
        [np.linspace(0, base, warmup), final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))]
    )
    for step in (0, 1, 50, 99, 100, 101, 2550, 4999):
        assert math.isclose(
            warm_cosine_lr(step, base=base, final=final, total=total, warmup=warmup),
            table[step],
            rel_tol=1e-12,
            abs_tol=1e-15,
        )
    assert warm_cosine_lr(5000, base=base, final=final, total=total, warmup=warmup) == final


def test_map_and_blur_are_the_official_ones():
    generator = torch.Generator().manual_seed(0)
    e = [torch.randn(2, 8, 4, 4, generator=generator) for _ in range(2)]
    d = [torch.randn(2, 8, 4, 4, generator=generator) for _ in range(2)]
    maps = anomaly_map(e, d, 28)
    first = F.interpolate((1 - F.cosine_similarity(e[0], d[0]))[:, None], size=28, mode="bilinear", align_corners=True)
    second = F.interpolate((1 - F.cosine_similarity(e[1], d[1]))[:, None], size=28, mode="bilinear", align_corners=True)
    torch.testing.assert_close(maps, ((first + second) / 2)[:, 0])
    # the 5 x 5 kernel of get_gaussian_kernel(5, 4): exp(-|xy - 2|^2 / 32), normalised; zero padding
    ones = torch.ones(1, 9, 9)
    blurred = box_gaussian_blur(ones)
    assert torch.allclose(blurred[0, 2:-2, 2:-2], torch.ones(5, 5))
    grid = torch.arange(5.0) - 2
    kernel = torch.exp(-(grid[:, None] ** 2 + grid[None] ** 2) / 32)
    kernel /= kernel.sum()
    assert math.isclose(float(blurred[0, 0, 0]), float(kernel[2:, 2:].sum()), rel_tol=1e-6)


# -- the detector ------------------------------------------------------------------------------


def test_training_follows_the_schedule_and_stops():
    torch.manual_seed(0)
    model = create_algorithm("dinomaly", tiny=True, total_iters=3, warmup_iters=1)
    assert model.hard_mining_share(0) == 0.0 and model.hard_mining_share(500) == 0.45
    assert model.hard_mining_share(5000) == 0.9
    batches = list(_images(8).split(2))
    before = [p.detach().clone() for p in model.model.trainable_parameters()]
    logs = model.fit_epoch(batches)
    assert int(model.steps_done) == 3 and np.isfinite(logs["loss"])  # stops after total_iters
    after = list(model.model.trainable_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    # step 0 has lr 0 with warm-up (linspace starts at 0): the official first step changes nothing but decay
    assert model.learning_rate(0) == 0.0
    assert model.fit_epoch(batches) == {"steps_done": 3.0}
    prediction = model.predict(_images(2, seed=7))
    assert prediction.maps["anomaly_map"].shape == (2, 56, 56)
    flat = np.sort(prediction.maps["anomaly_map"].reshape(2, -1), axis=1)[:, ::-1]
    np.testing.assert_allclose(prediction.scores, flat[:, : int(56 * 56 * 0.01)].mean(axis=1), rtol=1e-6)


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="warmup_iters < total_iters"):
        create_algorithm("dinomaly", tiny=True, warmup_iters=4, total_iters=4)
    with pytest.raises(ValueError, match="fuse_layer_decoder group"):
        create_algorithm("dinomaly", tiny=True, fuse_layer_decoder=[[0, 1], [2, 9]])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        create_algorithm("dinomaly", tiny=True, input_size=60)


# -- anomalib 2.7 as oracle --------------------------------------------------------------------


def test_outputs_equal_anomalib_with_the_same_backbone(monkeypatch):
    """Same random ViT-S/14-reg encoder, anomalib's trainable weights copied into ours.

    Mapping: encoder timm state dict as is (positional embedding resampled as anomalib resamples it
    at each call); ``bottleneck.0.fc1/fc2`` -> ``bottleneck.fc1/fc2``; ``decoder.i.{norm1, attn.qkv,
    attn.proj, norm2, mlp.fc1, mlp.fc2}`` -> the same names. anomalib departs from the official code
    in two places, isolated here: (1) its bottleneck and decoder MLPs have no bias (the official
    ``bMlp`` / ``Mlp`` have): our biases are kept at 0, their initial value, which makes the two the
    same function; (2) its 5 x 5 blur pads by reflection (the official ``nn.Conv2d`` pads zeros), so
    the image score is compared through anomalib's own blur of our 256 x 256 map.
    """
    import timm
    from anomalib.models.components import GaussianBlur2d
    from anomalib.models.image.dinomaly import torch_model
    from anomalib.models.image.dinomaly.torch_model import DinomalyModel as Reference
    from timm.layers import resample_abs_pos_embed

    # anomalib hard-codes pretrained=True and reads the width from the encoder's name: the download
    # is turned off and the "small" architecture shrunk to width 32 (2 heads), the depth kept.
    small = {"embed_dim": 32, "num_heads": 2, "target_layers": [2, 3, 4, 5, 6, 7, 8, 9]}
    monkeypatch.setitem(torch_model.DINO_ARCHITECTURES, "small", small)
    create = timm.create_model
    monkeypatch.setattr(
        timm,
        "create_model",
        lambda name, pretrained=False, **kw: create(name, pretrained=False, embed_dim=32, num_heads=2, **kw),
    )
    torch.manual_seed(0)
    theirs = Reference(encoder_name="vit_small_patch14_reg4_dinov2").eval()
    monkeypatch.undo()
    size = 28
    ours = Dinomaly(
        input_size=size,
        pretrained=False,
        backbone="vit_small_patch14_reg4_dinov2.lvd142m",
        map_size=256,
        model_kwargs={"embed_dim": 32, "num_heads": 2},
    )
    ours.eval()
    encoder = {k: v for k, v in theirs.encoder.feature_extractor.state_dict().items() if not k.startswith("head")}
    encoder["pos_embed"] = resample_abs_pos_embed(encoder["pos_embed"], (2, 2), num_prefix_tokens=0, antialias=False)
    encoder = {k: v for k, v in encoder.items() if not k.startswith(("blocks.10.", "blocks.11.", "norm."))}
    ours.model.encoder.model.load_state_dict(encoder, strict=False)
    state = {
        k.replace("bottleneck.0.", "bottleneck."): v
        for k, v in theirs.state_dict().items()
        if k.startswith(("bottleneck.", "decoder."))
    }
    missing, unexpected = ours.model.load_state_dict(state, strict=False)
    assert not unexpected
    assert {k for k in missing if not k.startswith("encoder.")} == {
        f"{prefix}.{name}.bias"
        for prefix in ["bottleneck", *[f"decoder.{i}.mlp" for i in range(8)]]
        for name in ("fc1", "fc2")
    }
    images = _images(2, size, seed=3)
    with torch.no_grad():
        ref = theirs(images)
        en, de = ours.model(images)
        raw = anomaly_map(en, de, size)
    np.testing.assert_allclose(raw.numpy(), ref.anomaly_map[:, 0].numpy(), rtol=0, atol=1e-4)
    prediction = ours.predict(images)
    resized = F.interpolate(raw[:, None], size=256, mode="bilinear", align_corners=False)
    their_blur = GaussianBlur2d(sigma=4, channels=1, kernel_size=5)(resized).flatten(1)
    their_rule = their_blur.topk(int(256 * 256 * 0.01), dim=1).values.mean(dim=1)
    np.testing.assert_allclose(their_rule.numpy(), ref.pred_score.numpy(), rtol=0, atol=1e-4)
    ours_rule = box_gaussian_blur(resized[:, 0]).flatten(1).topk(int(256 * 256 * 0.01), dim=1).values.mean(dim=1)
    np.testing.assert_allclose(prediction.scores, ours_rule.numpy(), rtol=0, atol=1e-6)
    # the training losses agree too (same weights, dropout off for the comparison)
    ours.model.bottleneck.drop.p = 0.0
    for module in theirs.bottleneck.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    theirs.train()
    ours.train()
    loss_theirs = theirs(images, global_step=500)
    loss_ours = ours.training_loss(images, 500)
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=0, atol=1e-5)

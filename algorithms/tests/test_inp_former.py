"""INP-Former: shapes and parameters at the publication's size, the two attentions, both losses by hand,
the lr schedule, seeded INP initialisation, the detector. anomalib 2.7 as oracle: test_inp_former_anomalib.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algorithms.components.vit_reconstruction import count_parameters
from algorithms.inp_former.detector import InpFormer
from algorithms.inp_former.model import (
    InpExtractorBlock,
    InpGuidedDecoderBlock,
    PrototypeAttention,
    inp_coherence_loss,
    soft_mining_cosine_loss,
)
from algorithms.registry import create_algorithm


def _images(n: int, size: int = 56, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- the publication configuration -------------------------------------------------------------


def test_publication_shapes_and_trainable_parameters():
    """ViT-B/14-reg encoder at 392 px: two groups of 768 x 28 x 28 maps per side, 6 INPs of 768.

    Trainable parameters from the official architecture (luow23/INP-Former ``INP_Former_Single_Class.py``:
    ``Mlp(768, 3072, 768)`` bottleneck, one ``Aggregation_Block`` and 8 ``Prototype_Block`` of width 768,
    12 heads, MLP ratio 4, qkv bias, ``nn.Parameter(torch.randn(6, 768))`` INPs):
    bottleneck 768*3072 + 3072 + 3072*768 + 768 = 4,722,432; extractor block: 2 LayerNorms 2*1536, q
    768*768 + 768, kv 768*1536 + 1536, proj 768*768 + 768, MLP 4,722,432 = 7,087,872 (12 C^2 + 13 C);
    decoder block: the same plus ``learn_scale`` (12, 1, 1) = 7,087,884; INPs 6*768 = 4,608. In all
    4,722,432 + 7,087,872 + 8 * 7,087,884 + 4,608 = 68,517,984.
    """
    with torch.device("meta"):
        model = InpFormer(pretrained=False)
        images = torch.zeros(2, 3, 392, 392)
        taps = model.model.encoder.forward_tokens(images)
        encoder, decoder, coherence = model.model(images)
        fused = torch.zeros(2, 784, 768)
        prototypes = model.model.aggregation[0](model.model.prototype_token.expand(2, -1, -1), fused)
        decoded = model.model.decoder[0](fused, prototypes)
    assert [tuple(t.shape) for t in taps] == [(2, 5 + 784, 768)] * 8  # class + 4 registers + 28 x 28
    assert tuple(prototypes.shape) == (2, 6, 768) and tuple(decoded.shape) == (2, 784, 768)
    assert [tuple(m.shape) for m in encoder + decoder] == [(2, 768, 28, 28)] * 4 and coherence.shape == ()
    assert count_parameters(model.model.bottleneck) == 4_722_432
    assert count_parameters(model.model.aggregation[0]) == 7_087_872 == 12 * 768**2 + 13 * 768
    assert count_parameters(model.model.decoder[0]) == 7_087_884 == 12 * 768**2 + 13 * 768 + 12
    assert model.model.prototype_token.numel() == 4_608
    assert count_parameters(model) == 68_517_984
    assert sum(p.numel() for p in model.model.trainable_parameters()) == 68_517_984
    assert model.model.encoder.block_indices == [2, 3, 4, 5, 6, 7, 8, 9]
    assert len(model.model.decoder) == 8 and len(model.model.aggregation) == 1
    assert model.model.decoder[0].attn.num_heads == 12 and model.model.decoder[0].norm1.eps == 1e-8
    assert model.model.bottleneck.drop.p == 0.0  # the official bottleneck has no dropout
    assert all(not p.requires_grad for p in model.model.encoder.parameters())


# -- building blocks ---------------------------------------------------------------------------


def test_prototype_attention_equals_the_formula():
    """``ReLU(s_h cos(q_i, k_m)) v_m`` summed over the INPs, per head; no softmax, no normalisation."""
    torch.manual_seed(0)
    attention = PrototypeAttention(8, 2).double()
    with torch.no_grad():
        attention.learn_scale.copy_(torch.tensor([0.5, 2.0]).reshape(2, 1, 1))
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    p = torch.randn(2, 3, 8, dtype=torch.float64)
    q = attention.q(x).detach().reshape(2, 5, 2, 4)
    k, v = attention.kv(p).detach().reshape(2, 3, 2, 2, 4).unbind(2)  # (B, M, heads, d)
    out = torch.zeros(2, 5, 2, 4, dtype=torch.float64)
    for b in range(2):
        for h in range(2):
            for i in range(5):
                for m in range(3):
                    cos = float(q[b, i, h] @ k[b, m, h] / (q[b, i, h].norm() * k[b, m, h].norm()))
                    out[b, i, h] += max(0.0, attention.learn_scale[h].item() * cos) * v[b, m, h]
    expected = attention.proj(out.reshape(2, 5, 8))
    torch.testing.assert_close(attention(x, p), expected, rtol=0, atol=1e-12)


def test_extractor_block_is_softmax_cross_attention_with_residuals():
    torch.manual_seed(0)
    block = InpExtractorBlock(8, 2).double()
    prototypes = torch.randn(1, 3, 8, dtype=torch.float64)
    tokens = torch.randn(1, 7, 8, dtype=torch.float64)
    a, f = block.norm1(prototypes), block.norm1(tokens)  # one LayerNorm for both (official)
    q = block.attn.q(a).reshape(3, 2, 4)
    k, v = block.attn.kv(f).reshape(7, 2, 2, 4).unbind(1)
    heads = []
    for h in range(2):
        weights = torch.softmax(q[:, h] @ k[:, h].T / math.sqrt(4), dim=-1)  # (M, N), rows sum to 1
        heads.append(weights @ v[:, h])
    x = prototypes + block.attn.proj(torch.cat(heads, dim=-1))[None]
    expected = x + block.mlp(block.norm2(x))
    torch.testing.assert_close(block(prototypes, tokens), expected, rtol=0, atol=1e-12)


def test_decoder_block_has_no_residual_around_the_attention():
    """The attention's output replaces the tokens: with all INP values zero, the input is forgotten."""
    torch.manual_seed(0)
    block = InpGuidedDecoderBlock(8, 2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    p = torch.randn(2, 3, 8, dtype=torch.float64)
    y = block.attn(block.norm1(x), block.norm1(p))
    torch.testing.assert_close(block(x, p), y + block.mlp(block.norm2(y)), rtol=0, atol=1e-12)
    with torch.no_grad():
        block.attn.kv.weight[8:] = 0
        block.attn.kv.bias[8:] = 0  # v = 0 for every INP
    out = block(x, p)
    torch.testing.assert_close(out, out[:1, :1].expand_as(out))  # the same vector everywhere: x is gone


def test_inp_coherence_loss_by_hand():
    # tokens (1, 0) and (0, 1); INPs (1, 0) and (1, 1): distances min(0, 1 - 1/sqrt2) = 0 and
    # min(1, 1 - 1/sqrt2) = 1 - 1/sqrt2, mean (1 - 1/sqrt2) / 2
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    prototypes = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]], requires_grad=True)
    loss = inp_coherence_loss(tokens, prototypes)
    assert math.isclose(loss.item(), (1 - 1 / math.sqrt(2)) / 2, rel_tol=1e-6)
    loss.backward()  # only the nearest INP of each token gets a gradient; the first is already exact
    torch.testing.assert_close(prototypes.grad[0, 0], torch.zeros(2))
    assert prototypes.grad[0, 1].abs().sum() > 0
    # per image: INPs of one image do not serve another
    two = inp_coherence_loss(torch.cat([tokens, tokens]), torch.cat([prototypes.detach(), -prototypes.detach()]))
    # second image: INPs (-1, 0), (-1, -1): token (1, 0) -> min(2, 1 + 1/sqrt2), (0, 1) -> min(1, 1 + 1/sqrt2) = 1
    assert math.isclose(two.item(), ((1 - 1 / math.sqrt(2)) + (1 + 1 / math.sqrt(2)) + 1) / 4, rel_tol=1e-6)


def test_soft_mining_loss_by_hand():
    # one image, 2 channels, 1 x 2 points; encoder points (1, 0), (0, 1); decoder (1, 1), (0, 1)
    e = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    d = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]], requires_grad=True)
    loss = soft_mining_cosine_loss([e], [d])
    # value: the global cosine of (1, 0, 0, 1) and (1, 0, 1, 1): 2 / (sqrt 2 sqrt 3)
    assert math.isclose(loss.item(), 1 - 2 / math.sqrt(6), rel_tol=1e-6)
    loss.backward()
    weighted = d.grad.clone()
    plain_d = d.detach().clone().requires_grad_()
    (1 - torch.nn.functional.cosine_similarity(e.flatten(1), plain_d.flatten(1))).mean().backward()
    # point distances D = 1 - 1/sqrt2 and 0, mean D / 2: weights (2)^3 = 8 and 0
    torch.testing.assert_close(weighted[..., 0], 8 * plain_d.grad[..., 0])
    torch.testing.assert_close(weighted[..., 1], torch.zeros(1, 2, 1))
    # power 0: no mining (every weight 1)
    d.grad = None
    soft_mining_cosine_loss([e], [d], power=0).backward()
    torch.testing.assert_close(d.grad, plain_d.grad)
    # groups are averaged
    two = soft_mining_cosine_loss([e, e], [d, e.clone()])
    assert math.isclose(two.item(), (1 - 2 / math.sqrt(6)) / 2, rel_tol=1e-6)
    with pytest.raises(ValueError, match="as many encoder as decoder"):
        soft_mining_cosine_loss([e], [])


def test_training_loss_is_soft_mining_plus_weighted_coherence():
    model = create_algorithm("inp_former", tiny=True, coherence_weight=0.2)
    model.train()
    images = _images(2)
    encoder, decoder, coherence = model.model(images)
    expected = soft_mining_cosine_loss(encoder, decoder, power=3.0) + 0.2 * coherence
    torch.testing.assert_close(model.training_loss(images), expected)


# -- the detector ------------------------------------------------------------------------------


def test_seeded_inp_initialisation_is_deterministic():
    a = create_algorithm("inp_former", tiny=True, seed=3)
    b = create_algorithm("inp_former", tiny=True, seed=3)
    c = create_algorithm("inp_former", tiny=True, seed=4)
    assert torch.equal(a.model.prototype_token, b.model.prototype_token)
    assert not torch.equal(a.model.prototype_token, c.model.prototype_token)
    for x, y in zip(a.model.trainable_parameters(), b.model.trainable_parameters()):
        assert torch.equal(x, y)
    # standard-normal INPs (untouched by the trunc-normal initialisation), unit attention scales
    big = create_algorithm("inp_former", tiny=True, inp_num=2000)
    assert abs(big.model.prototype_token.std().item() - 1.0) < 0.02
    assert torch.equal(a.model.decoder[0].attn.learn_scale, torch.ones(2, 1, 1))
    assert a.model.decoder[0].mlp.fc1.weight.abs().max().item() <= 0.03


def test_schedule_spans_the_epochs_and_training_runs():
    torch.manual_seed(0)
    model = create_algorithm("inp_former", tiny=True, epochs=3, warmup_iters=2)
    batches = list(_images(8).split(2))  # 4 batches per epoch: 12 steps in all
    before = [p.detach().clone() for p in model.model.trainable_parameters()]
    logs = model.fit_epoch(batches)
    assert int(model.schedule_steps) == 12 and int(model.steps_done) == 4 and np.isfinite(logs["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.model.trainable_parameters()))
    h = model.hparams
    assert model.learning_rate(0) == 0.0 and model.learning_rate(1) == h["lr"]
    # cosine from lr to final_lr over the 10 steps after the warm-up, final_lr from step 12 on
    assert math.isclose(model.learning_rate(7), 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * 5 / 10)))
    assert model.learning_rate(12) == model.learning_rate(50) == 1e-4
    model.fit_epoch(batches[:1])  # a shorter later loader does not change the schedule
    assert int(model.schedule_steps) == 12 and int(model.steps_done) == 5
    prediction = model.predict(_images(2, seed=7))
    assert prediction.maps["anomaly_map"].shape == (2, 56, 56)
    flat = np.sort(prediction.maps["anomaly_map"].reshape(2, -1), axis=1)[:, ::-1]
    np.testing.assert_allclose(prediction.scores, flat[:, : int(56 * 56 * 0.01)].mean(axis=1), rtol=1e-6)
    # total_iters overrides the epochs
    fixed = create_algorithm("inp_former", tiny=True, total_iters=7, warmup_iters=0)
    fixed.fit_epoch(batches)
    assert int(fixed.schedule_steps) == 7


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="warmup_iters < total_iters"):
        create_algorithm("inp_former", tiny=True, warmup_iters=4, total_iters=4)
    with pytest.raises(ValueError, match="fuse_layer_decoder group"):
        create_algorithm("inp_former", tiny=True, fuse_layer_decoder=[[0, 1], [2, 9]])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        create_algorithm("inp_former", tiny=True, input_size=60)
    with pytest.raises(ValueError, match="inp_num >= 1"):
        create_algorithm("inp_former", tiny=True, inp_num=0)
    model = create_algorithm("inp_former", tiny=True, epochs=1, warmup_iters=100)
    with pytest.raises(ValueError, match="longer than warmup_iters"):
        model.fit_epoch(list(_images(4).split(2)))

"""INP-Former against anomalib 2.7's ``InpFormerModel``: same encoder, anomalib's trainable weights copied into ours.

The weight mapping is documented in ``algorithms/tests/peers_inp_former.py`` (``inp_former_pair``).

anomalib departs from the official code (luow23/INP-Former) in two places, isolated here:

1. its extractor and decoder MLPs have **no biases** (anomalib's ``DinomalyMLP`` defaults to
   ``bias=False``; the official ``Mlp`` has them): our biases stay at 0, their initial value, which
   makes the two networks the same function (the test asserts these are the only missing weights);
2. its inference map is **blurred at the input size** with a **reflection-padded** 5 x 5 kernel and
   scored there; the official ``evaluation_batch`` first resizes the map to 256, then blurs with a
   zero-padded ``nn.Conv2d``, then takes the top 1 %. The raw maps (before any resize or blur) are
   compared directly, and anomalib's score is reproduced by applying its own rule to our raw map.

The training loss (soft mining + 0.2 x INP coherence) and its gradients are compared too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms.components.vit_reconstruction import box_gaussian_blur, cosine_anomaly_map
from algorithms.inp_former.model import soft_mining_cosine_loss

pytest.importorskip("anomalib.models.image.inp_former")
from algorithms.tests.peers_inp_former import inp_former_pair

SIZE = 56  # 4 x 4 patches of 14 px: seconds on one CPU core
WIDTH, HEADS = 32, 2


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_maps_and_scores_equal_anomalib():
    theirs, ours = inp_former_pair(SIZE, WIDTH, HEADS)
    images = _images(3, seed=3)
    with torch.no_grad():
        en_t, de_t, inp_t = theirs.get_encoder_decoder_inploss(images)
        en, de, inp = ours.model(images)
        raw_t, _ = theirs.calculate_anomaly_maps(en_t, de_t, out_size=SIZE)
        ref = theirs(images)
    for a, b in zip(en + de, en_t + de_t):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(float(inp), float(inp_t), rtol=0, atol=1e-6)
    raw = cosine_anomaly_map(en, de, SIZE)
    np.testing.assert_allclose(raw.numpy(), raw_t[:, 0].numpy(), rtol=0, atol=1e-4)
    # departure 2: anomalib's own rule (reflection blur at the input size, top 1 %) on our raw map
    their_rule = theirs.gaussian_blur(raw[:, None]).flatten(1)
    their_rule = their_rule.topk(int(SIZE * SIZE * 0.01), dim=1).values.mean(dim=1)
    np.testing.assert_allclose(their_rule.numpy(), ref.pred_score.numpy(), rtol=0, atol=1e-4)
    # ... while ours follows the official rule: resize to 256, zero-padded blur, top 1 %
    ours.hparams["map_size"] = 256
    prediction = ours.predict(images)
    resized = F.interpolate(raw[:, None], size=256, mode="bilinear", align_corners=False)[:, 0]
    official = box_gaussian_blur(resized).flatten(1)
    official = official.topk(int(256 * 256 * 0.01), dim=1).values.mean(dim=1)
    np.testing.assert_allclose(prediction.scores, official.numpy(), rtol=0, atol=1e-6)


def test_training_loss_and_gradients_equal_anomalib():
    theirs, ours = inp_former_pair(SIZE, WIDTH, HEADS)
    images = _images(4, seed=5)
    theirs.train()
    ours.train()
    loss_theirs = theirs(images)
    loss_ours = ours.training_loss(images)
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=0, atol=1e-5)
    loss_theirs.backward()
    loss_ours.backward()
    pairs = [
        (ours.model.prototype_token, theirs.prototype_token[0]),
        (ours.model.bottleneck.fc1.weight, theirs.bottleneck[0].fc1.weight),
        (ours.model.aggregation[0].attn.kv.weight, theirs.aggregation[0].attn.kv.weight),
        (ours.model.decoder[0].attn.learn_scale, theirs.decoder[0].attn.learn_scale),
        (ours.model.decoder[7].mlp.fc2.weight, theirs.decoder[7].mlp.fc2.weight),
    ]
    for a, b in pairs:
        scale = float(b.grad.abs().max())
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-4 * max(scale, 1e-6))


def test_soft_mining_loss_equals_anomalibs():
    from anomalib.models.image.inp_former.components.loss import GlobalCosineHmAdaptiveLoss

    generator = torch.Generator().manual_seed(0)
    encoder = [torch.randn(3, 16, 5, 5, generator=generator) for _ in range(2)]
    decoder = [torch.randn(3, 16, 5, 5, generator=generator) for _ in range(2)]
    inp = torch.tensor(0.37)
    ours_d = [d.clone().requires_grad_() for d in decoder]
    theirs_d = [d.clone().requires_grad_() for d in decoder]
    ours = soft_mining_cosine_loss(encoder, ours_d) + 0.2 * inp
    # anomalib's hooks act on the tensors it is given: hand it views so the hooks reach our leaves
    theirs = GlobalCosineHmAdaptiveLoss()(encoder, [d * 1.0 for d in theirs_d], inp)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    ours.backward()
    theirs.backward()
    for a, b in zip(ours_d, theirs_d):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)

"""MSFlow: shapes at the publication size, parameter counts, the loss and both maps on hand examples,
invertibility and log-determinants of the fusion flow and of the whole multi-scale flow, the
learning-rate schedule (warm-up that completes), gradient clipping and per-image outputs.

Every expected value comes from the publication's architecture as written in the project's
reference facts (``algorithms-next.md`` section A2); the official code (CC BY-NC-ND) is not used.
"""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.components.scores import topk_mean
from algorithms.msflow.model import (
    FusionCoupling,
    FusionFlow,
    MsflowModel,
    MultiScaleFlow,
    add_map,
    log_prob_maps,
    msflow_loss,
    mul_map,
)
from algorithms.registry import create_algorithm


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _parallel_flow_parameters(channels: int, blocks: int, cond: int = 64) -> int:
    # Per all-in-one coupling (reference A2): subnet Conv3x3(d -> d) -> LayerNorm(d) -> ReLU ->
    # Conv3x3(d -> C) with d = C/2 + 64 (log-scales and shifts of the other half: 2 (C/2) = C),
    # plus the SOFTPLUS global affine's scale and offset (C each); the permutation is fixed.
    d = channels // 2 + cond
    return blocks * ((9 * d * d + d) + 2 * d + (9 * d * channels + channels) + 2 * channels)


def _fusion_flow_parameters(channels: tuple[int, ...]) -> int:
    # Reference A2: two subnets (one per half, Glow style), each Conv3x3(S -> S/4) -> LayerNorm ->
    # ReLU -> Conv3x3(S/4 -> S) -> ReLU on the S = sum(C_s / 2) pooled half-channels (896 -> 224 at
    # WRN50-2 layers 1-3), then per scale one Conv3x3(C_s/2 -> C_s/2) for s and one for t.
    halves = [c // 2 for c in channels]
    total, hidden = sum(halves), sum(halves) // 4
    mix = (9 * total * hidden + hidden) + 2 * hidden + (9 * hidden * total + total)
    heads = sum(2 * (9 * h * h + h) for h in halves)
    return 2 * (mix + heads)


def test_publication_shapes_and_parameter_counts():
    # The publication model (WRN50-2 layers 1-3, 512 px, blocks 2/5/8, condition 64), built on the
    # meta device: real shapes and parameter counts without 100M parameters of arithmetic.
    with torch.device("meta"):
        model = MsflowModel(
            backbone="wide_resnet50_2.tv_in1k",
            layers=("layer1", "layer2", "layer3"),
            parallel_blocks=(2, 5, 8),
            cond_channels=64,
            clamp=1.9,
            pretrained=False,
            weights_path=None,
            generator=torch.Generator().manual_seed(0),
        )
    images = torch.empty(2, 3, 512, 512, device="meta")
    features = model.features(images)
    # layer1-3 at strides 4/8/16, each halved by the 3x3 / stride-2 average pooling.
    expected = [(2, 256, 64, 64), (2, 512, 32, 32), (2, 1024, 16, 16)]
    assert [tuple(f.shape) for f in features] == expected
    latents, log_det = model(images)
    assert [tuple(z.shape) for z in latents] == expected and tuple(log_det.shape) == (2,)
    assert [tuple(m.shape) for m in log_prob_maps(latents)] == [(2, 64, 64), (2, 32, 32), (2, 16, 16)]

    counts = [_count(flow) for flow in model.flows.parallel_flows]
    assert counts == [_parallel_flow_parameters(256, 2), _parallel_flow_parameters(512, 5),
                      _parallel_flow_parameters(1024, 8)]  # fmt: skip
    assert counts == [1_550_976, 11_993_280, 66_393_600]
    fusion = _count(model.flows.fusion_flow)
    assert fusion == _fusion_flow_parameters((256, 512, 1024)) == 19_618_368
    # 99.6M trainable in all (the reference's "~15-25M" estimate does not match its own
    # description of the subnets); the encoder is frozen.
    assert _count(model) == sum(counts) + fusion == 99_556_224
    assert _count(model.extractor) == 0


def test_loss_on_hand_example():
    # Sample 0: scale 1 z = (3, 4), scale 2 z = (1, -2), log|det J| = 1.5:
    #   0.5 * 25 + 0.5 * 5 - 1.5 = 13.5.  Sample 1: z = 0, log|det J| = -0.5: 0.5.  Mean: 7.0.
    z1 = torch.tensor([[3.0, 4.0], [0.0, 0.0]]).view(2, 2, 1, 1)
    z2 = torch.tensor([[[[1.0, -2.0]]], [[[0.0, 0.0]]]])  # (2, 1, 1, 2)
    log_det = torch.tensor([1.5, -0.5])
    assert msflow_loss([z1, z2], log_det).item() == pytest.approx(7.0)
    # log p = -0.5 mean_c z^2 per position: -0.5 * (9 + 16) / 2 = -6.25.
    maps = log_prob_maps([z1, z2])
    assert maps[0][0, 0, 0].item() == pytest.approx(-6.25)
    torch.testing.assert_close(maps[1][0], torch.tensor([[-0.5, -2.0]]))


def test_maps_on_hand_example():
    # Two scales on a 1 x 2 grid (no upsampling). add: exp(l - max l) per scale, summed:
    #   scale 1 [0, -ln 2] -> [1, 0.5]; scale 2 [-ln 4, 0] -> [0.25, 1]; sum [1.25, 1.5];
    #   map = max - sum = [0.25, 0].
    # mul: l1 + l2 = [-ln 4, -ln 2]; exp(. - max) = [0.5, 1]; map = max - . = [0.5, 0].
    l1 = torch.tensor([[[0.0, -math.log(2.0)]]])
    l2 = torch.tensor([[[-math.log(4.0), 0.0]]])
    torch.testing.assert_close(add_map([l1, l2], (1, 2)), torch.tensor([[[0.25, 0.0]]]))
    torch.testing.assert_close(mul_map([l1, l2], (1, 2)), torch.tensor([[[0.5, 0.0]]]))
    # Upsampling: a constant coarse scale adds a constant, so only the fine scale shapes the map.
    fine = torch.tensor([[[0.0, -1.0], [-2.0, 0.0]]])
    coarse = torch.full((1, 1, 1), -3.0)
    add = add_map([fine, coarse], (2, 2))
    torch.testing.assert_close(add, add_map([fine], (2, 2)))
    mul = mul_map([fine, coarse], (2, 2))
    torch.testing.assert_close(mul, 1.0 - torch.exp(fine - fine.amax()))
    assert add.shape == mul.shape == (1, 2, 2)


def _perturb(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _check_multiscale(block: torch.nn.Module, shapes: list[tuple[int, ...]]) -> None:
    """Exact inverse and log|det J| against autograd's Jacobian of the whole multi-scale map."""
    block = _perturb(block.double())
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    ys, log_det = block(xs)
    assert [tuple(y.shape) for y in ys] == [tuple(s) for s in shapes] and log_det.shape == (shapes[0][0],)
    for x, x_back in zip(xs, block.inverse(ys)):
        torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    for b in range(shapes[0][0]):
        one = [(1, *s[1:]) for s in shapes]
        sizes = [math.prod(s) for s in one]

        def f(flat, b=b, one=one, sizes=sizes):
            parts = [p.view(s) for p, s in zip(flat.split(sizes), one)]
            return torch.cat([y.reshape(-1) for y in block(parts)[0]])

        flat = torch.cat([x[b : b + 1].reshape(-1) for x in xs])
        jac = torch.autograd.functional.jacobian(f, flat, vectorize=True)
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(log_det[b], logabs, atol=1e-9, rtol=1e-9)
    assert not torch.allclose(log_det, torch.zeros_like(log_det))


def test_fusion_coupling_is_invertible_with_exact_log_det():
    # Odd channel counts too (uneven halves), three resolutions pooled to the smallest.
    _check_multiscale(FusionCoupling((5, 4, 6), hidden_ratio=0.5), [(2, 5, 4, 4), (2, 4, 2, 2), (2, 6, 1, 1)])


def test_fusion_flow_is_invertible_with_exact_log_det():
    flow = FusionFlow((4, 6), generator=torch.Generator().manual_seed(0))
    _check_multiscale(flow, [(2, 4, 4, 4), (2, 6, 2, 2)])


def test_whole_multiscale_flow_is_invertible_with_exact_log_det():
    # Parallel conditional flows (conv + LayerNorm subnets, positional condition) + fusion flow.
    flow = MultiScaleFlow((4, 6, 8), parallel_blocks=(1, 2, 1), cond_channels=4, clamp=1.9,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    _check_multiscale(flow, [(2, 4, 4, 4), (2, 6, 2, 2), (2, 8, 1, 1)])


def test_fusion_mixes_the_scales():
    # The fine scale's latent depends on the coarse scale's input (and vice versa): the fusion
    # flow exchanges information between scales; the parallel flows alone do not.
    torch.manual_seed(0)
    # (8 + 8 channels: the fusion subnet's hidden width is (4 + 4) / 4 = 2; a LayerNorm over one
    # channel would be constant.)
    flow = _perturb(MultiScaleFlow((8, 8), parallel_blocks=(1, 1), cond_channels=4, clamp=1.9))
    fine, coarse = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)
    (z_fine, z_coarse), _ = flow([fine, coarse])
    (z_fine2, _), _ = flow([fine, coarse + 1.0])
    assert not torch.allclose(z_fine, z_fine2)
    (_, z_coarse3), _ = flow([fine + 1.0, coarse])
    assert not torch.allclose(z_coarse, z_coarse3)


def test_permutations_are_seeded():
    def perms(seed):
        flow = MultiScaleFlow((6, 8), parallel_blocks=(1, 1), cond_channels=4, clamp=1.9,
                              generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return [b for name, b in flow.named_buffers() if name.endswith(".permutation")]

    a, b, c = perms(0), perms(0), perms(1)
    assert len(a) == 4  # one per parallel coupling, one per scale in the fusion flow
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.equal(x, y) for x, y in zip(a, c))


def test_learning_rate_schedule_warms_up_and_completes():
    detector = create_algorithm("msflow", tiny=True, lr=1e-4, warmup_epochs=3, lr_milestones=[70, 90], lr_gamma=0.33)
    lr = detector.learning_rate
    assert lr(0) == pytest.approx(1e-5)  # LinearLR start factor 0.1
    assert lr(1, 0.5) == pytest.approx(1e-4 * (0.1 + 0.9 * 1.5 / 3))
    # The warm-up ends after 3 epochs (VisionAD's copy never reaches the base rate).
    assert lr(3) == pytest.approx(1e-4) and lr(69, 0.99) == pytest.approx(1e-4)
    assert lr(70) == pytest.approx(1e-4 * 0.33) and lr(89) == pytest.approx(1e-4 * 0.33)
    assert lr(90) == pytest.approx(1e-4 * 0.33**2) and lr(99) == pytest.approx(1e-4 * 0.33**2)
    no_warmup = create_algorithm("msflow", tiny=True, lr=1e-3, warmup_epochs=0)
    assert no_warmup.learning_rate(0) == pytest.approx(1e-3)


def test_training_clips_gradients_and_ramps_the_rate_per_step(monkeypatch):
    detector = create_algorithm("msflow", tiny=True, lr=1e-3, warmup_epochs=1, grad_clip=2.0)
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    calls = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        calls.append((len(parameters), max_norm))
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    before = [p.detach().clone() for p in detector.model.flows.parameters()]
    logs = detector.fit_epoch([images[:2], images[2:]])
    assert math.isfinite(logs["loss"])
    n_flow_parameters = len(list(detector.model.flows.parameters()))
    assert calls == [(n_flow_parameters, 2.0)] * 2
    # Second of two batches: half way through the one warm-up epoch.
    assert detector._optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert all(not torch.equal(a, b) for a, b in zip(before, detector.model.flows.parameters()))
    assert not any(p.requires_grad for p in detector.model.extractor.parameters())


def test_score_is_the_top_fraction_of_the_detection_map_and_outputs_are_per_image():
    torch.manual_seed(0)
    detector = create_algorithm("msflow", tiny=True)
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    detector.fit_epoch([images])
    prediction = detector.predict(images)
    assert list(prediction.maps) == ["add", "mul"]
    mul = torch.as_tensor(prediction.maps["mul"])
    expected = topk_mean(mul, ratio=0.03)  # int(0.03 * 4096) = 122 values
    torch.testing.assert_close(torch.as_tensor(prediction.scores), expected)
    assert mul.min() >= 0 and mul.max() <= 1 and torch.as_tensor(prediction.maps["add"]).min() >= 0
    # Every normalisation is per image: one image alone gets the same maps and score.
    alone = detector.predict(images[1:2])
    for key in ("add", "mul"):
        torch.testing.assert_close(torch.as_tensor(alone.maps[key][0]), torch.as_tensor(prediction.maps[key][1]),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
    assert alone.scores[0] == pytest.approx(prediction.scores[1], abs=1e-5)
    # The "add" map can give the score instead (score_map), with VisionAD's 10 % if wanted.
    other = create_algorithm("msflow", tiny=True, score_map="add", top_k=0.1)
    other.load_state_dict(detector.state_dict())
    p = other.predict(images)
    torch.testing.assert_close(torch.as_tensor(p.scores), topk_mean(torch.as_tensor(p.maps["add"]), ratio=0.1))


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        create_algorithm("msflow", tiny=True, cond_channels=10)
    with pytest.raises(ValueError, match="one block count per layer"):
        create_algorithm("msflow", tiny=True, parallel_blocks=[1, 1])
    with pytest.raises(ValueError, match="top_k"):
        create_algorithm("msflow", tiny=True, top_k=0.0)
    with pytest.raises(ValueError, match="score_map"):
        create_algorithm("msflow", tiny=True, score_map="max")
    with pytest.raises(ValueError, match="lr_gamma"):
        create_algorithm("msflow", tiny=True, lr_gamma=0.0)


def test_signature_defaults_are_the_publication_settings():
    # Reference A2: WRN50-2 (torchvision V1 weights) layers 1-3 at 512 px, parallel blocks 2/5/8,
    # condition 64, clamp 1.9, Adam lr 1e-4 with a 3-epoch warm-up and x0.33 at epochs 70 and 90,
    # gradient-norm clip 2, image score the top 3 % of the "mul" map; 100 epochs of batch 16.
    import inspect

    from algorithms.msflow import INFO
    from algorithms.msflow.detector import Msflow

    defaults = {k: p.default for k, p in inspect.signature(Msflow).parameters.items()}
    assert defaults["backbone"] == "wide_resnet50_2.tv_in1k" and defaults["pretrained"] is True
    assert tuple(defaults["layers"]) == ("layer1", "layer2", "layer3") and defaults["input_size"] == 512
    assert tuple(defaults["parallel_blocks"]) == (2, 5, 8) and defaults["cond_channels"] == 64
    assert defaults["clamp"] == 1.9 and defaults["lr"] == 1e-4 and defaults["warmup_epochs"] == 3
    assert tuple(defaults["lr_milestones"]) == (70, 90) and defaults["lr_gamma"] == 0.33
    assert defaults["grad_clip"] == 2.0 and defaults["top_k"] == 0.03 and defaults["score_map"] == "mul"
    assert (INFO.schedule.epochs, INFO.schedule.batch_size, INFO.schedule.input_size) == (100, 16, 512)
    assert INFO.map_variants == ("add", "mul")

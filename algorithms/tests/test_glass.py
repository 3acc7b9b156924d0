"""GLASS: shapes at the publication size, parameter counts, losses by hand, seeded synthesis, scoring, API.

The comparison with anomalib 2.7's port is in ``test_glass_anomalib.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from algorithms.components.blur import gaussian_blur
from algorithms.components.discriminator import Discriminator
from algorithms.components.losses import binary_focal_loss
from algorithms.glass.model import (
    blend_local_anomalies,
    draw_blend_factors,
    estimate_foreground,
    global_anomaly_losses,
    hard_focal_loss,
    las_masks,
    truncated_projection,
)
from algorithms.registry import create_algorithm, get_algorithm_info


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_publication_shapes_and_trainable_parameters():
    """WRN50-2 layers 2 + 3 at 288 px (the official resize, no crop) -> a 36 x 36 grid of 1536-d features.

    Trainable parameters from the official MVTec AD configuration (``run-mvtec.sh``: pre_proj 1,
    dsc_layers 2, dsc_hidden 1024, embedding 1536; ``glass.py`` ``Projection`` / ``Discriminator``):
    projection Linear 1536 -> 1536: 1536*1536 + 1536 = 2,360,832; discriminator Linear 1536 -> 1024
    (+bias), BatchNorm1d(1024), Linear 1024 -> 1 (no bias; then the parameter-free sigmoid):
    1536*1024 + 1024 + 2*1024 + 1024 = 1,576,960. The backbone is frozen.
    """
    size, grid = 288, 36
    with torch.device("meta"):
        model = create_algorithm("glass", pretrained=False)
        assert model.input_size == size
        features = model.model.extractor(torch.empty(1, 3, size, size))
    assert [tuple(f.shape) for f in features] == [(1, 512, grid, grid), (1, 1024, grid // 2, grid // 2)]
    assert _count(model.model.projection) == 2_360_832
    assert _count(model.model.discriminator) == 1_576_960
    assert _count(model) == 2_360_832 + 1_576_960
    assert _count(model.model.extractor) == 0
    # the trainable part for real, on an embedding of the publication's shape
    embedding = torch.randn(1, grid, grid, 1536)
    projection, discriminator = torch.nn.Linear(1536, 1536), Discriminator(1536).eval()
    with torch.no_grad():
        scores = torch.sigmoid(discriminator(projection(embedding.reshape(-1, 1536))))
    assert scores.shape == (grid * grid,) and ((scores >= 0) & (scores <= 1)).all()


def test_defaults_are_the_official_mvtec_settings():
    info = get_algorithm_info("glass")
    assert (info.schedule.epochs, info.schedule.batch_size, info.schedule.input_size) == (640, 8, 288)
    with torch.device("meta"):
        h = create_algorithm("glass", pretrained=False).hparams
    assert h["backbone"] == "wide_resnet50_2.tv_in1k" and h["layers"] == ["layer2", "layer3"]
    assert (h["pretrain_embed_dim"], h["target_embed_dim"], h["dsc_layers"], h["dsc_hidden"]) == (1536, 1536, 2, 1024)
    assert (h["noise_std"], h["ascent_steps"], h["ascent_step_size"], h["projection_interval"]) == (0.015, 20, 1e-3, 5)
    assert (h["manifold_radius"], h["radius_quantile"], h["hard_quantile"], h["focal_gamma"]) == (0.5, 0.75, 0.5, 2.0)
    assert (h["lr"], h["dsc_lr"], h["limit"], h["perlin_threshold"]) == (1e-4, 2e-4, 392, 0.5)
    assert (h["beta_mean"], h["beta_std"], h["blur_sigma"], h["blur_border"]) == (0.5, 0.1, 4.0, "scipy")
    # one setting for every category (the official per-class table is exposed, not used)
    assert (h["distribution"], h["foreground"], h["texture_dir"]) == ("manifold", "none", None)
    assert "per category" in info.deviations and "DTD is optional" in info.deviations


def test_optimisers_are_the_official_ones():
    model = create_algorithm("glass", tiny=True)
    projection, discriminator = model._get_optimizers()
    assert type(projection) is torch.optim.Adam and projection.defaults["lr"] == 1e-4
    assert projection.defaults["weight_decay"] == 1e-5
    assert type(discriminator) is torch.optim.AdamW and discriminator.defaults["lr"] == 2e-4


# -- losses on hand-computed examples -------------------------------------------------------------


def test_smoothed_focal_loss_by_hand():
    """p = 0.8 with target 1 and p = 0.3 with target 0 (p_t = 0.7), smooth 1e-5:
    p_t' = 0.99999 p_t + 1e-5 (1 - p_t) + 1e-5 = 0.800004 and 0.700006;
    loss = mean(-(1 - p_t')^2 ln p_t') = (0.199996^2 * 0.2231386 + 0.299994^2 * 0.3566664) / 2."""
    scores, targets = torch.tensor([0.8, 0.3]), torch.tensor([1.0, 0.0])
    expected = (0.199996**2 * -math.log(0.800004) + 0.299994**2 * -math.log(0.700006)) / 2
    loss = binary_focal_loss(scores, targets, gamma=2.0, from_logits=False, smooth=1e-5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    plain = binary_focal_loss(scores, targets, gamma=2.0, from_logits=False)
    assert plain.item() == pytest.approx((0.04 * -math.log(0.8) + 0.09 * -math.log(0.7)) / 2, rel=1e-6)


def test_hard_focal_loss_keeps_the_harder_half():
    """Scores (0.9, 0.2, 0.6, 0.1) for masks (1, 0, 1, 1): (s - m)^2 = (0.01, 0.04, 0.16, 0.81), median
    0.1 (linear interpolation): the last two enter, focal = (0.4^2 ln(1/0.6) + 0.9^2 ln(1/0.1)) / 2."""
    scores, masks = torch.tensor([0.9, 0.2, 0.6, 0.1]), torch.tensor([1.0, 0.0, 1.0, 1.0])
    expected = (0.16 * math.log(1 / 0.6) + 0.81 * math.log(10.0)) / 2  # 0.97341
    assert hard_focal_loss(scores, masks, smooth=0.0).item() == pytest.approx(expected, rel=1e-6)
    # the official smoothing 1e-5: p_t' = 0.600008 and 0.100018
    smoothed = (0.399992**2 * -math.log(0.600008) + 0.899982**2 * -math.log(0.100018)) / 2
    assert hard_focal_loss(scores, masks).item() == pytest.approx(smoothed, rel=1e-5)
    everything = binary_focal_loss(scores, masks, from_logits=False)
    assert hard_focal_loss(scores, masks, p=0.0, smooth=0.0).item() == pytest.approx(everything.item())


def _linear_scorer(w: torch.Tensor):
    return lambda x: torch.sigmoid(x @ w)


def test_gas_terms_by_hand():
    """D(x) = sigmoid(3 x_0 + 4 x_1), true point 0, noise (0.1, 0.2): D(true) = 0.5, D(gas) = sigmoid(1.1).

    No ascent: BCE(0.5, 0) = ln 2, BCE(sigmoid(1.1), 1) = ln(1 + e^-1.1). One ascent step of 0.001
    along the normalised gradient of -ln D(g), i.e. -w/|w| = (-0.6, -0.8): w.g = 1.1 - 0.005.
    Five steps of 0 and the manifold projection of |g - true| = 0.2236 up to 0.5: w.g = 1.1 * 0.5 / 0.2236.
    """
    w = torch.tensor([3.0, 4.0])
    true, noise = torch.zeros(1, 2, requires_grad=True), torch.tensor([[0.1, 0.2]])
    true_loss, gas_loss = global_anomaly_losses(_linear_scorer(w), true, noise, steps=0)
    assert true_loss.item() == pytest.approx(math.log(2), rel=1e-6)
    assert gas_loss.item() == pytest.approx(math.log1p(math.exp(-1.1)), rel=1e-6)
    _, gas_loss = global_anomaly_losses(_linear_scorer(w), true, noise, steps=1)
    assert gas_loss.item() == pytest.approx(math.log1p(math.exp(-1.095)), rel=1e-5)
    _, gas_loss = global_anomaly_losses(_linear_scorer(w), true, noise, steps=5, step_size=0.0)
    projected = 1.1 * 0.5 / math.sqrt(0.05)
    assert gas_loss.item() == pytest.approx(math.log1p(math.exp(-projected)), rel=1e-5)
    # hypersphere: |g - c| (c = (1, 0), |g - c| = 0.9220) is already in [r, 2r] for r = 0.5: unchanged
    center, radius = torch.tensor([[1.0, 0.0]]), torch.tensor([0.5])
    _, gas_loss = global_anomaly_losses(
        _linear_scorer(w), true, noise, steps=5, step_size=0.0, distribution="hypersphere", center=center,
        radius=radius,
    )  # fmt: skip
    assert gas_loss.item() == pytest.approx(math.log1p(math.exp(-1.1)), rel=1e-5)
    # the gradient of the final GAS term reaches the true features through g (as in the official code)
    gas_loss.backward()
    assert true.grad is not None and true.grad.abs().sum() > 0


def test_truncated_projection_clamps_distances():
    anchors = torch.zeros(3, 2)
    points = torch.tensor([[0.2, 0.0], [0.0, 3.0], [0.6, 0.0]])
    out = truncated_projection(points, anchors, 0.5, 1.0)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.0], [0.0, 1.0], [0.6, 0.0]]))
    out = truncated_projection(points + 1, anchors + 1, torch.tensor([0.5]), torch.tensor([1.0]))
    torch.testing.assert_close(out, torch.tensor([[1.5, 1.0], [1.0, 2.0], [1.6, 1.0]]))


def test_hypersphere_loss_pushes_las_points_to_two_to_four_radii():
    """loss_from_features in hypersphere mode: r_t is the 0.75-quantile of the normal points' distances
    to the centre; the masked LAS points enter the discriminator at [2 r_t, 4 r_t] from it."""
    model = create_algorithm("glass", tiny=True, target_embed_dim=2, dsc_layers=1, distribution="hypersphere",
                             ascent_steps=0, hard_quantile=0.0)  # fmt: skip
    seen = []
    model.model.discriminator.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    center = torch.zeros(2, 2)  # 2 patch positions
    true = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 4.0]])  # distances 1, 2, 3, 4
    fake = torch.tensor([[0.1, 0.0], [0.0, 30.0], [3.0, 0.0], [0.0, 4.0]])
    masks = torch.tensor([1.0, 1.0, 0.0, 0.0])
    model.loss_from_features(true, fake, masks, torch.zeros(4, 2), center)
    # normal points: fake[2:] and true: distances (3, 4, 1, 2, 3, 4) -> 0.75-quantile 3.75
    las = seen[-1]
    torch.testing.assert_close(las[:2].norm(dim=1), torch.tensor([7.5, 15.0]))
    torch.testing.assert_close(las[2:], fake[2:])


# -- synthesis: LAS masks, blending, foreground, determinism --------------------------------------


def test_las_masks_are_seeded_non_empty_and_pooled():
    a_pixel, a_feature = las_masks(6, 64, 8, generator=torch.Generator().manual_seed(3))
    b_pixel, b_feature = las_masks(6, 64, 8, generator=torch.Generator().manual_seed(3))
    c_pixel, _ = las_masks(6, 64, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a_pixel, b_pixel) and torch.equal(a_feature, b_feature)
    assert not torch.equal(a_pixel, c_pixel)
    assert a_pixel.shape == (6, 1, 64, 64) and a_feature.shape == (6, 1, 8, 8)
    assert set(a_pixel.unique().tolist()) <= {0.0, 1.0}
    assert (a_feature.flatten(1).amax(1) == 1).all()  # never empty at the feature resolution
    torch.testing.assert_close(a_feature, F.max_pool2d(a_pixel, 8))  # 8 x 8 max-pooling


def test_las_masks_stay_in_the_foreground_and_survive_an_empty_one():
    foreground = torch.zeros(2, 1, 64, 64)
    foreground[0, :, 16:48, 16:48] = 1.0  # image 1: empty foreground
    pixel, _ = las_masks(2, 64, 8, generator=torch.Generator().manual_seed(0), foreground=foreground,
                         max_tries=5)  # fmt: skip
    assert (pixel[0] <= foreground[0]).all() and pixel[0].sum() > 0
    assert pixel[1].sum() > 0  # the empty foreground is given up after max_tries


def test_blend_by_hand_and_blend_factors():
    images, textures = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    masks = torch.zeros(2, 1, 4, 4)
    masks[:, :, :2] = 1.0
    out = blend_local_anomalies(images, textures, masks, torch.tensor([0.3, 0.8]))
    # x (1 - m) + (1 - beta) t m + beta x m: 1 outside, beta inside
    assert (out[0, :, 2:] == 1).all() and torch.allclose(out[0, :, :2], torch.tensor(0.3))
    assert torch.allclose(out[1, :, :2], torch.tensor(0.8))
    beta = draw_blend_factors(20_000, torch.Generator().manual_seed(0))
    assert beta.min() >= 0.2 and beta.max() <= 0.8
    assert beta.mean().item() == pytest.approx(0.5, abs=0.005) and beta.std().item() == pytest.approx(0.1, abs=0.005)
    assert torch.equal(beta, draw_blend_factors(20_000, torch.Generator().manual_seed(0)))


def test_foreground_estimate_finds_an_object_on_a_plain_background():
    images = torch.full((2, 3, 32, 32), 0.1)
    images[0, :, 8:20, 10:24] = 0.9
    masks = estimate_foreground(images)
    expected = torch.zeros(32, 32)
    expected[8:20, 10:24] = 1.0
    assert torch.equal(masks[0, 0], expected)
    assert (masks[1] == 1).all()  # nothing stands out: no restriction


def test_synthesis_is_deterministic_under_a_seed():
    model = create_algorithm("glass", tiny=True, foreground="estimate")
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a, ma = model.synthesize(images, 8, torch.Generator().manual_seed(11))
    b, mb = model.synthesize(images, 8, torch.Generator().manual_seed(11))
    c, _ = model.synthesize(images, 8, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and torch.equal(ma, mb) and not torch.equal(a, c)
    changed = (a != images).any(dim=1, keepdim=True).float()
    assert (F.max_pool2d(changed, 8) <= ma).all()  # only masked regions change


# -- inference and training loop ------------------------------------------------------------------


def test_score_is_the_largest_patch_probability_and_the_map_its_smoothed_upsampling():
    model = create_algorithm("glass", tiny=True).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        patches = model.model.patch_scores(images)
    assert patches.shape == (2, 8, 8) and ((patches > 0) & (patches < 1)).all()
    prediction = model.predict(images)
    torch.testing.assert_close(torch.from_numpy(prediction.scores), patches.flatten(1).amax(1))
    expected = gaussian_blur(F.interpolate(patches[:, None], size=(64, 64), mode="bilinear")[:, 0], 4.0)
    torch.testing.assert_close(torch.from_numpy(prediction.maps["anomaly_map"]), expected)


class _Counting:
    def __init__(self, batches):
        self.batches, self.served = batches, 0

    def __iter__(self):
        for batch in self.batches:
            self.served += 1
            yield batch


def test_epoch_stops_once_more_than_limit_images_are_seen():
    model = create_algorithm("glass", tiny=True, limit=4, ascent_steps=1)
    loader = _Counting([torch.randn(4, 3, 64, 64) for _ in range(4)])
    logs = model.fit_epoch(loader)
    assert loader.served == 2  # 4 images is not more than 4; 8 is
    assert set(logs) == {"loss", "true", "gas", "focal"}


def test_hypersphere_epoch_computes_the_centre():
    model = create_algorithm("glass", tiny=True, distribution="hypersphere", ascent_steps=5, projection_interval=5)
    batches = [torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    model.fit_epoch(batches)
    assert model.center.shape == (8 * 8, 64)


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="distribution"):
        create_algorithm("glass", tiny=True, distribution="sphere")
    with pytest.raises(ValueError, match="foreground"):
        create_algorithm("glass", tiny=True, foreground="files")
    with pytest.raises(ValueError, match="texture_fallback"):
        create_algorithm("glass", tiny=True, texture_fallback="dtd")
    with pytest.raises(ValueError, match="patch_size"):
        create_algorithm("glass", tiny=True, patch_size=2)
    with pytest.raises(FileNotFoundError):
        create_algorithm("glass", tiny=True, texture_dir="/nonexistent/dtd")
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        create_algorithm("glass", tiny=True).predict(torch.randn(1, 3, 32, 32))

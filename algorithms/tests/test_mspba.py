"""MSPBA (Tsai, Wu, Lai, WACV 2022): what makes the method itself, pinned.

Architecture facts from the authors' code (public mirror ``Howeng98/MSPBA`` @ 55a3356:
``codes/codes/networks.py`` for the encoders and classifier, ``codes/datasets.py`` for the patch
geometry, ``codes/utils.py`` / ``codes/codes/inspection.py`` for the score distribution) and
``shared/reference/algorithms-next.md`` section A11. The backbone is torchvision's VGG16
(Simonyan & Zisserman 2015, configuration D), timm ``vgg16.tv_in1k``; tests build it with
``pretrained=False`` (same architecture, no download).
"""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.components.kmeans import kmeans, kmeans_inertia
from algorithms.mspba.model import (
    HEAD_SPECS,
    NUM_POSITIONS,
    MspbaModel,
    NormalizedLinear,
    PositionClassifier,
    cluster_loss,
    crop_patches,
    distribute_scores,
    grid_patches,
    position_loss,
    position_offsets,
    svdd_loss,
    svdd_offsets,
)
from algorithms.registry import create_algorithm


def _conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


@pytest.fixture(scope="module")
def vgg_model() -> MspbaModel:
    torch.manual_seed(0)
    return MspbaModel(backbone="vgg16.tv_in1k", layers=(4, 2, 1), patch_sizes=(64, 32, 16), embed_dim=64,
                      pretrained=False, weights_path=None, train_backbone=True)  # fmt: skip


# -- shapes at the publication's sizes (256 px images; 64/32/16-pixel patches on VGG16) --------------


def test_backbone_maps_and_embeddings_at_the_published_patch_sizes(vgg_model):
    expected = {0: (512, 4, 4), 1: (256, 8, 8), 2: (128, 8, 8)}  # relu5_3, relu3_3, relu2_2
    for scale, patch in enumerate((64, 32, 16)):
        patches = torch.randn(2, 3, patch, patch)
        with torch.no_grad():
            assert tuple(vgg_model.backbone_features(patches, vgg_model.layers[scale]).shape[1:]) == expected[scale]
            embedding = vgg_model.encode(patches, scale)
        assert embedding.shape == (2, 64)
        assert embedding.abs().max() < 1  # tanh output


def test_backbone_taps_are_the_official_vgg16_layers(vgg_model):
    # official Vgg16: outputs after features[8] (relu2_2), [15] (relu3_3), [29] (relu5_3)
    assert set(vgg_model.extractor.model.return_layers) == {"features_8", "features_15", "features_29"}
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = vgg_model.extractor(images)
        for i, layer in enumerate((1, 2, 4)):
            assert torch.equal(vgg_model.backbone_features(images, layer), full[i])


def test_grids_and_maps_at_256():
    images = torch.randn(2, 3, 256, 256)
    # official grids: 13 x 13 (K 64, S 16), 57 x 57 (32, 4), 61 x 61 (16, 4), each covering every pixel
    for patch, stride, side in ((64, 16, 13), (32, 4, 57), (16, 4, 61)):
        windows = grid_patches(images, patch, stride)
        assert windows.shape == (2, side, side, 3, patch, patch)
        assert torch.equal(
            windows[1, 2, 3], images[1, :, 2 * stride : 2 * stride + patch, 3 * stride : 3 * stride + patch]
        )
        spread = distribute_scores(torch.ones(2, side, side), 256, patch, stride)
        assert spread.shape == (2, 256, 256) and torch.all(spread == 1)


def test_predict_maps_at_256_with_a_small_backbone():
    model = create_algorithm("mspba", tiny=True, input_size=256, strides=[64, 32, 32])
    train = [torch.randn(2, 3, 256, 256)]
    model.pre_eval(train)
    # grids (256 - K) // S + 1: 4 x 4, 8 x 8, 8 x 8 per image
    assert [tuple(model.model.bank(s).shape) for s in range(3)] == [(2 * 16, 64), (2 * 64, 64), (2 * 64, 64)]
    prediction = model.predict(torch.randn(3, 3, 256, 256))
    assert list(prediction.maps) == ["anomaly_map", "product_map"]
    assert prediction.maps["anomaly_map"].shape == (3, 256, 256)
    assert prediction.scores.shape == (3,)


# -- trainable parameters (from the published architecture) ---------------------------------------


def test_trainable_parameter_counts(vgg_model):
    # Encoder64 / Encoder32 / Encoder16 of networks.py, D = 64
    heads = [
        _conv_params(512, 256, 2) + _conv_params(256, 128, 2) + _conv_params(128, 64, 2) + _conv_params(64, 64, 1),
        _conv_params(256, 256, 3) + _conv_params(256, 128, 3) + _conv_params(128, 128, 2)
        + _conv_params(128, 64, 2) + _conv_params(64, 64, 2),
        _conv_params(128, 128, 3) + _conv_params(128, 64, 3) + _conv_params(64, 32, 3) + _conv_params(32, 64, 2),
    ]  # fmt: skip
    assert heads == [692_736, 1_000_064, 248_096]
    for encoder, expected in zip(vgg_model.encoders, heads, strict=True):
        assert sum(p.numel() for p in encoder.parameters() if p.requires_grad) == expected
    # PositionClassifier: 64 -> 128 -> 256 -> 512 -> NormalizedLinear(512, 12)
    classifier = (64 * 128 + 128) + (128 * 256 + 256) + (256 * 512 + 512) + (512 * 12 + 12)
    assert classifier == 179_084
    for head in vgg_model.classifiers:
        assert sum(p.numel() for p in head.parameters()) == classifier
    # VGG16 convolutional part (configuration D: 13 3x3 convolutions), fine-tuned with the heads;
    # the model stops at relu5_3, before the last max-pool (no parameters there).
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
              (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # fmt: skip
    vgg = sum(_conv_params(a, b, 3) for a, b in widths)
    assert vgg == 14_714_688
    assert sum(p.numel() for p in vgg_model.extractor.parameters() if p.requires_grad) == vgg


def test_frozen_backbone_is_left_out_of_the_optimiser():
    model = create_algorithm("mspba", tiny=True)
    optimised = {id(p) for group in model._get_optimizer().param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in model.model.extractor.parameters())
    assert all(id(p) in optimised for p in model.model.encoders.parameters())


def test_head_specs_reduce_to_one_by_one():
    for side, spec in HEAD_SPECS:
        for _, kernel in spec:
            side -= kernel - 1
        assert side == 1


def test_mismatched_patch_and_layer_is_refused():
    with pytest.raises(ValueError, match="published head needs"):
        create_algorithm("mspba", tiny=True, patch_sizes=[32, 32, 16])


# -- losses on hand-computed examples ----------------------------------------------------------------


def test_svdd_loss_hand_example():
    h1 = torch.tensor([[1.0, 0.0]])
    h2 = torch.tensor([[0.0, 1.0]])
    h3 = torch.tensor([[-1.0, 0.0]])
    # ||h1 - h2|| = sqrt 2; -cos(h1, h2) = 0; cos(h1, h3) = -1
    assert svdd_loss(h1, h2, h3).item() == pytest.approx(math.sqrt(2) - 1, abs=1e-6)
    # two rows: the mean of each term
    h1 = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    h2 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    h3 = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    # row 0: 0 + (1 - 1) = 0; row 1: 5 + (1 - cos(h1, 0) = 0) = 6; mean 3
    assert svdd_loss(h1, h2, h3).item() == pytest.approx(3.0, abs=1e-6)


def test_cluster_loss_hand_example():
    h = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert cluster_loss(h, centres).item() == pytest.approx((0 + 16) / 2, abs=1e-5)


def test_position_loss_hand_example():
    logits = torch.zeros(2, NUM_POSITIONS)
    assert position_loss(logits, torch.tensor([0, 5])).item() == pytest.approx(math.log(12), abs=1e-6)
    logits = torch.tensor([[math.log(3.0)] + [0.0] * 11])
    # p(0) = 3 / (3 + 11) = 3/14
    assert position_loss(logits, torch.tensor([0])).item() == pytest.approx(-math.log(3 / 14), abs=1e-6)


def test_normalized_linear_uses_a_column_normalised_weight_without_gradient():
    torch.manual_seed(0)
    layer = NormalizedLinear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0, 1.0], [4.0, 2.0, 0.0]]))
        layer.bias.zero_()
    x = torch.tensor([[1.0, 1.0, 1.0]])
    # columns divided by their norms (5, 2, 1): [[0.6, 0, 1], [0.8, 1, 0]]
    y = layer(x)
    assert torch.allclose(y, torch.tensor([[1.6, 1.8]]))
    y.sum().backward()
    assert layer.weight.grad is None and torch.equal(layer.bias.grad, torch.ones(2))


def test_position_classifier_reads_the_difference():
    torch.manual_seed(0)
    classifier = PositionClassifier(8)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.allclose(classifier(a, b), classifier(a + 1.5, b + 1.5), atol=1e-6)
    assert classifier(a, b).shape == (4, NUM_POSITIONS)


# -- patch geometry and its randomness ---------------------------------------------------------------


def test_position_offsets_follow_the_12_directions():
    generator = torch.Generator().manual_seed(0)
    patch, size = 64, 10_000
    corners = torch.full((2000, 2), 5000)
    second, positions = position_offsets(corners, size, patch, generator)
    offset = (second - corners).double()
    angle = positions.double() * math.pi / 6
    for axis, component in ((0, torch.cos(angle)), (1, torch.sin(angle))):
        distance = offset[:, axis] / component.where(component.abs() > 1e-9, torch.ones_like(component))
        moving = component.abs() > 1e-9
        # per axis: round(component * (3K/4 + u)), u in 0..K/4-1: distance in [48, 63] up to the rounding
        slack = 0.5 / component[moving].abs() + 1e-9
        assert torch.all(distance[moving] >= 48 - slack) and torch.all(distance[moving] <= 63 + slack)
        assert torch.all(offset[~moving, axis] == 0)
    assert set(positions.tolist()) == set(range(12))
    # pos 0 moves down the rows only; pos 3 along the columns only
    assert torch.all(offset[positions == 0, 1] == 0) and torch.all(offset[positions == 0, 0] >= 48)
    assert torch.all(offset[positions == 3, 0] == 0) and torch.all(offset[positions == 3, 1] >= 48)


def test_position_offsets_are_clipped_to_the_image():
    generator = torch.Generator().manual_seed(1)
    corners = torch.randint(0, 256 - 32 + 1, (500, 2), generator=generator)
    second, _ = position_offsets(corners, 256, 32, generator)
    assert second.min() >= 0 and second.max() <= 256 - 32


def test_svdd_offsets_near_and_far():
    generator = torch.Generator().manual_seed(0)
    patch, size = 64, 10_000
    corners = torch.full((3000, 2), 5000)
    near, far = svdd_offsets(corners, size, patch, generator)
    jitter = near - corners
    assert jitter.abs().max() == 4 and jitter.abs().max(dim=1).values.min() >= 1  # |j| <= K/16, never (0, 0)
    assert len({tuple(j) for j in jitter.tolist()}) == 9 * 9 - 1
    away = (far - corners).abs()
    assert away.min() >= 48  # at least 3K/4 on both axes
    assert away.max() <= 64 + 48


def test_patch_sampling_and_noise_are_seeded():
    corners = torch.full((50, 2), 100)

    def draw(seed: int):
        generator = torch.Generator().manual_seed(seed)
        return (*position_offsets(corners, 256, 32, generator), *svdd_offsets(corners, 256, 32, generator))

    first, again, other = draw(3), draw(3), draw(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    model = create_algorithm("mspba", tiny=True)
    patches = torch.zeros(4, 3, 16, 16)
    noisy = [model._noisy(patches, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    # sigma 0.02 of the [0, 1] range, in ImageNet-normalised units: per-channel std of shift + noise
    big = model._noisy(torch.zeros(2000, 3, 4, 4), torch.Generator().manual_seed(0))
    expected = 0.02 * math.sqrt(2) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(big.std(dim=(0, 2, 3)), expected, rtol=0.05)


def test_crop_patches_equals_slicing():
    images = torch.randn(3, 3, 20, 20)
    index = torch.tensor([2, 0])
    corners = torch.tensor([[1, 4], [12, 0]])
    crops = crop_patches(images, index, corners, 8)
    assert torch.equal(crops[0], images[2, :, 1:9, 4:12])
    assert torch.equal(crops[1], images[0, :, 12:20, 0:8])


def test_distribute_scores_averages_overlaps():
    scores = torch.arange(9.0).reshape(1, 3, 3)
    spread = distribute_scores(scores, 4, 2, 1)
    # the code's loop: add each patch's score to its pixels, divide by the count
    expected = torch.zeros(4, 4)
    count = torch.zeros(4, 4)
    for i in range(3):
        for j in range(3):
            expected[i : i + 2, j : j + 2] += scores[0, i, j]
            count[i : i + 2, j : j + 2] += 1
    assert torch.allclose(spread[0], expected / count)
    assert spread[0, 1, 1] == (0 + 1 + 3 + 4) / 4
    # pixels no patch covers get 0
    uncovered = distribute_scores(torch.ones(1, 2, 2), 6, 3, 2)  # patches cover rows/columns 0..4
    assert uncovered[0, 5].sum() == 0 and uncovered[0, :, 5].sum() == 0 and uncovered[0, :5, :5].eq(1).all()


# -- k-means --------------------------------------------------------------------------------------


def test_kmeans_finds_separated_groups_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    points = torch.cat(
        [torch.randn(50, 2, generator=generator) * 0.1 + torch.tensor(c) for c in ((0.0, 0.0), (5.0, 5.0), (-5.0, 5.0))]
    )
    centres, assignment = kmeans(points, 3, restarts=5, generator=torch.Generator().manual_seed(1))
    found = sorted(tuple(round(v) for v in c.tolist()) for c in centres)
    assert found == [(-5, 5), (0, 0), (5, 5)]
    assert len(set(assignment[:50].tolist())) == 1 and len(set(assignment.tolist())) == 3
    again, _ = kmeans(points, 3, restarts=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(centres, again)
    # a refresh from the found centres changes nothing
    refreshed, _ = kmeans(points, 3, init=centres)
    assert torch.allclose(refreshed, centres)
    assert kmeans_inertia(points, centres) < kmeans_inertia(points, centres + 1)


def test_kmeans_keeps_the_centre_of_an_empty_cluster():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    start = torch.tensor([[0.0, 0.0], [100.0, 100.0]])
    centres, assignment = kmeans(points, 2, init=start)
    assert torch.equal(centres[1], start[1]) and assignment.tolist() == [0, 0]


# -- the training schedule ----------------------------------------------------------------------------


def test_clustering_schedule():
    model = create_algorithm("mspba", tiny=True, cluster_every=2, cluster_start=2, num_clusters=[3, 3, 3])
    train = [torch.randn(4, 3, 64, 64)]
    model.fit_epoch(train)  # epoch 1: no centres yet
    assert all(model.model.centres(s).shape[0] == 0 for s in range(3))
    model.fit_epoch(train)  # epoch 2: first clustering, from this epoch's embeddings
    assert all(model.model.centres(s).shape == (3, 64) for s in range(3))
    before = [model.model.centres(s).clone() for s in range(3)]
    model.fit_epoch(train)  # epoch 3: the clustering loss trains; centres unchanged until epoch 4
    assert all(torch.equal(model.model.centres(s), before[s]) for s in range(3))
    assert int(model.epochs_done) == 3


def test_signature_defaults_are_the_publication_settings():
    from algorithms.mspba import INFO

    model = create_algorithm("mspba", pretrained=False)
    hp = model.hparams
    assert hp["input_size"] == INFO.schedule.input_size == 256
    assert hp["batch_size"] == INFO.schedule.batch_size == 64
    assert INFO.schedule.epochs == 100  # the code's 101, whose epoch 0 trains nothing
    assert hp["backbone"] == "vgg16.tv_in1k" and hp["layers"] == [4, 2, 1] and hp["train_backbone"] is True
    assert hp["patch_sizes"] == [64, 32, 16] and hp["strides"] == [16, 4, 4] and hp["embed_dim"] == 64
    assert (hp["lr"], hp["lambda_svdd"], hp["num_clusters"]) == (1e-5, 1e-3, [50, 50, 50])
    assert (hp["cluster_every"], hp["cluster_start"], hp["cluster_restarts"]) == (5, 10, 20)
    assert (hp["samples_per_image"], hp["noise_std"], hp["coreset_ratio"]) == (100, 0.02, 1.0)


def test_one_publication_step_fine_tunes_the_vgg16():
    """The publication configuration (VGG16, 256 px, backbone in the optimiser) trains end to end."""
    model = create_algorithm("mspba", pretrained=False, samples_per_image=1, batch_size=1)
    first_conv = next(p for p in model.model.extractor.parameters() if p.ndim == 4)
    head_conv = model.model.encoders[1].convs[0].weight
    before = first_conv.detach().clone(), head_conv.detach().clone()
    logs = model.fit_epoch([torch.randn(1, 3, 256, 256)])
    assert math.isfinite(logs["loss"]) and int(model.epochs_done) == 1
    assert not torch.equal(first_conv, before[0]) and not torch.equal(head_conv, before[1])

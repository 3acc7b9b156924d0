"""CFA: shapes and parameters at publication size, the loss and score on hand-computed examples,
the memory, and the differential test against anomalib 2.7's ``Cfa`` (same weights, same maps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algorithms.cfa.model import CfaModel, CoordConv1x1, patch_features
from algorithms.registry import create_algorithm
from algorithms.tests.test_conformance import _images


def test_publication_shapes_and_trainable_parameters():
    """WRN50-2 layers 1-3 at 256 px: 256 + 512 + 1024 = 1792 channels on the 64 x 64 layer-1 grid."""
    model = CfaModel(
        backbone="wide_resnet50_2.tv_in1k",
        layers=("layer1", "layer2", "layer3"),
        input_size=256,
        gamma_d=1,
        radius=1e-5,
        blur_sigma=4.0,
        pretrained=False,
    ).eval()
    # official Descriptor: CoordConv2d(1792, 1792 // gamma_d, 1), i.e. Conv2d(1792 + 2 -> 1792, 1x1) with bias,
    # plus the radius r: 1794 * 1792 + 1792 + 1 = 3,216,641 ("descriptor 3.2M trainable", algorithms-next A6)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"descriptor.conv.weight": 1794 * 1792, "descriptor.conv.bias": 1792, "radius": 1}
    assert sum(trainable.values()) == 3_216_641
    image = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        features = model.extractor(image)
        assert [tuple(f.shape) for f in features] == [(1, 256, 64, 64), (1, 512, 32, 32), (1, 1024, 16, 16)]
        patches = patch_features(features)
        assert patches.shape == (1, 1792, 64, 64)
        descriptors = model.descriptor(patches)
        assert descriptors.shape == (1, 1792, 64, 64)
        model.memory = descriptors[0].flatten(1).T  # what build_memory makes of this one image
        assert model.memory.shape == (64 * 64, 1792)  # one centroid per position (gamma_c = 1)
        squared = model.squared_distances(descriptors[:, :, :4, :4])  # 16 patches against all 4096 centroids
        assert squared.shape == (1, 16, 4096)
        assert model.patch_scores(squared, (4, 4), k=3).shape == (1, 4, 4)
        assert model.anomaly_map(torch.rand(1, 64, 64)).shape == (1, 256, 256)


def test_soft_boundary_loss_on_a_hand_computed_example():
    model = create_algorithm("cfa", tiny=True).model
    with torch.no_grad():
        model.radius.fill_(0.1)  # r^2 = 0.01
    squared = torch.tensor([[[0.5, 0.2, 0.1, 0.05, 0.3, 0.01, 0.4]]])  # one patch, 7 memory items
    # 6 nearest: 0.01 0.05 0.1 | 0.2 0.3 0.4
    # attraction: mean(max(0, d - 0.01)) over the first three = (0 + 0.04 + 0.09) / 3
    # repulsion with alpha = -0.35: mean(max(0, 0.01 - d + 0.35)) over the next three = (0.16 + 0.06 + 0) / 3
    loss = model.loss(squared, k=3, j=3, nu=0.5, alpha=-0.35)
    assert loss.item() == pytest.approx((0.13 / 3 + 0.22 / 3) / 0.5, abs=1e-6)
    # with the published alpha = 0.1 the hard negatives beyond r^2 cost nothing
    assert model.loss(squared, k=3, j=3, nu=1e-3, alpha=0.1).item() == pytest.approx(0.13 / 3 / 1e-3, rel=1e-5)
    # the radius is trained: the loss pulls it towards the attracted distances
    model.loss(squared, k=3, j=3, nu=1.0, alpha=0.1).backward()
    assert model.radius.grad.item() < 0


def test_patch_score_is_the_softmin_weighted_nearest_distance():
    model = create_algorithm("cfa", tiny=True).model
    squared = torch.tensor([[[4.0, 100.0, 9.0, 16.0]]])  # distances 2, 10, 3, 4
    weights = [math.exp(-d) for d in (2.0, 3.0, 4.0)]
    expected = weights[0] / sum(weights) * 2.0
    assert model.patch_scores(squared, (1, 1), k=3).item() == pytest.approx(expected, rel=1e-6)


def test_coordconv_appends_row_then_column_coordinates_in_minus_one_one():
    conv = CoordConv1x1(1, 2)
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.bias.zero_()
        conv.conv.weight[0, 1] = 1.0  # output 0 = row channel
        conv.conv.weight[1, 2] = 1.0  # output 1 = column channel
    out = conv(torch.zeros(1, 1, 3, 5))
    torch.testing.assert_close(out[0, 0, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(out[0, 1, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.equal(out[0, 0], out[0, 0, :, :1].expand(3, 5))


def test_memory_is_the_running_mean_of_batch_means_from_the_untrained_descriptor():
    detector = create_algorithm("cfa", tiny=True)
    batches = [_images(3, 64, seed=1), _images(1, 64, seed=2)]  # unequal batches: a mean of batch means
    with torch.no_grad():
        expected = (detector.model(batches[0]).mean(0) + detector.model(batches[1]).mean(0)) / 2
    detector.fit_epoch(batches)  # builds the memory first, then trains
    assert detector.memory.shape == (16 * 16, 64 + 128 + 256)
    torch.testing.assert_close(detector.memory, expected.flatten(1).T, rtol=1e-5, atol=1e-6)
    memory = detector.memory.clone()
    radius = detector.model.radius.item()
    detector.fit_epoch(batches)
    assert torch.equal(detector.memory, memory), "the memory is frozen after its construction"
    assert detector.model.radius.item() != radius, "r is optimised with the descriptor"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="gamma_c=1"):
        create_algorithm("cfa", tiny=True, gamma_c=4)
    with pytest.raises(ValueError, match="gamma_d"):
        create_algorithm("cfa", tiny=True, gamma_d=0)
    with pytest.raises(RuntimeError, match="memory of centroids is empty"):
        create_algorithm("cfa", tiny=True).predict(_images(1, 64, seed=0))


# -- anomalib 2.7 -----------------------------------------------------------------------------


def test_same_memory_loss_maps_and_scores_as_anomalib_with_the_same_weights():
    from algorithms.tests.peers_cfa import CfaLoss, anomalib_memory, cfa_pair

    ours, theirs = cfa_pair(size=64)
    train = [_images(4, 64, seed=1), _images(4, 64, seed=2)]
    test = torch.cat([_images(2, 64, seed=3), _images(2, 64, seed=4, defect=True)])
    ours.model.build_memory(train)
    anomalib_memory(theirs, train)
    torch.testing.assert_close(ours.memory, theirs.memory_bank.T, rtol=0, atol=1e-5)

    # training loss on the same batch (both radii at their initial 1e-5)
    theirs.train()
    ours.train()
    distance = theirs(train[0])
    ours_loss = ours.model.loss(ours.model.squared_distances(ours.model(train[0])), k=3, j=3, nu=1e-3, alpha=0.1)
    theirs_loss = CfaLoss(num_nearest_neighbors=3, num_hard_negative_features=3, radius=1e-5)(distance)
    assert ours_loss.item() == pytest.approx(theirs_loss.item(), rel=1e-4)

    # inference: maps (upsampled, Gaussian sigma 4, reflect border) and max scores
    theirs.eval()
    with torch.no_grad():
        batch = theirs(test)
    prediction = ours.predict(test)
    np.testing.assert_allclose(prediction.maps["anomaly_map"], batch.anomaly_map.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(prediction.scores, batch.pred_score.numpy(), rtol=0, atol=1e-4)


def test_anomalib_departs_from_the_official_code_its_radius_is_never_trained():
    """Official ``DSVDD``: ``self.r = nn.Parameter(1e-5 * torch.ones(1))`` and the optimiser takes
    ``loss_fn.parameters()``, so r is learned. anomalib's ``CfaModel.radius`` and ``CfaLoss.radius``
    are ``torch.ones(1, requires_grad=True) * radius``: plain (non-leaf) tensors, not parameters, so
    its AdamW over ``model.parameters()`` never updates r: it stays 1e-5."""
    from algorithms.tests.peers_cfa import CfaLoss, cfa_pair

    ours, theirs = cfa_pair(size=64)
    assert not [n for n, _ in theirs.named_parameters() if "radius" in n]
    assert list(CfaLoss(num_nearest_neighbors=3, num_hard_negative_features=3, radius=1e-5).parameters()) == []
    assert "model.radius" in {n for n, p in ours.named_parameters() if p.requires_grad}
    # the descriptor's dead weight: anomalib (and the official CoordConv2d) also hold an unused Conv2d(448 -> 448)
    dead = theirs.descriptor.layer.weight.numel() + theirs.descriptor.layer.bias.numel()
    assert dead == 448 * 448 + 448
    live = sum(p.numel() for n, p in ours.model.named_parameters() if n.startswith("descriptor."))
    assert sum(p.numel() for p in theirs.descriptor.parameters()) == live + dead

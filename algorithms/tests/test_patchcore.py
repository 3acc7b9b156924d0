"""PatchCore: features, coreset, nearest neighbours and scoring against direct re-derivations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms.components.blur import gaussian_blur
from algorithms.components.coreset import (
    approximate_greedy_coreset,
    coreset_size,
    greedy_coreset,
    random_projection,
)
from algorithms.patchcore.detector import PatchCore
from algorithms.patchcore.model import nearest_neighbours
from algorithms.registry import create_algorithm, load_algorithm


def _tiny(**overrides) -> PatchCore:
    torch.manual_seed(0)
    return create_algorithm("patchcore", tiny=True, **overrides)


# -- coreset ------------------------------------------------------------------------------------


def _farthest_point_reference(points: np.ndarray, first: int, k: int) -> list[int]:
    """Textbook k-center greedy in float64 with a full distance matrix."""
    dist = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    chosen = [first]
    min_dist = dist[first].copy()
    while len(chosen) < k:
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, dist[nxt])
    return chosen


def test_greedy_coreset_is_the_farthest_point_traversal():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 6)).astype(np.float32)
    indices = greedy_coreset(torch.from_numpy(points), ratio=0.1, projection_dim=None, seed=3)
    expected = _farthest_point_reference(points.astype(np.float64), int(indices[0]), 30)
    assert indices.tolist() == expected


def test_approximate_coreset_size_uniqueness_and_seed():
    features = torch.randn(1000, 64, generator=torch.Generator().manual_seed(1))
    a = approximate_greedy_coreset(features, ratio=0.05, seed=0)
    assert a.dtype == torch.long and a.shape == (50,)
    assert len(set(a.tolist())) == 50 and int(a.min()) >= 0 and int(a.max()) < 1000
    assert torch.equal(a, approximate_greedy_coreset(features, ratio=0.05, seed=0))
    assert not torch.equal(a, approximate_greedy_coreset(features, ratio=0.05, seed=1))


def test_coreset_covers_every_cluster_and_beats_random_subsampling():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 32, generator=generator) * 20
    # unbalanced clusters: random sampling of 10 points would likely miss the small ones
    sizes = [500, 300, 100, 40, 20, 10, 10, 10, 5, 5]
    features = torch.cat([c + torch.randn(n, 32, generator=generator) for c, n in zip(centres, sizes)])
    labels = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    picked = approximate_greedy_coreset(features, ratio=10 / len(features), seed=0)
    assert sorted(labels[picked].tolist()) == list(range(10))
    # covering radius: every point is close to the coreset
    radius = torch.cdist(features, features[picked]).min(dim=1).values.max()
    random_pick = torch.randperm(len(features), generator=generator)[:10]
    random_radius = torch.cdist(features, features[random_pick]).min(dim=1).values.max()
    assert radius < 0.5 * random_radius


def test_coreset_arguments_are_validated():
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        coreset_size(10, 0.0)
    with pytest.raises(ValueError, match="empty memory bank"):
        coreset_size(0, 0.1)
    assert coreset_size(5, 0.01) == 1
    with pytest.raises(ValueError, match="n_starting_points"):
        approximate_greedy_coreset(torch.randn(10, 3), ratio=0.5, n_starting_points=0)


def test_random_projection_preserves_distances_roughly():
    x = torch.randn(200, 512, generator=torch.Generator().manual_seed(0))
    y = random_projection(x, dim=128, generator=torch.Generator().manual_seed(1))
    assert y.shape == (200, 128)
    ratio = torch.pdist(y) / torch.pdist(x)
    assert 0.8 < float(ratio.mean()) < 1.2
    assert random_projection(x[:, :64], dim=128).shape == (200, 64)  # never projects up


# -- nearest neighbours -------------------------------------------------------------------------


@pytest.mark.parametrize("block", [7, 2**24])
def test_nearest_neighbours_match_brute_force_in_any_block_size(block):
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(53, 16, generator=generator), torch.randn(40, 16, generator=generator)
    full = torch.cdist(queries.double(), bank.double())
    d1, i1 = nearest_neighbours(queries, bank, k=1, block_elements=block)
    assert torch.equal(i1[:, 0], full.argmin(dim=1))
    assert torch.allclose(d1[:, 0].double(), full.min(dim=1).values, atol=1e-4)
    d5, i5 = nearest_neighbours(queries, bank, k=5, block_elements=block)
    expected = full.topk(5, dim=1, largest=False)
    assert torch.equal(i5, expected.indices)
    assert torch.allclose(d5.double(), expected.values, atol=1e-4)
    with pytest.raises(ValueError, match="bank size"):
        nearest_neighbours(queries, bank, k=41)


def test_nearest_neighbour_distances_are_exact_where_the_expansion_cancels():
    """Far from the origin, |a|^2 - 2ab + |b|^2 in float32 loses every digit of a small
    distance; the winners' distances are recomputed directly, so they stay exact."""
    generator = torch.Generator().manual_seed(0)
    bank = 1000.0 + torch.randn(30, 8, generator=generator)
    queries = bank[[3, 17, 25]] + 1e-3 * torch.randn(3, 8, generator=generator)
    expected = torch.cdist(queries.double(), bank.double())
    d, i = nearest_neighbours(queries, bank, k=3)
    assert i[:, 0].tolist() == [3, 17, 25]
    # the distances are those of the returned rows, to float32 precision (~3e-3 for the nearest)
    torch.testing.assert_close(d.double(), expected.gather(1, i), rtol=1e-5, atol=1e-6)
    assert (d[:, 1:] >= d[:, :-1]).all()  # increasing order
    # while the expansion in float32 is off by orders of magnitude of the nearest distance
    expanded = queries.pow(2).sum(1) - 2 * (queries * bank[[3, 17, 25]]).sum(1) + bank[[3, 17, 25]].pow(2).sum(1)
    assert (expanded.clamp_min(0).sqrt() - expected[:, [3, 17, 25]].diagonal()).abs().max() > 0.1


# -- features -----------------------------------------------------------------------------------


def test_embedding_is_the_reference_locally_aware_patch_feature():
    """Re-derive the reference code's order of operations: unfold 3x3 at each layer's own
    resolution, upsample the *unpooled* patches of deeper layers, pool each layer to
    ``pretrain_embed_dim``, stack layer-major, pool to ``target_embed_dim``."""
    model = _tiny(pretrain_embed_dim=96, target_embed_dim=80)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = model.model.embed(images)
    features = model.model.extractor(images)
    h, w = features[0].shape[-2:]
    per_layer = []
    for feature in features:
        b, c, fh, fw = feature.shape
        patches = F.unfold(feature, kernel_size=3, padding=1).reshape(b, c * 9, fh, fw)
        if (fh, fw) != (h, w):
            patches = F.interpolate(patches, size=(h, w), mode="bilinear", align_corners=False)
        patches = patches.permute(0, 2, 3, 1).reshape(-1, 1, c * 9)
        per_layer.append(F.adaptive_avg_pool1d(patches, 96)[:, 0])
    stacked = torch.stack(per_layer, dim=1).reshape(len(per_layer[0]), 1, -1)
    expected = F.adaptive_avg_pool1d(stacked, 80).reshape(2, h, w, 80)
    assert ours.shape == (2, h, w, 80)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_embedding_equals_the_direct_pool_then_upsample_formulation():
    """``embed`` (channel-first gathers, channels-last upsampling, one concatenation buffer) gives
    the numbers of the plain formulation: per position, ``adaptive_avg_pool1d`` of the unfolded
    neighbourhood, the pooled deeper layer upsampled, concatenated, pooled again."""
    model = _tiny(pretrain_embed_dim=100, target_embed_dim=70)  # uneven, layer-straddling windows
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    features = model.model.extractor(images)
    b = images.shape[0]
    h, w = features[0].shape[-2:]
    per_layer = []
    for feature in features:
        _, c, fh, fw = feature.shape
        patches = F.unfold(feature, kernel_size=3, padding=1).transpose(1, 2).reshape(-1, 1, c * 9)
        pooled = F.adaptive_avg_pool1d(patches, 100).reshape(b, fh, fw, 100).permute(0, 3, 1, 2)
        if (fh, fw) != (h, w):
            pooled = F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False)
        per_layer.append(pooled)
    stacked = torch.cat(per_layer, dim=1).permute(0, 2, 3, 1).reshape(-1, 1, 200)
    expected = F.adaptive_avg_pool1d(stacked, 70).reshape(b, h, w, 70)
    torch.testing.assert_close(model.model.embed(images), expected, rtol=1e-6, atol=1e-7)


# -- scoring ------------------------------------------------------------------------------------


def _fitted(**overrides) -> tuple[PatchCore, torch.Tensor, torch.Tensor]:
    model = _tiny(**overrides)
    generator = torch.Generator().manual_seed(0)
    ys = torch.linspace(0, 6.283, 64)
    pattern = torch.sin(ys[None, :] * 4 + ys[:, None] * 2)
    train = pattern + 0.05 * torch.randn(12, 3, 64, 64, generator=generator)
    test = pattern + 0.05 * torch.randn(4, 3, 64, 64, generator=generator)
    test[2:, :, 30:40, 20:30] = 3.0
    model.pre_eval(list(train.split(4)))
    return model, train, test


def test_scores_and_maps_follow_the_paper():
    model, _, test = _fitted()
    prediction = model.predict(test)
    bank = model.memory_bank.double()
    embedding = model.model.embed(test).double()
    b, h, w, d = embedding.shape
    flat = embedding.reshape(b, h * w, d)
    dist = torch.cdist(flat, bank[None].expand(b, -1, -1))  # (B, P, M)
    patch = dist.min(dim=2).values
    # anomaly map: bilinear upsampling of the patch scores, then a Gaussian of sigma 4
    up = F.interpolate(patch[:, None].reshape(b, 1, h, w), size=(64, 64), mode="bilinear", align_corners=False)
    expected_maps = gaussian_blur(up[:, 0], 4.0)
    np.testing.assert_allclose(prediction.maps["anomaly_map"], expected_maps.numpy(), rtol=1e-4, atol=1e-4)
    # image score: eq. 7 with b = 9 neighbours of m* in the bank
    for i in range(b):
        j = int(patch[i].argmax())
        s_star = float(patch[i, j])
        m_star = int(dist[i, j].argmin())
        neighbours = torch.cdist(bank[m_star][None], bank)[0].topk(9, largest=False).indices
        to_test = torch.linalg.vector_norm(bank[neighbours] - flat[i, j], dim=1)
        weight = 1 - np.exp(s_star) / float(torch.exp(to_test).sum())
        assert prediction.scores[i] == pytest.approx(weight * s_star, rel=2e-3)  # 1 - ratio cancels digits
    # the planted squares are found: higher scores, and the map peaks inside the square
    assert prediction.scores[2:].min() > prediction.scores[:2].max()
    for i in (2, 3):
        y, x = np.unravel_index(prediction.maps["anomaly_map"][i].argmax(), (64, 64))
        assert 26 <= y <= 44 and 16 <= x <= 34


def test_one_neighbour_means_the_plain_maximum():
    model, _, test = _fitted(num_neighbours=1, blur_sigma=0.0)
    prediction = model.predict(test)
    embedding = model.model.embed(test).double()
    b, h, w, d = embedding.shape
    # float64 oracle: float32 cdist itself is off by ~1e-4 relative on these small distances
    # (it expands |a - b|^2 too, and cancels digits); ours recomputes |q - m| for the winner.
    bank = model.memory_bank.double()
    patch = torch.cdist(embedding.reshape(b, -1, d), bank[None].expand(b, -1, -1)).min(dim=2).values
    np.testing.assert_allclose(prediction.scores, patch.max(dim=1).values.numpy(), rtol=1e-6)
    # no blur: the map is the upsampled patch scores themselves
    up = F.interpolate(patch.reshape(b, 1, h, w), size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(prediction.maps["anomaly_map"], up.numpy(), rtol=1e-5, atol=1e-5)


def test_memory_bank_is_the_coreset_of_the_training_features():
    model, train, _ = _fitted(coreset_ratio=0.25)
    features = model.model.embed(train).reshape(-1, model.hparams["target_embed_dim"])
    keep = approximate_greedy_coreset(features, ratio=0.25, projection_dim=128, seed=0)
    assert model.memory_bank.shape == (int(len(features) * 0.25), model.hparams["target_embed_dim"])
    assert torch.allclose(model.memory_bank, features[keep])
    full = _fitted(coreset_ratio=1.0)[0]
    assert full.memory_bank.shape[0] == len(features)


def test_bank_is_built_once_per_fit_and_rebuilt_after_a_new_epoch():
    model, train, _ = _fitted()
    bank = model.memory_bank.clone()
    model.pre_eval([])  # already built: the (empty) loader is not even read
    assert torch.equal(model.memory_bank, bank)
    model.fit_epoch(list(train.split(4)))
    with pytest.raises(ValueError, match="no images"):
        model.pre_eval([])


def test_save_load_round_trip_keeps_the_bank(tmp_path):
    model, _, test = _fitted()
    loaded = load_algorithm(model.save(tmp_path / "pc"))
    assert torch.equal(loaded.memory_bank, model.memory_bank)
    a, b = model.predict(test), loaded.predict(test)  # no pre_eval needed after loading
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps["anomaly_map"], b.maps["anomaly_map"])
    loaded.pre_eval([])  # a loaded bank is not stale


def test_predict_before_the_bank_exists_is_explained():
    with pytest.raises(RuntimeError, match=r"patchcore: the memory bank is empty; call pre_eval"):
        _tiny().predict(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"coreset_ratio": 0.0}, "coreset_ratio"),
        ({"coreset_ratio": 1.5}, "coreset_ratio"),
        ({"num_neighbours": 0}, "num_neighbours"),
        ({"patch_size": 2}, "patch_size"),
        ({"blur_sigma": -1.0}, "blur_sigma"),
        ({"layers": []}, "layers"),
        ({"target_embed_dim": 0}, "dimensions"),
    ],
)
def test_bad_hyperparameters_are_named(override, message):
    with pytest.raises(ValueError, match=f"patchcore: .*{message}"):
        _tiny(**override)


def test_publication_defaults():
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(PatchCore.__init__).parameters.items() if k != "self"}
    assert defaults["backbone"].startswith("wide_resnet50_2")
    assert tuple(defaults["layers"]) == ("layer2", "layer3")
    assert defaults["pretrained"] is True
    assert (defaults["patch_size"], defaults["pretrain_embed_dim"], defaults["target_embed_dim"]) == (3, 1024, 1024)
    assert (defaults["coreset_ratio"], defaults["coreset_projection_dim"]) == (0.1, 128)
    assert (defaults["num_neighbours"], defaults["blur_sigma"], defaults["input_size"]) == (9, 4.0, 256)


# -- BatchNorm calibration of random-initialised backbones ---------------------------------------


def test_calibrate_batchnorm_sets_exact_statistics_of_the_training_images():
    from algorithms.components.feature_extractor import FeatureExtractor, calibrate_batchnorm

    torch.manual_seed(0)
    extractor = FeatureExtractor("resnet18", ["layer2"], pretrained=False)
    images = torch.randn(6, 3, 48, 48, generator=torch.Generator().manual_seed(1)) * 2 + 0.5
    stem = extractor.model.conv1(images)  # what the first BatchNorm sees
    assert torch.allclose(extractor.model.bn1.running_mean, torch.zeros(64))  # random init: 0 / 1
    before = [p.clone() for p in extractor.parameters()]
    assert extractor.calibrate_batchnorm(list(images.split(3))) == 6  # two batches of 3
    per_batch_var = torch.stack([half.var(dim=(0, 2, 3), unbiased=True) for half in stem.split(3)])
    assert torch.allclose(extractor.model.bn1.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(extractor.model.bn1.running_var, per_batch_var.mean(0), rtol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, extractor.parameters()))  # weights untouched
    assert not extractor.model.training and extractor.model.bn1.momentum == 0.1  # frozen again
    deep = extractor(images)[0]  # calibrated features are standardised on the calibration images
    assert abs(float(deep.mean())) < 1.0 and 0.2 < float(deep.std()) < 5.0
    first = extractor.model.layer2[0].bn1.running_var.clone()
    extractor.calibrate_batchnorm(list(images.split(3)))  # again: the same statistics, not accumulated
    assert torch.allclose(extractor.model.layer2[0].bn1.running_var, first, rtol=1e-5)
    assert extractor.calibrate_batchnorm(list(images.split(4)), max_images=5) == 5
    with pytest.raises(ValueError, match="no images"):
        extractor.calibrate_batchnorm([])
    with pytest.raises(ValueError, match="no BatchNorm"):
        calibrate_batchnorm(torch.nn.Conv2d(3, 3, 1), images)
    with pytest.raises(ValueError, match="max_images"):
        extractor.calibrate_batchnorm(images, max_images=0)


def test_patchcore_bn_calibration_is_opt_in_and_round_trips(tmp_path):
    plain, train, test = _fitted()
    calibrated, _, _ = _fitted(bn_calibration=True)
    bn = "model.extractor.model.bn1.running_mean"
    assert torch.equal(plain.state_dict()[bn], torch.zeros(64))  # off by default
    stem = calibrated.model.extractor.model.conv1(train)
    assert torch.allclose(calibrated.state_dict()[bn], stem.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not torch.allclose(calibrated.memory_bank[:1], plain.memory_bank[:1])
    loaded = load_algorithm(calibrated.save(tmp_path / "pc"))
    assert torch.equal(loaded.state_dict()[bn], calibrated.state_dict()[bn])
    np.testing.assert_array_equal(loaded.predict(test).scores, calibrated.predict(test).scores)
    again, _, _ = _fitted(bn_calibration=True)  # deterministic
    np.testing.assert_array_equal(again.predict(test).scores, calibrated.predict(test).scores)

"""SimpleNet: shapes at the publication size, parameter counts, truncated-L1 loss, noise, scoring, API.

anomalib 2.7 does not ship SimpleNet (its ``supersimplenet`` is the successor), so there is no
differential test; the architecture is pinned against the official code's numbers instead.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from algorithms.components.blur import gaussian_blur
from algorithms.components.patch_embedding import patch_embedding
from algorithms.registry import create_algorithm, get_algorithm_info
from algorithms.simplenet.model import Discriminator, gaussian_feature_noise


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_publication_shapes_and_trainable_parameters():
    """WRN50-2 layers 2 + 3 -> 1536-d patch features on the layer-2 grid (stride 8).

    Trainable parameters from the official MVTec configuration (``run.sh``: pre_proj 1,
    dsc_layers 2, dsc_hidden 1024; ``simplenet.py`` ``Projection`` / ``Discriminator``):
    adaptor Linear 1536 -> 1536: 1536*1536 + 1536 = 2,360,832;
    discriminator Linear 1536 -> 1024 (+bias), BatchNorm1d(1024), Linear 1024 -> 1 (no bias):
    1536*1024 + 1024 + 2*1024 + 1024 = 1,576,960 (paper: "about 4M" in all).
    """
    size, grid = 288, 36  # the official crop (the harness's 256 px gives a 32 x 32 grid)
    with torch.device("meta"):  # the backbone's shapes without its compute
        model = create_algorithm("simplenet", pretrained=False, input_size=size)
        features = model.model.extractor(torch.empty(1, 3, size, size))
        assert model.model.extractor(torch.empty(1, 3, 256, 256))[0].shape[-2:] == (32, 32)
    assert [tuple(f.shape) for f in features] == [(1, 512, grid, grid), (1, 1024, grid // 2, grid // 2)]
    assert _count(model.model.adaptor) == 2_360_832
    assert _count(model.model.discriminator) == 1_576_960
    assert _count(model) == 2_360_832 + 1_576_960
    # the trainable part for real, on random features of the backbone's shapes
    real = [torch.randn(f.shape) for f in features]
    embedding = patch_embedding(real, patch_size=3, pretrain_embed_dim=1536, target_embed_dim=1536)
    assert embedding.shape == (1, grid, grid, 1536)
    adaptor, discriminator = torch.nn.Linear(1536, 1536), Discriminator(1536).eval()
    scores = discriminator(adaptor(embedding.reshape(-1, 1536)))
    assert scores.shape == (grid * grid,)


def test_defaults_are_the_official_mvtec_settings():
    info = get_algorithm_info("simplenet")
    assert (info.schedule.epochs, info.schedule.batch_size) == (40, 8)
    with torch.device("meta"):
        h = create_algorithm("simplenet", pretrained=False).hparams
    assert h["backbone"] == "wide_resnet50_2.tv_in1k" and h["layers"] == ["layer2", "layer3"]
    assert (h["pretrain_embed_dim"], h["target_embed_dim"], h["dsc_layers"], h["dsc_hidden"]) == (1536, 1536, 2, 1024)
    assert (h["noise_std"], h["dsc_margin"], h["dsc_lr"], h["adaptor_lr"], h["gan_epochs"]) == (0.015, 0.5, 2e-4,
                                                                                               1e-4, 4)  # fmt: skip
    assert h["cosine_lr"] is False  # --cos_lr is not given in the official run.sh


def test_discriminator_architecture():
    d = Discriminator(8, layers=2, hidden=4)
    assert [type(m).__name__ for m in d.body[0]] == ["Linear", "BatchNorm1d", "LeakyReLU"]
    assert d.body[0][2].negative_slope == 0.2 and d.tail.bias is None and d.tail.in_features == 4
    assert Discriminator(8, layers=1).tail.in_features == 8  # no hidden block
    assert d(torch.randn(5, 8)).shape == (5,)


def test_truncated_l1_loss_on_a_hand_computed_example():
    """A linear discriminator D(x) = x_0 on two true features with D = [1.0, 0.2]; the fakes add
    noise of std 1e-7 (negligible): loss = mean(max(0, .5 - [1, .2])) + mean(max(0, .5 + [1, .2]))
    = 0.15 + 1.1."""
    model = create_algorithm("simplenet", tiny=True, target_embed_dim=2, dsc_layers=1, noise_std=1e-7)
    with torch.no_grad():
        model.model.discriminator.tail.weight.copy_(torch.tensor([[1.0, 0.0]]))
    adapted = torch.tensor([[1.0, 3.0], [0.2, -1.0]])
    loss = model.loss(adapted, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(1.25, abs=1e-5)


def test_feature_noise_is_seeded_with_the_asked_scale():
    features = torch.zeros(4096, 16)
    a = gaussian_feature_noise(features, 0.015, generator=torch.Generator().manual_seed(1))
    b = gaussian_feature_noise(features, 0.015, generator=torch.Generator().manual_seed(1))
    c = gaussian_feature_noise(features, 0.015, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == features.shape
    assert a.std().item() == pytest.approx(0.015, rel=0.02) and abs(a.mean().item()) < 1e-3


def test_score_is_the_largest_patch_score_and_the_map_its_smoothed_upsampling():
    model = create_algorithm("simplenet", tiny=True).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        patches = model.model.patch_scores(images)
    assert patches.shape == (2, 8, 8)  # resnet18 layer 2: stride 8
    prediction = model.predict(images)
    torch.testing.assert_close(torch.from_numpy(prediction.scores), patches.flatten(1).amax(1))
    expected = gaussian_blur(F.interpolate(patches[:, None], size=(64, 64), mode="bilinear")[:, 0], 4.0)
    torch.testing.assert_close(torch.from_numpy(prediction.maps["anomaly_map"]), expected)


def test_training_separates_true_from_noisy_features():
    model = create_algorithm("simplenet", tiny=True)
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    first = model.fit_epoch(list(images.split(4)))["loss"]
    last = model.fit_epoch(list(images.split(4)))["loss"]
    assert last < first
    assert int(model.epochs_done) == 2


def test_cosine_schedule_anneals_the_discriminator_lr():
    model = create_algorithm("simplenet", tiny=True, cosine_lr=True, meta_epochs=2, gan_epochs=2)
    model.fit_epoch([torch.randn(4, 3, 64, 64)])
    adaptor_opt, dsc_opt = model._optimizers
    # T_max = (2 - 1) * 2 = 2 discriminator epochs: after 2 steps the lr is at eta_min = 0.4 * 2e-4
    assert dsc_opt.param_groups[0]["lr"] == pytest.approx(0.4 * 2e-4)
    assert adaptor_opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="noise_std"):
        create_algorithm("simplenet", tiny=True, noise_std=0.0)
    with pytest.raises(ValueError, match="patch_size"):
        create_algorithm("simplenet", tiny=True, patch_size=2)
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        create_algorithm("simplenet", tiny=True).predict(torch.randn(1, 3, 32, 32))

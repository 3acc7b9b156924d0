"""AnomalyDINO: shapes, distances, the top-1 % score, masking and rotation, and anomalib 2.7 as oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms.anomaly_dino.detector import AnomalyDino
from algorithms.anomaly_dino.model import (
    background_mask,
    cosine_nearest_distances,
    rotate_images,
)
from algorithms.components.blur import gaussian_blur
from algorithms.components.scores import topk_mean
from algorithms.registry import create_algorithm

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def _images(n: int, size: int = 56, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _fitted(n_train: int = 4, **overrides) -> AnomalyDino:
    torch.manual_seed(0)
    model = create_algorithm("anomaly_dino", tiny=True, **overrides)
    model.fit_epoch([])
    model.pre_eval(list(_images(n_train, model.input_size).split(2)))
    return model


# -- the publication configuration -------------------------------------------------------------


def test_publication_shapes_and_parameters():
    """DINOv2 ViT-S/14 at 448 px: a 32 x 32 grid of 384-d tokens; nothing is trained.

    Parameter count from the architecture (Oquab et al. 2023, ViT-S/14: width 384, depth 12,
    6 heads, MLP 1536, LayerScale): patch embedding 3*14*14*384 + 384, class token 384, positional
    embedding (1 + 32*32) * 384, per block 2 LayerNorms (2*768), qkv 384*1152 + 1152, projection
    384*384 + 384, MLP 384*1536 + 1536 + 1536*384 + 384, two LayerScales (2*384), final LayerNorm 768.
    """
    with torch.device("meta"):
        model = AnomalyDino(pretrained=False)
        tokens = model.model.extractor.forward_tokens(torch.zeros(2, 3, 448, 448))[0]
    assert model.input_size == 448 and model.hparams["backbone"] == "vit_small_patch14_dinov2.lvd142m"
    assert tokens.shape == (2, 1 + 32 * 32, 384)
    block = 2 * 768 + (384 * 1152 + 1152) + (384 * 384 + 384) + (384 * 1536 + 1536 + 1536 * 384 + 384) + 2 * 384
    expected = (3 * 14 * 14 * 384 + 384) + 384 + (1 + 1024) * 384 + 12 * block + 768
    assert sum(p.numel() for p in model.parameters()) == expected == 21_923_712
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 0


# -- distances, score, masking, rotation -------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_cosine_nearest_distances_equal_brute_force(k):
    generator = torch.Generator().manual_seed(0)
    queries = F.normalize(torch.randn(37, 16, generator=generator), dim=1)
    bank = F.normalize(torch.randn(53, 16, generator=generator), dim=1)
    cos = queries.double() @ bank.double().t()
    expected = (1 - cos).sort(dim=1).values[:, :k].mean(dim=1)
    got = cosine_nearest_distances(queries, bank, k=k, block_elements=200)  # several blocks
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6)
    # the official faiss route: squared L2 on unit vectors, halved
    l2 = torch.cdist(queries.double(), bank.double()) ** 2 / 2
    torch.testing.assert_close(got.double(), l2.sort(dim=1).values[:, :k].mean(dim=1), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="k must be in"):
        cosine_nearest_distances(queries, bank[:2], k=3)


def test_mean_of_the_top_one_percent_by_hand():
    values = torch.zeros(2, 250)
    values[0, :4] = torch.tensor([9.0, 7.0, 5.0, 3.0])  # int(2.5) = 2 largest: (9 + 7) / 2
    values[1, 10] = 4.0
    assert topk_mean(values, ratio=0.01).tolist() == [8.0, 2.0]
    few = torch.tensor([[0.5, 2.0, 1.0]])  # int(0.03) = 0: the maximum (official mean_top1p)
    assert topk_mean(few, ratio=0.01).tolist() == [2.0]


def _two_region_tokens(*, centre_object: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """10 x 10 tokens whose first principal component separates a 5 x 5 object from the background."""
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    if centre_object:
        inside = (yy >= 3) & (yy < 8) & (xx >= 3) & (xx < 8)
    else:
        inside = (yy < 5) & (xx < 5)
    direction = F.normalize(torch.randn(12, generator=generator), dim=0)
    level = torch.where(inside.reshape(-1, 1), 40.0, -40.0 / 3.0)  # centred: object +40, background -13.3
    tokens = level * direction + torch.randn(100, 12, generator=generator)
    return tokens, inside.reshape(-1)


def test_background_mask_equals_anomalib_and_keeps_the_object():
    from anomalib.models.image.anomaly_dino.torch_model import AnomalyDINOModel

    for centre_object in (True, False):
        tokens, _ = _two_region_tokens(centre_object=centre_object)
        ours = background_mask(tokens, (10, 10))
        theirs = AnomalyDINOModel.compute_background_masks(tokens.numpy()[None], (10, 10))[0]
        np.testing.assert_array_equal(ours.numpy(), theirs)
    # Whatever the component's sign, a centred object (rows and columns 3-7) ends up foreground
    # (the 35 % centre rule), grown by the 3 x 3 dilation to 2-8; the closing's second dilation
    # reaches the last row and column and its erosion, which never erodes from outside the grid
    # (OpenCV's border rule), keeps them: rows and columns 2-9.
    for sign in (1.0, -1.0):
        tokens, inside = _two_region_tokens()
        mask = background_mask(sign * tokens, (10, 10)).reshape(10, 10)
        assert mask.reshape(-1)[inside].all() and int(mask.sum()) == 64
        assert mask[2:, 2:].all() and not mask[:2].any() and not mask[:, :2].any()


def test_rotations_are_about_the_centre_and_invertible():
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    x = torch.stack([torch.sin(yy / 5), torch.cos(xx / 4), torch.sin((xx + yy) / 6)])[None]  # smooth
    assert torch.equal(rotate_images(x, 90), torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.equal(rotate_images(x, 0), x)
    centre = slice(9, 19)
    # 45 then 315 degrees: the identity (up to bilinear smoothing) away from the reflected corners
    back = rotate_images(rotate_images(x, 45), 315)
    assert (back - x)[..., centre, centre].abs().max() < 0.05
    # two 45-degree rotations by the generic path agree with the exact 90-degree one
    twice = rotate_images(rotate_images(x, 45), 45)
    assert (twice - rotate_images(x, 90))[..., centre, centre].abs().max() < 0.05
    assert (rotate_images(x, 45) - x)[..., centre, centre].abs().max() > 0.3  # it did rotate


# -- the detector ------------------------------------------------------------------------------


def test_bank_scores_and_maps_by_hand():
    model = _fitted(n_train=4)
    assert model.memory_bank.shape == (4 * 16, 32)  # every token of every training image (4 x 4 grid)
    torch.testing.assert_close(model.memory_bank.norm(dim=1), torch.ones(64))
    test = _images(3, seed=9)
    prediction = model.predict(test)
    with torch.no_grad():
        tokens = F.normalize(model.model.extractor(test)[0], dim=1)  # (3, 32, 4, 4)
        cos = tokens.flatten(2).transpose(1, 2) @ model.memory_bank.t()
        distances = (1 - cos.amax(dim=2)).reshape(3, 4, 4)
    # 16 patches: int(0.16) = 0 -> the maximum patch distance
    np.testing.assert_allclose(prediction.scores, distances.amax(dim=(1, 2)).numpy(), rtol=0, atol=1e-6)
    expected = gaussian_blur(
        F.interpolate(distances[:, None], size=56, mode="bilinear", align_corners=False)[:, 0], 4.0
    )
    np.testing.assert_allclose(prediction.maps["anomaly_map"], expected.numpy(), rtol=0, atol=1e-6)
    # a training image's patches are in the bank: distance 0 everywhere
    train_prediction = model.predict(_images(4, seed=0)[:2])
    np.testing.assert_allclose(train_prediction.scores, 0.0, atol=1e-6)


def test_rotation_multiplies_the_bank_and_masking_zeroes_background():
    rotated = _fitted(n_train=2, rotation=True)
    assert rotated.memory_bank.shape == (2 * 8 * 16, 32)
    # A 10 x 10 grid with a bright square (random-init tokens: the threshold is set for them).
    masked = _fitted(n_train=2, masking=True, mask_threshold=4.0, input_size=140)
    test = torch.randn(2, 3, 140, 140, generator=torch.Generator().manual_seed(5)) * 0.2
    test[:, :, 28:112, 28:112] += 2.0
    with torch.no_grad():
        raw = masked.model.extractor.forward_tokens(test)[0][:, masked.model.extractor.num_prefix_tokens :]
        keep = torch.stack([background_mask(t, (10, 10), threshold=4.0) for t in raw]).reshape(2, 10, 10)
        distances = masked.model.patch_distances(test)
    assert (~keep).any() and keep.any()  # partly masked, and exactly the masked patches are zero
    assert torch.equal(distances == 0, ~keep)
    # the zeros count in the image score (official mean_top1p over all patches)
    scores = masked.predict(test).scores
    np.testing.assert_allclose(scores, topk_mean(distances.reshape(2, -1), ratio=0.01).numpy(), atol=1e-6)


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="num_neighbours"):
        create_algorithm("anomaly_dino", tiny=True, num_neighbours=0)
    with pytest.raises(ValueError, match="top_fraction"):
        create_algorithm("anomaly_dino", tiny=True, top_fraction=0.0)
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        create_algorithm("anomaly_dino", tiny=True, input_size=64)
    model = create_algorithm("anomaly_dino", tiny=True)
    with pytest.raises(RuntimeError, match="memory bank is empty"):
        model.predict(_images(1))
    with pytest.raises(ValueError, match=r"\(B, 3, 56, 56\)"):
        _fitted().predict(_images(1, 70))


# -- anomalib 2.7 as oracle --------------------------------------------------------------------


def _anomalib_model(monkeypatch, depth: int = 12):
    """anomalib's AnomalyDINOModel on a random-initialised small DINOv2 (it hard-codes pretrained=True
    and taps block 11 of a "small" model: the download is turned off, the width shrunk, depth kept)."""
    import timm
    from anomalib.models.image.anomaly_dino.torch_model import AnomalyDINOModel

    create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        return create(name, pretrained=False, **{**kwargs, "embed_dim": 32, "num_heads": 2, "depth": depth})

    monkeypatch.setattr(timm, "create_model", offline)
    torch.manual_seed(0)
    model = AnomalyDINOModel(num_neighbours=1, encoder_name="vit_small_patch14_dinov2", masking=False)
    monkeypatch.undo()
    return model


def test_outputs_equal_anomalib_with_the_same_backbone(monkeypatch):
    from timm.layers import resample_abs_pos_embed

    theirs = _anomalib_model(monkeypatch)
    size = 56
    ours = AnomalyDino(input_size=size, pretrained=False, model_kwargs={"depth": 12, "embed_dim": 32, "num_heads": 2})
    # Weight mapping: identical timm modules; anomalib resamples its 37 x 37 positional embedding at
    # every call (dynamic_img_size, antialiasing off: anomalib patches timm), ours holds the 4 x 4 one.
    state = {k: v for k, v in theirs.feature_encoder.feature_extractor.state_dict().items() if not k.startswith("head")}
    state["pos_embed"] = resample_abs_pos_embed(
        state["pos_embed"], new_size=(4, 4), num_prefix_tokens=1, antialias=False
    )
    ours.model.extractor.model.load_state_dict(state)
    train, test = _images(6, size, seed=1), _images(4, size, seed=2)
    theirs.train()
    for batch in train.split(3):
        theirs(batch)
    theirs.fit()
    theirs.eval()
    ours.pre_eval(list(train.split(3)))
    torch.testing.assert_close(ours.memory_bank, theirs.memory_bank, rtol=0, atol=1e-5)
    with torch.no_grad():
        reference = theirs(test)
    prediction = ours.predict(test)
    np.testing.assert_allclose(prediction.scores, reference.pred_score[:, 0].numpy(), rtol=0, atol=1e-4)
    # anomalib departs from the official dists2map: nearest-neighbour upsampling (F.interpolate's default)
    # instead of bilinear (cv2.resize INTER_LINEAR). With that one step swapped, the maps are equal.
    with torch.no_grad():
        distances = ours.model.patch_distances(test)
    nearest = gaussian_blur(F.interpolate(distances[:, None], size=size, mode="nearest")[:, 0], 4.0)
    np.testing.assert_allclose(nearest.numpy(), reference.anomaly_map[:, 0].numpy(), rtol=0, atol=1e-4)
    assert not np.allclose(prediction.maps["anomaly_map"], reference.anomaly_map[:, 0].numpy(), atol=1e-4)
    bilinear = gaussian_blur(F.interpolate(distances[:, None], size=size, mode="bilinear")[:, 0], 4.0)
    np.testing.assert_allclose(prediction.maps["anomaly_map"], bilinear.numpy(), rtol=0, atol=1e-6)
    assert math.isclose(float(prediction.scores.max()), float(reference.pred_score.max()), abs_tol=1e-4)

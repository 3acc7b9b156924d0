"""EfficientAD: PDN/autoencoder architecture, teacher loading, losses, normalisation, schedule, API."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F

from algorithms.efficient_ad.detector import EfficientAd, color_jitter, holdout_size, image_fingerprints, paper_epochs
from algorithms.efficient_ad.model import AutoEncoder, make_pdn, pdn_output_size
from algorithms.registry import create_algorithm, get_algorithm_info, load_algorithm

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """ImageNet-normalised images of valid [0, 1] pixels."""
    pixels = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return (pixels - MEAN) / STD


def _tiny(**overrides) -> EfficientAd:
    # The tiny config never reads weight files (pretrained=False); tests that hand the model a
    # teacher file or an ImageNet folder ask for them to be read.
    if "teacher_weights" in overrides or "imagenet_dir" in overrides:
        overrides.setdefault("pretrained", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return create_algorithm("efficient_ad", tiny=True, **overrides)


def _medium_reference(x: torch.Tensor, w: list[torch.Tensor]) -> torch.Tensor:
    """The paper's medium PDN written out functionally (no padding anywhere)."""
    x = F.avg_pool2d(F.relu(F.conv2d(x, w[0], w[1])), 2, 2)
    x = F.avg_pool2d(F.relu(F.conv2d(x, w[2], w[3])), 2, 2)
    x = F.relu(F.conv2d(x, w[4], w[5]))
    x = F.relu(F.conv2d(x, w[6], w[7]))
    x = F.relu(F.conv2d(x, w[8], w[9]))
    return F.conv2d(x, w[10], w[11])


def test_publication_defaults_and_schedule():
    defaults = {k: v.default for k, v in inspect.signature(EfficientAd.__init__).parameters.items()}
    assert defaults["model_size"] == "medium" and defaults["out_channels"] == 384 and defaults["input_size"] == 256
    assert defaults["lr"] == 1e-4 and defaults["weight_decay"] == 1e-5 and defaults["train_steps"] == 70_000
    assert defaults["hard_quantile"] == 0.999 and (defaults["q_a"], defaults["q_b"]) == (0.9, 0.995)
    assert defaults["imagenet_dir"] is None
    schedule = get_algorithm_info("efficient_ad").schedule
    assert (schedule.iterations, schedule.batch_size) == (defaults["train_steps"], 1)
    assert paper_epochs(200) == 350 and paper_epochs(200, batch_size=8) == 2800


def test_pdn_sizes_and_teacher_loading_from_either_key_style(tmp_path):
    assert pdn_output_size(256) == 56
    medium = make_pdn("medium", 384)
    shapes = [tuple(p.shape) for p in medium.parameters()]
    assert shapes[0] == (256, 3, 4, 4) and shapes[2] == (512, 256, 4, 4) and shapes[-2] == (384, 384, 1, 1)
    assert [tuple(p.shape) for p in make_pdn("small", 384).parameters()][::2] == [
        (128, 3, 4, 4),
        (256, 128, 4, 4),
        (256, 256, 3, 3),
        (384, 256, 4, 4),
    ]
    generator = torch.Generator().manual_seed(0)
    weights = [
        0.05 * torch.randn(p.shape, generator=generator) for p in make_pdn("medium", 8, width=0.125).parameters()
    ]
    names = [f"conv{i // 2 + 1}.{'weight' if i % 2 == 0 else 'bias'}" for i in range(len(weights))]  # anomalib style
    torch.save(dict(zip(names, weights)), tmp_path / "teacher.pth")
    model = _tiny(model_size="medium", width=0.125, out_channels=8, teacher_weights=str(tmp_path / "teacher.pth"))
    assert model.metadata["random_teacher"] is False
    x = _images(2)
    with torch.no_grad():
        torch.testing.assert_close(model.teacher(x), _medium_reference(x, weights))
    sequential_keys = list(make_pdn("medium", 8, width=0.125).state_dict())  # the authors' "0.weight", "3.weight"...
    torch.save(dict(zip(sequential_keys, weights)), tmp_path / "official.pth")
    other = _tiny(model_size="medium", width=0.125, out_channels=8, teacher_weights=str(tmp_path / "official.pth"))
    assert all(torch.equal(a, b) for a, b in zip(other.teacher.parameters(), model.teacher.parameters()))
    model.save(tmp_path / "saved")
    (tmp_path / "teacher.pth").unlink()  # a saved model carries its teacher: the file is not needed
    loaded = load_algorithm(tmp_path / "saved")
    assert loaded.hparams["teacher_weights"] == str(tmp_path / "teacher.pth")
    assert all(torch.equal(a, b) for a, b in zip(loaded.teacher.parameters(), model.teacher.parameters()))


def test_teacher_weight_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        _tiny(teacher_weights=str(tmp_path / "missing.pth"))
    torch.save({"0.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit this PDN"):
        _tiny(teacher_weights=str(tmp_path / "bad.pth"))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(ValueError, match="state_dict"):
        _tiny(teacher_weights=str(tmp_path / "module.pth"))


def test_random_teacher_warns_and_says_so_in_metadata():
    with pytest.warns(UserWarning, match="randomly initialised teacher"):
        model = create_algorithm("efficient_ad", tiny=True)
    assert model.metadata["random_teacher"] is True and "teacher_weights" in model.metadata["warning"]


def test_autoencoder_matches_the_paper_at_256():
    ae = AutoEncoder(16, input_size=256, output_size=56)
    assert ae.encoder[-1].kernel_size == (8, 8)
    assert ae.sizes == [3, 8, 15, 32, 63, 127, 56]
    assert ae(torch.zeros(1, 3, 256, 256)).shape == (1, 16, 56, 56)


def test_color_jitter_is_seeded_bounded_and_identity_at_zero_strength():
    x = _images(6, size=16)
    a = color_jitter(x, torch.Generator().manual_seed(1))
    b = color_jitter(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, x)
    pixels = a * STD + MEAN
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    torch.testing.assert_close(color_jitter(x, torch.Generator().manual_seed(1), strength=0.0), x)
    # a brightness change keeps hue: every pixel's channels scale by one common factor
    bright = torch.full((1, 3, 4, 4), 0.25)
    out = color_jitter((bright - MEAN) / STD, torch.Generator().manual_seed(3)) * STD + MEAN
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)


def test_teacher_statistics_hard_loss_and_step_schedule():
    model = _tiny(train_steps=2)
    loader = [_images(2, seed=1), _images(2, seed=2)]
    model.fit_epoch(loader)
    everything = torch.cat(loader)
    held = model._held_out(everything)
    assert int(held.sum()) == 1  # 4 - int(0.9 * 4) images held out for the map quantiles
    with torch.no_grad():
        outs = model.teacher(everything[~held])  # statistics of the training part only
    torch.testing.assert_close(model.teacher_mean.flatten(), outs.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        model.teacher_std.flatten(), outs.std(dim=(0, 2, 3), unbiased=False), atol=1e-5, rtol=1e-5
    )
    assert int(model.steps_done) == 2
    assert model._optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)  # the second step is past 95%
    assert model.fit_epoch(loader) == {"steps_done": 2.0}  # the planned steps are done
    # hard-feature loss: mean of the distances at or above their 0.999 quantile
    x = loader[0]
    with torch.no_grad():
        losses = model._losses(x, x, None)
        c = model.hparams["out_channels"]
        distance = (model._teacher_features(x) - model.student(x)[:, :c]) ** 2
        flat = distance.flatten().sort().values
        k = round(0.001 * (flat.numel() - 1) + 0.5)
        assert losses["loss_st"].item() == pytest.approx(flat[-k - 1 :].mean().item(), rel=0.05)
        assert losses["loss_st"].item() > distance.mean().item()


def test_maps_are_normalised_by_training_quantiles():
    model = _tiny()
    loader = [_images(3, seed=4)]
    model.fit_epoch(loader)
    model.pre_eval(loader)
    model.eval()
    held = model._held_out(loader[0])
    assert held.tolist().count(True) == 1  # 3 - int(0.9 * 3)
    with torch.no_grad():
        map_st, map_ae = model._raw_maps(loader[0])
    q = model.map_quantiles  # quantiles of the raw maps of the held-out image only
    assert q[0].item() == pytest.approx(torch.quantile(map_st[held].flatten(), 0.9).item(), rel=1e-5)
    assert q[3].item() == pytest.approx(torch.quantile(map_ae[held].flatten(), 0.995).item(), rel=1e-5)
    prediction = model.predict(loader[0])
    assert list(prediction.maps) == ["combined", "student_teacher", "student_autoencoder"]
    st = 0.1 * (map_st - q[0]) / (q[1] - q[0])
    expected = F.interpolate(F.pad(st[:, None], (4, 4, 4, 4)), size=(64, 64), mode="bilinear")[:, 0]
    torch.testing.assert_close(torch.from_numpy(prediction.maps["student_teacher"]), expected, atol=1e-6, rtol=1e-5)
    combined = 0.5 * prediction.maps["student_teacher"] + 0.5 * prediction.maps["student_autoencoder"]
    assert prediction.maps["combined"] == pytest.approx(combined, abs=1e-6)
    # the official score: the maximum of the combined map after padding and upsampling
    assert prediction.scores.tolist() == pytest.approx(prediction.maps["combined"].max(axis=(1, 2)).tolist(), rel=1e-6)


@pytest.mark.parametrize(("n", "held"), [(0, 0), (1, 0), (2, 1), (3, 1), (10, 1), (11, 2), (20, 2), (209, 21)])
def test_holdout_size_is_the_official_split(n, held):
    assert holdout_size(n) == held  # n - int(0.9 n): random_split(full, [int(0.9 n), n - int(0.9 n)])


def test_held_out_images_are_chosen_by_content_and_never_trained_on():
    images = _images(10, seed=7)
    shuffled = [images[[3, 1, 8, 0, 5]], images[[9, 2, 7, 4, 6]]]
    a, b = _tiny(seed=2, train_steps=100), _tiny(seed=2, train_steps=100)
    a.fit_epoch([images[:5], images[5:]])
    b.fit_epoch(shuffled)
    assert torch.equal(a.holdout_fingerprints, b.holdout_fingerprints)  # independent of the order
    assert a.holdout_fingerprints.numel() == 1
    assert torch.equal(image_fingerprints(images), image_fingerprints(images.clone()))
    held = images[a._held_out(images)]
    steps = int(a.steps_done)
    before = {k: v.clone() for k, v in a.student.state_dict().items()}
    a.fit_epoch([held])  # a batch of held-out images only: no step, no change
    assert int(a.steps_done) == steps
    assert all(torch.equal(v, before[k]) for k, v in a.student.state_dict().items())
    other_seed = _tiny(seed=3, train_steps=100)
    other_seed.fit_epoch([images])
    assert other_seed.holdout_fingerprints.numel() == 1


def test_fit_predict_save_load_and_determinism(tmp_path):
    loader = [_images(2, seed=10)]
    test = _images(2, seed=12)
    runs = []
    for offset in range(2):
        torch.manual_seed(5 + offset)  # the global state must not matter (dropout, jitter)
        model = _tiny(seed=4)
        model.fit_epoch(loader)
        model.pre_eval(loader)
        runs.append(model)
    a, b = runs[0].predict(test), runs[1].predict(test)
    assert (a.scores == b.scores).all()
    assert all((a.maps[k] == b.maps[k]).all() for k in a.maps)
    runs[0].save(tmp_path / "ead")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loaded = load_algorithm(tmp_path / "ead")
    c = loaded.predict(test)
    assert (c.scores == a.scores).all() and all((c.maps[k] == a.maps[k]).all() for k in a.maps)


def test_bad_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="model_size"):
        _tiny(model_size="large")
    with pytest.raises(ValueError, match="at least 64"):
        _tiny(input_size=32)
    with pytest.raises(ValueError, match="q_a < q_b"):
        _tiny(q_a=0.99, q_b=0.9)
    with pytest.raises(FileNotFoundError, match="imagenet_dir"):
        _tiny(imagenet_dir=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        _tiny(imagenet_dir=str(tmp_path / "empty"))


def test_imagenet_penalty_uses_the_folder(tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "imagenet"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    model = _tiny(imagenet_dir=str(folder))
    penalty = model._penalty.sample(2, torch.Generator().manual_seed(0))
    assert penalty.shape == (2, 3, 64, 64)
    logs = model.fit_epoch([_images(2)])
    assert all(np.isfinite(v) for v in logs.values())


def test_replicate_padding_fills_the_border_with_the_nearest_valid_values():
    model = _tiny(map_padding="replicate")
    x = _images(2, seed=6)
    model.eval()
    with torch.no_grad():
        map_st, _ = model._raw_maps(x)
    maps = model.predict(x).maps["student_teacher"]
    expected = F.interpolate(F.pad(map_st[:, None], (4, 4, 4, 4), mode="replicate"), size=(64, 64), mode="bilinear")
    torch.testing.assert_close(torch.from_numpy(maps), expected[:, 0], atol=1e-6, rtol=1e-5)
    assert maps[:, :8, :8].min() > 0  # raw squared distances, never the zero padding
    with pytest.raises(ValueError, match="map_padding"):
        _tiny(map_padding="reflect")

"""One shared conformance test for every registered algorithm (tiny config, CPU, random weights).

New algorithms are covered automatically: the tests are parametrised over ``list_algorithms()``
(the registry discovers every ``algorithms/<key>/`` package with a detector module; the layout
itself is checked in ``test_recipe.py``). It checks: training for the record's ``tiny_epochs``,
prediction, the output contract and the declared map variants, a save/load round trip giving
identical outputs, and determinism under a seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.base import AnomalyDetector, Prediction
from algorithms.registry import create_algorithm, get_algorithm_info, list_algorithms, load_algorithm
from algorithms.utils import seed_everything

N_TRAIN, N_TEST, BATCH = 8, 4, 4


def _images(n: int, size: int, *, seed: int, defect: bool = False) -> torch.Tensor:
    """Smooth stripes plus a little noise (ImageNet-normalised scale); optionally a bright square."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 6.283, size)
    base = torch.sin(ys[None, :] * 3 + ys[:, None])  # (S, S)
    images = base.expand(n, 3, size, size) + 0.1 * torch.randn(n, 3, size, size, generator=generator)
    if defect:
        q = size // 4
        images = images.clone()
        images[:, :, q : 2 * q, q : 2 * q] = 2.5
    return images.contiguous()


def _fit_and_predict(name: str, *, seed: int = 0) -> tuple[AnomalyDetector, Prediction, torch.Tensor, list]:
    seed_everything(seed)
    model = create_algorithm(name, tiny=True)
    size = model.input_size
    train = list(_images(N_TRAIN, size, seed=1).split(BATCH))
    test = torch.cat([_images(N_TEST // 2, size, seed=2), _images(N_TEST // 2, size, seed=3, defect=True)])
    for _ in range(get_algorithm_info(name).tiny_epochs):
        model.train()
        logs = model.fit_epoch(train)
        assert isinstance(logs, dict), f"{name}.fit_epoch must return a dict of scalars"
        for key, value in logs.items():
            assert isinstance(key, str) and np.isfinite(float(value)), f"{name}: bad log {key}={value!r}"
    model.pre_eval(train)
    return model, model.predict(test), test, train


def _assert_same(a: Prediction, b: Prediction, name: str, what: str) -> None:
    assert list(a.maps) == list(b.maps), f"{name}: {what} changed the map variants"
    np.testing.assert_array_equal(a.scores, b.scores, err_msg=f"{name}: {what} changed the scores")
    for key in a.maps:
        np.testing.assert_array_equal(a.maps[key], b.maps[key], err_msg=f"{name}: {what} changed map {key!r}")


_FIRST_PREDICTIONS: dict[str, Prediction] = {}


@pytest.mark.parametrize("name", list_algorithms())
def test_conformance(name, tmp_path):
    model, prediction, test, _train = _fit_and_predict(name)
    _FIRST_PREDICTIONS[name] = prediction

    # outputs: one finite score per image, named (N, H, W) maps
    assert prediction.scores.shape == (len(test),)
    assert prediction.scores.dtype == np.float32 and np.isfinite(prediction.scores).all()
    assert prediction.maps, f"{name}: no anomaly maps"
    for key, value in prediction.maps.items():
        assert value.ndim == 3 and value.shape[0] == len(test) and min(value.shape[1:]) >= 1, (name, key)
        assert value.dtype == np.float32 and np.isfinite(value).all(), (name, key)
    info = get_algorithm_info(name)
    assert list(prediction.maps) == list(info.map_variants), f"{name}: maps differ from AlgorithmInfo.map_variants"
    if not info.is_baseline:
        primary = prediction.maps[prediction.primary_map]
        assert primary.std() > 0, f"{name}: constant anomaly maps"
    # predict leaves no gradients behind and works on a batch of one
    single = model.predict(test[:1])
    assert single.scores.shape == (1,)

    # config round trip: the hyperparameters rebuild the same algorithm
    config = model.get_config()
    assert create_algorithm(name, **config).get_config() == config

    # save / load: identical outputs on the next call
    path = model.save(tmp_path / name)
    loaded = load_algorithm(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == config
    _assert_same(model.predict(test), loaded.predict(test), name, "save/load")

    # determinism: a fresh run under the same seed gives identical outputs
    _, again, _, _ = _fit_and_predict(name)
    _assert_same(prediction, again, name, "a second seeded run")


@pytest.mark.parametrize("name", list_algorithms(include_baselines=False))
def test_scores_rank_a_planted_defect_above_normal_images(name):
    """Even tiny and random-initialised, a real method sees a large bright square."""
    prediction = _FIRST_PREDICTIONS.get(name) or _fit_and_predict(name)[1]
    normal, defective = prediction.scores[: N_TEST // 2], prediction.scores[N_TEST // 2 :]
    assert defective.min() > normal.max(), f"{name}: scores {prediction.scores}"

"""Registry, metadata, the contract checks of the base class, and backbone weight loading."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from algorithms import registry
from algorithms.base import AnomalyDetector, ContractError, hparams_from_locals, validate_prediction
from algorithms.components.feature_extractor import FeatureExtractor, PretrainedWeightsUnavailable
from algorithms.info import AlgorithmInfo, Family, Schedule
from algorithms.registry import (
    AlgorithmPackageError,
    UnknownAlgorithmError,
    create_algorithm,
    get_algorithm_class,
    get_algorithm_info,
    list_algorithms,
    load_algorithm,
    register_algorithm,
)
from algorithms.runspec import RunSpec


class Broken(AnomalyDetector):
    """Returns whatever the test puts in ``outputs`` (not registered: keeps the registry clean)."""

    algorithm_name = "broken_example"

    def __init__(self, *, input_size: int = 32) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.outputs = None

    def fit_epoch(self, train_loader):
        return {}

    def _predict(self, images):
        return self.outputs(images)


def _info(key: str, **fields) -> AlgorithmInfo:
    values = {"display_name": key.title(), "family": Family.OTHER, "schedule": Schedule(epochs=1, batch_size=2)}
    return AlgorithmInfo(key=key, **{**values, **fields})


@pytest.fixture
def temporary_registration():
    added = []

    def register(cls, info):
        register_algorithm(info)(cls)
        added.append(info.key)
        return cls

    yield register
    for key in added:
        registry.unregister_algorithm(key)


def test_builtins_are_registered_with_metadata():
    names = list_algorithms()
    assert {"patchcore", "random"} <= set(names)
    assert names == sorted(names)
    assert "random" not in list_algorithms(include_baselines=False)
    assert list_algorithms("patch*") == ["patchcore"]
    info = get_algorithm_info("patchcore")
    assert info.display_name == "PatchCore"
    assert info.family is Family.MEMORY_BANK and info.family.display_name == "Memory bank"
    assert info.one_shot and not info.is_baseline and info.primary_variant == "anomaly_map"
    assert info.paper_url.startswith("https://") and info.code_licence == "Apache-2.0"
    assert get_algorithm_class("patchcore").algorithm_name == "patchcore"
    assert get_algorithm_info("efficient_ad").secondary_family is Family.RECONSTRUCTION
    assert get_algorithm_info("efficient_ad").schedule.summary().startswith("70,000 iterations, batch 1, 256 px; Adam")


@pytest.mark.parametrize("name", list_algorithms())
def test_metadata_matches_the_class(name):
    cls, info = get_algorithm_class(name), get_algorithm_info(name)
    signature = inspect.signature(cls.__init__)
    assert signature.parameters["input_size"].default == info.schedule.input_size
    assert info.display_name and isinstance(info.family, Family)
    assert info.description, f"{name}: say in one sentence how the method finds anomalies"
    for url in (info.paper_url, info.code_url):
        assert not url or url.startswith("https://"), f"{name}: links are https URLs, got {url!r}"
    assert info.code_licence or not info.code_url, f"{name}: give the licence of {info.code_url} (or 'none')"
    for what, params in (("tiny", info.tiny), ("demo", info.demo.get("params", {}))):
        unknown = set(params) - set(signature.parameters)
        assert not unknown, f"{what} names unknown hyperparameters {unknown}"
        if "pretrained" in signature.parameters:
            assert params.get("pretrained") is False, f"{what}: tests and the CPU demo never download weights"
    assert info.tiny.get("input_size", 10**6) <= 64
    # the demo settings are a valid run entry (same validator as every config)
    RunSpec.from_entry({"algorithm": name, **info.demo}, shared={"categories": ["synthetic/woven"]})
    # every hyperparameter is keyword-only (the registry builds algorithms from keywords)
    for pname, param in signature.parameters.items():
        if pname != "self":
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}.{pname} must be keyword-only"


def test_algorithm_info_is_checked_when_declared():
    schedule = Schedule(epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="snake_case"):
        _info("Bad-Name")
    with pytest.raises(ValueError, match=r"family must be one of memory_bank, .*, other .* got 'flow'"):
        _info("x", family="flow")
    assert _info("x", family="normalizing_flow").family is Family.NORMALIZING_FLOW
    with pytest.raises(ValueError, match="secondary_family repeats"):
        _info("x", secondary_family=Family.OTHER)
    with pytest.raises(ValueError, match="exactly one of epochs and iterations"):
        Schedule(epochs=2, iterations=100, batch_size=1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Schedule(epochs=2, batch_size=0)
    with pytest.raises(ValueError, match="one-shot method's schedule is epochs=1"):
        _info("x", one_shot=True, schedule=Schedule(epochs=3, batch_size=1))
    with pytest.raises(ValueError, match="map_variants must be distinct"):
        _info("x", map_variants=("a", "a"))
    with pytest.raises(ValueError, match="tiny must hold JSON values"):
        _info("x", tiny={"size": object()})
    with pytest.raises(ValueError, match="demo is a run entry without 'algorithm'"):
        _info("x", demo={"algorithm": "y"})
    info = _info("x", schedule=schedule, tiny={"input_size": 8})
    with pytest.raises(TypeError):
        info.tiny["input_size"] = 9  # read-only
    assert json.loads(json.dumps(info.to_json()))["family_display"] == "Other"


def test_create_algorithm_applies_tiny_then_overrides():
    model = create_algorithm("patchcore", tiny=True, coreset_ratio=0.5)
    assert model.hparams["backbone"] == "resnet18"
    assert model.hparams["coreset_ratio"] == 0.5
    assert model.hparams["input_size"] == 64
    assert create_algorithm("random").input_size == 256


def test_unknown_names_and_hyperparameters_are_named():
    with pytest.raises(UnknownAlgorithmError, match=r"unknown algorithm 'nope'.*patchcore"):
        create_algorithm("nope")
    with pytest.raises(UnknownAlgorithmError, match=r"unknown algorithm 'nope'"):
        get_algorithm_info("nope")
    with pytest.raises(TypeError, match=r"^random: .*colour"):
        create_algorithm("random", colour="red")


def test_register_rejects_duplicates_and_bare_names(temporary_registration):
    with pytest.raises(TypeError, match="takes the algorithm's AlgorithmInfo"):
        register_algorithm("tmp_broken")
    tmp = temporary_registration(type("TmpBroken", (Broken,), {}), _info("tmp_broken"))
    assert "tmp_broken" in list_algorithms()
    assert get_algorithm_class("tmp_broken").algorithm_name == "tmp_broken"

    class Other(Broken):
        pass

    with pytest.raises(AlgorithmPackageError, match="already registered"):
        register_algorithm(_info("tmp_broken"))(Other)
    with pytest.raises(AlgorithmPackageError, match="two algorithms are registered as 'tmp_broken'"):
        register_algorithm(_info("tmp_broken", display_name="Another record"))(tmp)


def test_input_size_is_mandatory():
    class NoSize(AnomalyDetector):
        def __init__(self, *, width: int = 3) -> None:
            super().__init__(**hparams_from_locals(locals()))

    with pytest.raises(TypeError, match="input_size"):
        NoSize()


# -- the contract checks name the algorithm -------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (lambda x: (torch.zeros(len(x) + 1), {"m": torch.zeros(len(x), 8, 8)}), r"one score per image, shape \(2,\)"),
        (lambda x: (torch.zeros(len(x), 3), {"m": torch.zeros(len(x), 8, 8)}), r"one score per image"),
        (lambda x: (torch.full((len(x),), float("nan")), {"m": torch.zeros(len(x), 8, 8)}), "scores contain NaN"),
        (lambda x: (torch.zeros(len(x)), {"m": torch.zeros(len(x), 8)}), r"map 'm' must have shape \(2, H, W\)"),
        (lambda x: (torch.zeros(len(x)), {"m": torch.zeros(len(x) + 1, 8, 8)}), r"map 'm' must have shape"),
        (lambda x: (torch.zeros(len(x)), {"m": torch.full((len(x), 8, 8), float("inf"))}), "'m' contains NaN"),
        (lambda x: (torch.zeros(len(x)), {}), "non-empty dict"),
        (lambda x: (torch.zeros(len(x)), torch.zeros(len(x), 8, 8)), "non-empty dict"),
        (lambda x: ([0.0, 1.0], {"m": torch.zeros(len(x), 8, 8)}), "torch.Tensor or numpy array"),
        (lambda x: (torch.zeros(len(x)), {"": torch.zeros(len(x), 8, 8)}), "non-empty strings"),
        (lambda x: (np.array(["a", "b"]), {"m": torch.zeros(len(x), 8, 8)}), "numeric"),
    ],
)
def test_contract_violations_name_the_algorithm(outputs, message):
    model = Broken()
    model.outputs = outputs
    with pytest.raises(ContractError, match=message) as info:
        model.predict(torch.zeros(2, 3, 32, 32))
    assert str(info.value).startswith("broken_example: ")


def test_valid_outputs_are_normalised_to_float32():
    prediction = validate_prediction(
        "x", 2, torch.tensor([[1.0], [2.0]], dtype=torch.float64), {"a": np.ones((2, 1, 4, 5)), "b": np.ones((2, 3, 3))}
    )
    assert prediction.scores.dtype == np.float32 and prediction.scores.shape == (2,)
    assert prediction.maps["a"].shape == (2, 4, 5) and prediction.maps["a"].dtype == np.float32
    assert prediction.primary_map == "a"


def test_predict_rejects_bad_images_and_restores_training_mode():
    model = Broken()
    model.outputs = lambda x: (torch.zeros(len(x)), {"m": torch.zeros(len(x), 4, 4)})
    with pytest.raises(ValueError, match=r"broken_example: predict expects a \(B, 3, H, W\) tensor"):
        model.predict(torch.zeros(2, 1, 32, 32))
    model.train()
    model.predict(torch.zeros(1, 3, 8, 8))
    assert model.training


def test_load_missing_directory_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_algorithm(tmp_path / "nothing")
    with pytest.raises(TypeError, match="load_algorithm"):
        AnomalyDetector.load(tmp_path / "nothing")


def test_a_class_loads_only_its_own_checkpoints(tmp_path):
    from algorithms.patchcore.detector import PatchCore

    saved = create_algorithm("random", tiny=True).save(tmp_path / "r")
    assert type(load_algorithm(saved)).__name__ == "RandomBaseline"
    with pytest.raises(ValueError, match="holds a saved 'random', not 'patchcore'"):
        PatchCore.load(saved)


# -- backbone weights -------------------------------------------------------------------------


def test_missing_weights_file_says_so(tmp_path):
    missing = tmp_path / "resnet18.pth"
    with pytest.raises(PretrainedWeightsUnavailable, match=r"weights file for 'resnet18' not found: .*resnet18\.pth"):
        FeatureExtractor("resnet18", ["layer2"], pretrained=True, weights_path=str(missing))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_is_loaded(tmp_path, suffix):
    import timm

    torch.manual_seed(123)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    extractor = FeatureExtractor("resnet18", ["layer2", "layer3"], pretrained=True, weights_path=str(path))
    assert torch.equal(extractor.model.conv1.weight, source.conv1.weight)
    assert torch.equal(extractor.model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    # the features are those of the saved model
    x = torch.randn(1, 3, 64, 64)
    source.eval()
    with torch.no_grad():
        expected = source.layer2(source.layer1(source.maxpool(source.act1(source.bn1(source.conv1(x))))))
    assert torch.allclose(extractor(x)[0], expected, atol=1e-5)


def test_weights_of_another_backbone_are_rejected(tmp_path):
    import timm

    path = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict(), path)
    with pytest.raises(PretrainedWeightsUnavailable, match="does not fit backbone 'resnet18'"):
        FeatureExtractor("resnet18", ["layer2"], pretrained=True, weights_path=str(path))


def test_unavailable_hub_weights_explain_how_to_provide_them(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        FeatureExtractor("resnet18", ["layer2"], pretrained=True)
    text = str(info.value)
    assert "'resnet18'" in text and "HF_HOME" in text and "weights_path" in text and "pretrained=False" in text

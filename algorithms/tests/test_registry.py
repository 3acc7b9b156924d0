"""Registry, metadata, the contract checks of the base class, and backbone weight loading."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from algorithms import registry
from algorithms.base import AnomalyDetector, ContractError, hparams_from_locals, validate_prediction
from algorithms.components.feature_extractor import FeatureExtractor, PretrainedWeightsUnavailable
from algorithms.registry import (
    UnknownAlgorithmError,
    create_algorithm,
    get_algorithm_class,
    get_algorithm_info,
    list_algorithms,
    register_algorithm,
)


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


@pytest.fixture
def temporary_registration():
    added = []

    def register(name, cls, **info):
        register_algorithm(name, **info)(cls)
        added.append(name)
        return cls

    yield register
    for name in added:
        registry._REGISTRY.pop(name, None)


def test_builtins_are_registered_with_metadata():
    names = list_algorithms()
    assert {"patchcore", "random"} <= set(names)
    assert names == sorted(names)
    assert "random" not in list_algorithms(include_baselines=False)
    assert list_algorithms("patch*") == ["patchcore"]
    info = get_algorithm_info("patchcore")
    assert info.display_name == "PatchCore"
    assert info.family == "memory bank"
    assert info.one_shot and not info.is_baseline
    assert info.paper_url.startswith("https://")
    assert get_algorithm_class("patchcore").algorithm_name == "patchcore"


@pytest.mark.parametrize("name", list_algorithms())
def test_metadata_matches_the_class(name):
    cls, info = get_algorithm_class(name), get_algorithm_info(name)
    signature = inspect.signature(cls.__init__)
    assert signature.parameters["input_size"].default == info.default_input_size
    assert info.display_name and info.family
    assert info.tiny_epochs >= 1 and info.default_epochs >= 1
    unknown = set(info.tiny) - set(signature.parameters)
    assert not unknown, f"tiny overrides name unknown hyperparameters {unknown}"
    if "pretrained" in signature.parameters:
        assert info.tiny.get("pretrained") is False, "tests must never need pretrained weights"
    assert info.tiny.get("input_size", 10**6) <= 64
    # every hyperparameter is keyword-only (the registry builds algorithms from keywords)
    for pname, param in signature.parameters.items():
        if pname != "self":
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}.{pname} must be keyword-only"


def test_create_algorithm_applies_tiny_then_overrides():
    model = create_algorithm("patchcore", tiny=True, coreset_ratio=0.5)
    assert model.hparams["backbone"] == "resnet18"
    assert model.hparams["coreset_ratio"] == 0.5
    assert model.hparams["input_size"] == 64
    assert create_algorithm("random").input_size == 256


def test_unknown_names_and_hyperparameters_are_named():
    with pytest.raises(UnknownAlgorithmError, match=r"unknown algorithm 'nope'.*patchcore"):
        create_algorithm("nope")
    with pytest.raises(TypeError, match=r"^random: .*colour"):
        create_algorithm("random", colour="red")


def test_register_rejects_bad_and_duplicate_names(temporary_registration):
    with pytest.raises(ValueError, match="snake_case"):
        register_algorithm("Bad-Name", display_name="x", family="x")
    temporary_registration("tmp_broken", type("TmpBroken", (Broken,), {}), display_name="Broken", family="test")
    assert "tmp_broken" in list_algorithms()

    class Other(Broken):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_algorithm("tmp_broken", display_name="x", family="x")(Other)


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
        AnomalyDetector.load(tmp_path / "nothing")


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


def test_the_documented_example_registers_and_runs():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "my_algorithm.py"
    spec = importlib.util.spec_from_file_location("my_algorithm_example", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        model = create_algorithm("mean_colour", tiny=True)
        assert model.fit_epoch([torch.full((2, 3, 64, 64), 0.5)]) == {"mean_norm": pytest.approx(0.5 * 3**0.5)}
        images = torch.full((2, 3, 64, 64), 0.5)
        images[1, :, 20:30, 20:30] = 3.0
        prediction = model.predict(images)
        assert prediction.scores[1] > prediction.scores[0]
    finally:
        registry._REGISTRY.pop("mean_colour", None)

"""Stored predictions keep what the run measured (issue 12): the metrics computed again from a
run's ``predictions.npz`` equal the ones the run reported, exactly, for every registered algorithm
(the registry parametrises the test, as for the conformance test) and for maps that float16
would have altered (values near 3000 and beyond 65504)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from algorithms import registry
from algorithms.base import AnomalyDetector, hparams_from_locals
from algorithms.info import AlgorithmInfo, Family, Schedule
from algorithms.registry import get_algorithm_info, list_algorithms
from algorithms.runner import PREDICTIONS_FILE, RESULTS_FILE, run_category
from algorithms.runspec import RunSpec

CATEGORY = "synthetic/woven"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    from algorithms.data import generate_suite

    root = tmp_path_factory.mktemp("synthetic")
    generate_suite(root, seed=0, categories=["woven"], image_size=64, n_train=6, n_test_good=3, n_test_defect=3,
                   workers=1)  # fmt: skip
    return {"synthetic": str(root)}


def metrics_from_saved(out_dir, roots) -> dict[str, dict[str, float]]:
    """Evaluate the saved file the way the runner evaluates its in-memory predictions."""
    from algorithms.data import load_category
    from evaluation.metrics import evaluate, to_protocol

    truth = load_category(CATEGORY, roots=roots).ground_truth()
    with np.load(out_dir / PREDICTIONS_FILE) as saved:
        assert saved["ids"].tolist() == truth.ids.tolist()
        assert saved["scores"].dtype == np.float32
        variants = [name.removeprefix("map__") for name in saved.files if name.startswith("map__")]
        out = {}
        for variant in variants:
            maps = saved[f"map__{variant}"]
            assert maps.dtype == np.float32
            masks, protocol_maps = to_protocol(truth.masks, maps)
            values = evaluate(masks, protocol_maps, truth.labels, saved["scores"])
            out[variant] = {key: float(value) for key, value in values.items()}
    return out


def _run(name: str, params: dict, roots, out_dir, epochs: int = 1) -> dict:
    spec = RunSpec.from_entry({"algorithm": name, "params": params, "categories": [CATEGORY], "epochs": epochs,
                               "train_time_limit_s": 600, "batch_size": 4, "save_predictions": True,
                               "device": "cpu"})  # fmt: skip
    result = run_category(spec, CATEGORY, roots=roots, out_dir=out_dir)
    assert result["status"] == "ok", result.get("traceback")
    return result


@pytest.mark.parametrize("name", list_algorithms())
def test_saved_predictions_give_the_reported_metrics_exactly(name, roots, tmp_path):
    info = get_algorithm_info(name)
    result = _run(name, dict(info.tiny), roots, tmp_path, epochs=info.tiny_epochs)
    recomputed = metrics_from_saved(tmp_path, roots)
    assert set(recomputed) == set(result["metrics"])
    assert recomputed == result["metrics"]  # exact, every variant and metric
    reported = json.loads((tmp_path / RESULTS_FILE).read_text())["metrics"]
    assert recomputed == reported


class ExtremeMaps(AnomalyDetector):
    """Maps a float16 file would alter: 3000 + a fraction (collapses to ~2 values) and x 1e5 (inf)."""

    def __init__(self, *, input_size: int = 32) -> None:
        super().__init__(**hparams_from_locals(locals()))

    def fit_epoch(self, train_loader):
        for _ in train_loader:
            pass
        return {}

    def _predict(self, images):
        brightness = images.mean(dim=1)  # ImageNet-normalised: about -2 .. 2.6
        fraction = (brightness - brightness.amin()) / (brightness.amax() - brightness.amin() + 1e-6)
        return brightness.mean(dim=(1, 2)) + 3000, {
            "near_3000": 3000 + fraction,
            "up_to_1e5": 1e5 * fraction,
        }


@pytest.fixture
def extreme_algorithm():
    info = AlgorithmInfo(
        key="test_extreme_maps",
        display_name="Extreme",
        family=Family.OTHER,
        schedule=Schedule(epochs=1, batch_size=4, input_size=32),
        map_variants=("near_3000", "up_to_1e5"),
    )
    registry.register_algorithm(info)(ExtremeMaps)
    yield "test_extreme_maps"
    registry.unregister_algorithm("test_extreme_maps")


def test_maps_float16_would_alter_are_saved_as_measured(extreme_algorithm, roots, tmp_path):
    result = _run(extreme_algorithm, {}, roots, tmp_path)
    recomputed = metrics_from_saved(tmp_path, roots)
    assert recomputed == result["metrics"]
    with np.load(tmp_path / PREDICTIONS_FILE) as saved:
        near, large = saved["map__near_3000"], saved["map__up_to_1e5"]
    assert len(np.unique(near)) > 100 and np.isfinite(large).all() and large.max() > 65504
    # the test has teeth: the float16 file of the old runner changed these maps and their metrics
    assert len(np.unique(near.astype(np.float16))) <= 2
    with np.errstate(over="ignore"):
        assert np.isinf(large.astype(np.float16)).any()
    from algorithms.data import load_category
    from evaluation.metrics import pixel_auroc, to_protocol

    truth = load_category(CATEGORY, roots=roots).ground_truth()
    masks, maps = to_protocol(truth.masks, near.astype(np.float16))
    assert pixel_auroc(masks, maps) != result["metrics"]["near_3000"]["pixel_auroc"]


def test_the_run_explains_its_pl_anomaly_by_anomaly(roots, tmp_path):
    """PL explained (issue 14): the run keeps, for its primary map, every anomaly's defect type,
    test-image id and IoU per threshold; PL recomputed from those IoUs and from the saved maps
    equals the reported PL."""
    from algorithms.data import load_category
    from evaluation.metrics import localisation_report, proportion_localised_from_ious, to_protocol

    info = get_algorithm_info("random")
    result = _run("random", dict(info.tiny), roots, tmp_path, epochs=info.tiny_epochs)
    primary = result["primary_variant"]
    document = result["localisation"][primary]
    assert document["pl"] == result["metrics"][primary]["pl"]
    truth = load_category(CATEGORY, roots=roots).ground_truth()
    anomalous_types = {str(t) for t, label in zip(truth.defect_types, truth.labels, strict=True) if label}
    assert {a["defect_type"] for a in document["anomalies"]} == anomalous_types
    assert all(a["image_id"] == truth.ids[a["image_index"]] for a in document["anomalies"])
    ious = [a["ious"] for a in document["anomalies"]]
    assert proportion_localised_from_ious(ious, iou_limit=0.3) == result["metrics"][primary]["pl"]
    with np.load(tmp_path / PREDICTIONS_FILE) as saved:  # the gallery's source gives the same report
        masks, maps = to_protocol(truth.masks, saved[f"map__{primary}"])
    assert localisation_report(masks, maps).to_dict()["anomalies"] == [
        {k: v for k, v in a.items() if k not in ("image_id", "defect_type")} for a in document["anomalies"]
    ]

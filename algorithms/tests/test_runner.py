"""The runner and the CLI on a small generated synthetic category (real data, real metrics)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from algorithms import registry
from algorithms.__main__ import main as cli_main
from algorithms.base import AnomalyDetector, hparams_from_locals
from algorithms.runner import SCHEMA, ConfigError, load_config, run_category, run_config

CATEGORY = "synthetic/woven"
TINY_PATCHCORE = {"input_size": 64, "backbone": "resnet18", "pretrained": False,
                  "pretrain_embed_dim": 64, "target_embed_dim": 64}  # fmt: skip


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    from algorithms.data import generate_suite

    root = tmp_path_factory.mktemp("synthetic")
    generate_suite(root, seed=0, categories=["woven", "grid"], image_size=64, n_train=6, n_test_good=3,
                   n_test_defect=3, workers=1)  # fmt: skip
    return {"synthetic": str(root)}


class SlowEpochs(AnomalyDetector):
    """Sleeps per batch: lets the tests watch budgets and evaluation schedules."""

    def __init__(self, *, input_size: int = 32, sleep_s: float = 0.0) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def fit_epoch(self, train_loader):
        for batch in train_loader:
            time.sleep(self.hparams["sleep_s"])
            self.seen += len(batch)
        return {"seen": float(self.seen)}

    def _predict(self, images):
        score = images.mean(dim=(1, 2, 3)) + self.seen.float()
        return score, {"brightness": images.mean(dim=1), "inverse": -images.mean(dim=1)}


@pytest.fixture
def slow_algorithm():
    registry.register_algorithm("test_slow_epochs", display_name="Slow", family="test", default_input_size=32)(
        SlowEpochs
    )
    yield "test_slow_epochs"
    registry._REGISTRY.pop("test_slow_epochs", None)


def test_run_category_writes_the_documented_results(roots, tmp_path):
    calls = []
    result = run_category(
        algorithm="patchcore", params=TINY_PATCHCORE, category=CATEGORY, roots=roots, epochs=1,
        train_time_limit_s=60, batch_size=4, out_dir=tmp_path, save_predictions=True, save_checkpoint=True,
        progress=lambda f, m: calls.append((f, m)),
    )  # fmt: skip
    assert result["status"] == "ok", result.get("traceback")
    assert result["schema"] == SCHEMA and result["error"] == ""
    assert result["algorithm"] == "patchcore" and result["category"] == CATEGORY and result["seed"] == 0
    assert result["params"]["coreset_ratio"] == 0.1  # the full configuration is recorded
    assert result["primary_variant"] == "anomaly_map"
    metrics = result["metrics"]["anomaly_map"]
    assert set(metrics) == {"image_auroc", "pixel_auroc", "aupro", "pl"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    timings = result["timings"]
    assert timings["n_train"] == 6 and timings["n_test"] == 6 and timings["epochs"] == 1
    assert timings["train_seconds"] > 0 and timings["inference_seconds"] > 0
    # train_seconds is rounded to 4 decimals, the per-image figure to 6 (of the unrounded time)
    assert timings["train_seconds_per_image"] == pytest.approx(timings["train_seconds"] / 6, rel=1e-3, abs=1e-5)
    env = result["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["hardware"]
    from evaluation.metrics import EVALUATOR_VERSION

    assert result["evaluator_version"] == EVALUATOR_VERSION
    # the results file is the returned document
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(result))
    # predictions: ids in the category's order, float32 maps (what the run measured)
    from algorithms.data import load_category

    category = load_category(CATEGORY, roots=roots)
    with np.load(tmp_path / "predictions.npz") as npz:
        assert npz["ids"].tolist() == list(category.test_ids)
        assert npz["scores"].dtype == np.float32 and npz["scores"].shape == (6,)
        assert npz["map__anomaly_map"].dtype == np.float32 and npz["map__anomaly_map"].shape == (6, 64, 64)
    # the checkpoint reproduces the predictions
    model = AnomalyDetector.load(tmp_path / "checkpoint")
    assert model.memory_bank.shape[0] > 0
    # progress: increasing, ends at 1.0, messages name the run
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(m.startswith(f"patchcore {CATEGORY}: ") for _, m in calls)


def test_runs_are_repeatable(roots, slow_algorithm):
    kwargs = dict(algorithm="patchcore", params=TINY_PATCHCORE, category=CATEGORY, roots=roots, epochs=1,
                  train_time_limit_s=60, batch_size=4, seed=3)  # fmt: skip
    assert run_category(**kwargs)["metrics"] == run_category(**kwargs)["metrics"]


def test_epochs_budget_and_evaluation_schedule(roots, slow_algorithm):
    result = run_category(algorithm=slow_algorithm, params={}, category=CATEGORY, roots=roots, epochs=5,
                          train_time_limit_s=60, evaluate_every=2, batch_size=4)  # fmt: skip
    assert result["status"] == "ok", result.get("traceback")
    assert [h["epoch"] for h in result["history"]] == [2, 4, 5]
    assert result["history"][-1]["logs"] == {"seen": 30.0}
    assert list(result["metrics"]) == ["brightness", "inverse"]  # every map variant is evaluated
    assert result["primary_variant"] == "brightness"
    # a budget of 0.3 s with 0.2 s per batch: the first epoch is cut after its second batch
    result = run_category(algorithm=slow_algorithm, params={"sleep_s": 0.2}, category=CATEGORY, roots=roots,
                          epochs=50, train_time_limit_s=0.3, batch_size=2)  # fmt: skip
    assert result["timings"]["epochs"] == 1 and result["timings"]["budget_exhausted"] is True
    assert result["history"][-1]["logs"] == {"seen": 4.0}
    assert result["timings"]["train_seconds"] < 1.0


def test_a_failing_category_is_reported_and_the_others_still_run(roots, tmp_path, slow_algorithm):
    config = {
        "models": [{"algorithm": slow_algorithm, "epochs": 1, "batch_size": 4}],
        "categories": ["synthetic/woven", "synthetic/leather", "synthetic/grid"],  # leather was not generated
        "seed": 0,
    }
    results = run_config(config, out_dir=tmp_path, roots=roots)
    assert [r["status"] for r in results] == ["ok", "failed", "ok"]
    failed = results[1]
    assert "DatasetError" in failed["error"] and "leather" in failed["error"]
    assert "Traceback" in failed["traceback"] and failed["metrics"] == {}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["ok", "failed", "ok"]
    assert (tmp_path / slow_algorithm / "synthetic/leather/results.json").is_file()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"models": [{"algorithm": "nope"}], "categories": ["synthetic"]}, "unknown algorithm 'nope'"),
        ({"models": [{"algorithm": "patchcore", "params": {"colour": 1}}], "categories": ["synthetic"]},
         r"patchcore: unknown hyperparameter\(s\) \['colour'\]"),
        ({"models": [{"algorithm": "patchcore", "epochs": 0}], "categories": ["synthetic"]}, "epochs"),
        ({"models": [{"algorithm": "patchcore", "train_time_limit_s": -1}], "categories": ["synthetic"]},
         "train_time_limit_s"),
        ({"models": [{"algorithm": "patchcore", "evaluate_every": 0}], "categories": ["synthetic"]}, "evaluate_every"),
        ({"models": [{"algorithm": "patchcore", "epoch": 3}], "categories": ["synthetic"]},
         r"unknown key\(s\) \['epoch'\]"),
        ({"models": [{"algorithm": "patchcore"}, {"algorithm": "patchcore"}], "categories": ["synthetic"]},
         "two models are named"),
        ({"models": [{"algorithm": "patchcore"}], "categories": ["mvtek"]}, "unknown suite 'mvtek'"),
        ({"models": [], "categories": ["synthetic"]}, "'models' must be a non-empty list"),
    ],
)  # fmt: skip
def test_bad_configs_fail_before_anything_is_written(config, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run_config(config, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shipped_configs_load_and_cover_every_algorithm():
    from algorithms.configs.defaults import PATCHCORE
    from algorithms.registry import list_algorithms

    demo = load_config("algorithms/configs/synthetic_cpu.py")
    assert sorted(m["algorithm"] for m in demo["models"]) == list_algorithms()
    assert len(demo["categories"]) == 9
    assert all(m["params"].get("pretrained", False) is False for m in demo["models"])
    paper = load_config("algorithms/configs/paper.py")
    assert len(paper["categories"]) == 27 and all(m["train_time_limit_s"] == 7200 for m in paper["models"])
    assert {m["algorithm"] for m in paper["models"]} == set(list_algorithms())
    custom = dict(PATCHCORE, params={"coreset_ratio": 0.01}, name="patchcore_1pct")
    loaded = load_config({"models": [custom], "categories": ["mvtec/bottle"]})
    assert loaded["models"][0]["name"] == "patchcore_1pct" and PATCHCORE["params"] == {}


def test_cli_list_and_run(roots, tmp_path, capsys):
    assert cli_main(["list"]) == 0
    assert "patchcore" in capsys.readouterr().out
    config = tmp_path / "cfg.py"
    config.write_text(
        f"models = [{{'algorithm': 'random', 'params': {{'input_size': 32}}}}]\ncategories = ['{CATEGORY}']\n"
    )
    code = cli_main(["run", "--config", str(config), "--out", str(tmp_path / "out"),
                     "--data-root", f"synthetic={roots['synthetic']}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "random" in out and "image_auroc=" in out
    assert (tmp_path / "out" / "random" / CATEGORY / "results.json").is_file()
    assert cli_main(["run", "--config", str(tmp_path / "missing.py")]) == 2

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
from algorithms.info import AlgorithmInfo, Family, Schedule
from algorithms.registry import load_algorithm
from algorithms.runner import SCHEMA, ConfigError, run_category, run_config
from algorithms.runspec import RunSpec, load_run_config

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


SLOW_INFO = AlgorithmInfo(
    key="test_slow_epochs",
    display_name="Slow",
    family=Family.OTHER,
    schedule=Schedule(epochs=3, batch_size=4, input_size=32),
    map_variants=("brightness", "inverse"),
)


@pytest.fixture
def slow_algorithm():
    registry.register_algorithm(SLOW_INFO)(SlowEpochs)
    yield "test_slow_epochs"
    registry.unregister_algorithm("test_slow_epochs")


def _spec(algorithm: str, **keys) -> RunSpec:
    return RunSpec.from_entry({"algorithm": algorithm, "categories": [CATEGORY], **keys})


def test_run_category_writes_the_documented_results(roots, tmp_path):
    calls = []
    spec = _spec("patchcore", params=TINY_PATCHCORE, train_time_limit_s=60, batch_size=4, device="cpu",
                 save_predictions=True, save_checkpoint=True)  # fmt: skip
    result = run_category(spec, CATEGORY, roots=roots, out_dir=tmp_path, progress=lambda f, m: calls.append((f, m)))
    assert result["status"] == "ok", result.get("traceback")
    assert result["schema"] == SCHEMA and result["error"] == ""
    assert result["algorithm"] == "patchcore" and result["category"] == CATEGORY and result["seed"] == 0
    assert result["params"]["coreset_ratio"] == 0.1  # the full configuration is recorded
    assert RunSpec.from_json(result["spec"]) == spec  # and the run specification, whole
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
    model = load_algorithm(tmp_path / "checkpoint")
    assert model.memory_bank.shape[0] > 0
    # progress: increasing, ends at 1.0, messages name the run
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(m.startswith(f"patchcore {CATEGORY}: ") for _, m in calls)


def test_runs_are_repeatable(roots, slow_algorithm):
    spec = _spec("patchcore", params=TINY_PATCHCORE, train_time_limit_s=60, batch_size=4, seeds=[3, 4], device="cpu")
    first = run_category(spec, CATEGORY, seed=3, roots=roots)
    assert first["seed"] == 3 and first["metrics"] == run_category(spec, CATEGORY, seed=3, roots=roots)["metrics"]
    assert run_category(spec, CATEGORY, roots=roots)["seed"] == 3  # the first seed by default
    assert run_category(spec, CATEGORY, seed=4, roots=roots)["status"] == "ok"


def test_the_same_spec_and_seed_train_the_same_schedule_and_give_the_same_numbers(roots):
    """A trained algorithm (FastFlow, tiny, random-init backbone) twice on CPU: same epochs, same numbers."""
    from algorithms.registry import get_algorithm_info
    from algorithms.runner import combine_seeds

    tiny = dict(get_algorithm_info("fastflow").tiny)
    spec = _spec("fastflow", params=tiny, epochs=2, batch_size=4, train_time_limit_s=600, seeds=[5, 6], device="cpu")
    first = run_category(spec, CATEGORY, seed=5, roots=roots)
    second = run_category(spec, CATEGORY, seed=5, roots=roots)
    assert first["status"] == "ok", first.get("traceback")
    assert first["metrics"] == second["metrics"] and first["history"] == [
        {**h, "train_seconds": s["train_seconds"], "pre_eval_seconds": s["pre_eval_seconds"]}
        for h, s in zip(second["history"], first["history"], strict=True)
    ]
    for result in (first, second):
        timings = result["timings"]
        assert timings["epochs_planned"] == timings["epochs"] == 2 and timings["schedule_complete"] is True
        assert timings["iterations"] == timings["iterations_planned"] == 4  # 6 images, batch 4: 2 per epoch
        assert timings["peak_memory_mb"] > 0 and timings["peak_memory_measure"].startswith("process RSS peak")
    model = result["model"]
    assert 0 < model["params_trainable"] < model["params_total"]  # the backbone is frozen, the flow trains
    # another seed: other numbers; both combined into one document (the mean per metric)
    other = run_category(spec, CATEGORY, seed=6, roots=roots)
    combined = combine_seeds([first, other])
    assert combined["seeds"] == [5, 6] and combined["seed_metrics"]["6"] == other["metrics"]
    values = [first["metrics"]["anomaly_map"]["pixel_auroc"], other["metrics"]["anomaly_map"]["pixel_auroc"]]
    assert values[0] != values[1]
    assert combined["metrics"]["anomaly_map"]["pixel_auroc"] == pytest.approx(sum(values) / 2)
    failed = combine_seeds([first, {**other, "status": "failed", "error": "boom"}])
    assert failed["status"] == "failed" and failed["error"] == "seed 6: boom"


def test_epochs_budget_and_evaluation_schedule(roots, slow_algorithm):
    result = run_category(_spec(slow_algorithm, epochs=5, train_time_limit_s=60, evaluate_every=2), CATEGORY,
                          roots=roots)  # fmt: skip
    assert result["status"] == "ok", result.get("traceback")
    assert [h["epoch"] for h in result["history"]] == [2, 4, 5]
    assert result["history"][-1]["logs"] == {"seen": 30.0}
    assert list(result["metrics"]) == ["brightness", "inverse"]  # every map variant is evaluated
    assert result["primary_variant"] == "brightness"
    # the publication schedule of the record (3 epochs, batch 4) when the run names none
    default = run_category(_spec(slow_algorithm), CATEGORY, roots=roots)
    assert default["spec"]["epochs"] == 3 and default["spec"]["batch_size"] == 4
    assert default["timings"]["epochs"] == 3 and default["timings"]["iterations"] == 6
    assert default["timings"]["epochs_planned"] == 3 and default["timings"]["iterations_planned"] == 6
    assert default["timings"]["schedule_complete"] is True and default["timings"]["schedule_unit"] == "epochs"
    # a cap of 0.3 s with 0.2 s per batch: the first epoch is cut after its second batch
    capped = _spec(slow_algorithm, params={"sleep_s": 0.2}, epochs=50, train_time_limit_s=0.3, batch_size=2)
    result = run_category(capped, CATEGORY, roots=roots)
    assert result["timings"]["epochs"] == 1 and result["timings"]["budget_exhausted"] is True
    assert result["timings"]["epochs_planned"] == 50 and result["timings"]["schedule_complete"] is False
    assert result["history"][-1]["logs"] == {"seen": 4.0}
    assert result["timings"]["train_seconds"] < 1.0


def test_a_schedule_in_iterations_stops_mid_epoch(roots, slow_algorithm):
    """6 training images, batch 4: 2 batches an epoch; 5 iterations = 2 full epochs and 1 batch."""
    result = run_category(_spec(slow_algorithm, iterations=5, evaluate_every=2), CATEGORY, roots=roots)
    assert result["status"] == "ok", result.get("traceback")
    assert result["timings"]["epochs"] == 3 and result["timings"]["iterations"] == 5
    assert result["timings"]["budget_exhausted"] is False
    assert result["timings"]["iterations_planned"] == 5 and result["timings"]["schedule_complete"] is True
    assert result["history"][-1]["logs"] == {"seen": 16.0}  # (4 + 2) + (4 + 2) + 4 images
    # evaluated when the count passed 2 (epoch 1), 4 (epoch 2) and at the end (epoch 3, 5 iterations)
    assert [(h["epoch"], h["iterations"]) for h in result["history"]] == [(1, 2), (2, 4), (3, 5)]


def test_run_category_refuses_what_the_spec_does_not_name(roots, tmp_path):
    spec = _spec("random", params={"input_size": 32}, save_predictions=True)
    with pytest.raises(ConfigError, match=r"category 'synthetic/grid' is not one of the run's categories"):
        run_category(spec, "synthetic/grid", roots=roots, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"seed 7 is not one of the run's seeds \[0\]"):
        run_category(spec, CATEGORY, seed=7, roots=roots, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="need an out_dir"):
        run_category(spec, CATEGORY, roots=roots)
    with pytest.raises(ConfigError, match=r"'params': random: unknown hyperparameter 'colour'"):
        run_category(_spec("random", params={"colour": 1}), CATEGORY, roots=roots)
    with pytest.raises(TypeError, match="takes a RunSpec"):
        run_category({"algorithm": "random"}, CATEGORY)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_a_failing_category_is_reported_and_the_others_still_run(roots, tmp_path, slow_algorithm):
    config = {
        "models": [{"algorithm": slow_algorithm, "epochs": 1, "batch_size": 4}],
        "categories": ["synthetic/woven", "synthetic/leather", "synthetic/grid"],  # leather was not generated
        "seeds": [0],
    }
    results = run_config(config, out_dir=tmp_path, roots=roots)
    assert [r["category"] for r in results] == ["synthetic/grid", "synthetic/leather", "synthetic/woven"]
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
        ({"models": [{"algorithm": "nope"}], "categories": ["synthetic"]},
         r"^config: models\[0\] \(nope\): 'algorithm': unknown algorithm 'nope'; available: "),
        ({"models": [{"algorithm": "patchcore", "params": {"colour": 1}}], "categories": ["synthetic"]},
         r"^config: models\[0\] \(patchcore\): 'params': patchcore: unknown hyperparameter 'colour'"),
        ({"models": [{"algorithm": "fastflow", "epochs": 0}], "categories": ["synthetic"]},
         r"^config: models\[0\] \(fastflow\): 'epochs' must be a positive integer, got 0$"),
        ({"models": [{"algorithm": "patchcore", "epochs": 2}], "categories": ["synthetic"]},
         "patchcore is one-shot: its schedule is 'epochs': 1, got epochs 2"),
        ({"models": [{"algorithm": "patchcore", "train_time_limit_s": -1}], "categories": ["synthetic"]},
         "'train_time_limit_s' must be a positive number of seconds, got -1"),
        ({"models": [{"algorithm": "patchcore", "evaluate_every": 0}], "categories": ["synthetic"]},
         "'evaluate_every' must be a positive integer"),
        ({"models": [{"algorithm": "fastflow", "epoch": 3}], "categories": ["synthetic"]},
         r"models\[0\] \(fastflow\): unknown key 'epoch' \(did you mean 'epochs'\?\); known: algorithm, "),
        ({"models": [{"algorithm": "fastflow", "epochs": 3, "iterations": 9}], "categories": ["synthetic"]},
         "give 'epochs' or 'iterations', not both"),
        ({"models": [{"algorithm": "patchcore"}, {"algorithm": "patchcore"}], "categories": ["synthetic"]},
         r"models\[1\] \(patchcore\): two entries are named 'patchcore'"),
        ({"models": [{"algorithm": "patchcore"}], "categories": ["mvtek"]}, "unknown suite 'mvtek'"),
        ({"models": [{"algorithm": "patchcore"}]}, "'categories' is missing"),
        ({"models": [{"algorithm": "patchcore"}], "categories": ["synthetic"], "seeds": [1, 1]}, "repeats a seed"),
        ({"models": [{"algorithm": "patchcore"}], "categories": ["synthetic"], "device": "gpu"},
         "'device' must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        ({"models": [], "categories": ["synthetic"]}, "'models' must be a non-empty list"),
    ],
)  # fmt: skip
def test_bad_configs_fail_before_anything_is_written(config, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run_config(config, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shipped_configs_load_and_cover_every_algorithm():
    from algorithms.registry import get_algorithm_info, list_algorithms

    demo = load_run_config("algorithms/configs/synthetic_cpu.py")
    assert demo.source == "algorithms/configs/synthetic_cpu.py"
    assert sorted(s.algorithm for s in demo.specs) == list_algorithms()
    assert all(len(s.categories) == 9 and s.seeds == (0,) for s in demo.specs)
    assert all(s.params.get("pretrained", False) is False for s in demo.specs)
    for spec in demo.specs:  # the demo settings are the records' own
        # The demo trains fixed schedules; the wall-clock limit is a safety cap only (issue 14): a
        # cap near the schedule's length would cut training short on a loaded machine and leave the
        # result "schedule incomplete", unranked.
        cap = spec.train_time_limit_s
        assert cap >= 300, f"{spec.algorithm}: demo cap {cap} s is not a safety cap"
        demo_settings = get_algorithm_info(spec.algorithm).demo
        unit = "iterations" if "iterations" in demo_settings else "epochs"  # Dinomaly, MemSeg count steps
        assert getattr(spec, unit) == demo_settings[unit] and dict(spec.params) == demo_settings["params"]
    paper = load_run_config("algorithms/configs/paper.py")
    assert all(len(s.categories) == 27 and s.train_time_limit_s == 7200 and s.save_predictions for s in paper.specs)
    assert {s.algorithm for s in paper.specs} == set(list_algorithms())
    for spec in paper.specs:  # the publication schedules, from the records
        schedule = get_algorithm_info(spec.algorithm).schedule
        assert (spec.schedule_unit, spec.schedule_length, spec.batch_size) == (
            schedule.unit, schedule.length, schedule.batch_size)  # fmt: skip
        assert dict(spec.params) == {}
    for config in (demo, paper, load_run_config("algorithms/configs/tiny.py")):
        config.check_params()


def test_cli_list_check_and_run(roots, tmp_path, capsys):
    assert cli_main(["list"]) == 0
    assert "PatchCore [Memory bank]; 1 epoch, batch 8, 256 px" in capsys.readouterr().out
    config = tmp_path / "cfg.py"
    config.write_text(
        f"models = [{{'algorithm': 'random', 'params': {{'input_size': 32}}}}]\ncategories = ['{CATEGORY}']\n"
        "seeds = [0, 1]\n"
    )
    assert cli_main(["check", "--config", str(config), "--json"]) == 0
    (checked,) = json.loads(capsys.readouterr().out)
    assert checked["seeds"] == [0, 1] and checked["device"] == "auto" and checked["batch_size"] == 8
    code = cli_main(["run", "--config", str(config), "--out", str(tmp_path / "out"), "--device", "cpu",
                     "--data-root", f"synthetic={roots['synthetic']}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "random" in out and "image_auroc=" in out and "seed 1" in out
    for seed in (0, 1):  # several seeds: one folder each
        recorded = json.loads((tmp_path / "out" / "random" / f"seed-{seed}" / CATEGORY / "results.json").read_text())
        assert recorded["seed"] == seed and recorded["spec"] == {**checked, "device": "cpu"}
    # a recorded run specification (what a run's evidence page offers) is a config of its own
    spec_file = tmp_path / "run-7-spec.json"
    spec_file.write_text(json.dumps(recorded["spec"]))
    assert cli_main(["check", "--config", str(spec_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [recorded["spec"]]
    spec_file.write_text(json.dumps({"algorithm": "random", "categories": [CATEGORY], "epoch": 1}))
    assert cli_main(["check", "--config", str(spec_file)]) == 2
    assert "run-7-spec: models[0] (random): unknown key 'epoch'" in capsys.readouterr().err
    assert cli_main(["run", "--config", str(tmp_path / "missing.py")]) == 2
    assert "error: config file not found:" in capsys.readouterr().err
    assert cli_main(["run", "--config", str(config), "--device", "tpu"]) == 2
    assert "--device: 'device' must be auto, cpu" in capsys.readouterr().err


def test_cli_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "check", "run", "bundle"):
        assert f"    {command}" in out, out
    with pytest.raises(SystemExit):  # the bundle command keeps its own parser and help
        cli_main(["bundle", "--help"])
    assert "usage:" in capsys.readouterr().out

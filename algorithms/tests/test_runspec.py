"""``RunSpec``: one description of a run, one validator, one set of defaults (no torch needed)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from algorithms.data import list_categories
from algorithms.registry import get_algorithm_info
from algorithms.runspec import (
    PAPER_TIME_LIMIT_S,
    RUN_KEYS,
    SHARED_KEYS,
    ConfigError,
    RunSpec,
    load_run_config,
)

WOVEN = ["synthetic/woven"]


def test_defaults_come_from_the_algorithm_record():
    fastflow = RunSpec.from_entry({"algorithm": "fastflow", "categories": WOVEN})
    assert (fastflow.epochs, fastflow.iterations, fastflow.batch_size) == (500, None, 32)
    assert fastflow.train_time_limit_s == PAPER_TIME_LIMIT_S and fastflow.seeds == (0,) and fastflow.device == "auto"
    assert fastflow.name == "fastflow" and dict(fastflow.params) == {} and fastflow.evaluate_every is None
    efficient = RunSpec.from_entry({"algorithm": "efficient_ad", "categories": WOVEN})
    assert (efficient.epochs, efficient.iterations, efficient.batch_size) == (None, 70_000, 1)
    assert efficient.schedule_unit == "iterations" and efficient.schedule_length == 70_000
    # a run that names its own schedule gets nothing of the publication's but the batch size
    short = RunSpec.from_entry({"algorithm": "efficient_ad", "categories": WOVEN, "epochs": 3})
    assert (short.epochs, short.iterations, short.batch_size) == (3, None, 1)
    for key in ("fastflow", "efficient_ad"):
        schedule = get_algorithm_info(key).schedule
        spec = RunSpec.from_entry({"algorithm": key, "categories": WOVEN})
        assert (spec.schedule_unit, spec.schedule_length) == (schedule.unit, schedule.length)


def test_entries_share_config_keys_and_expand_suites():
    spec = RunSpec.from_entry(
        {"algorithm": "random", "seeds": [2, 1]},
        shared={"categories": ["synthetic", "synthetic/woven"], "seeds": [0], "save_predictions": True},
    )
    assert spec.categories == tuple(sorted(list_categories("synthetic")))  # expanded, sorted, no repeats
    assert spec.seeds == (2, 1) and spec.save_predictions  # the entry wins over the shared keys
    assert RunSpec.from_entry({"algorithm": "random", "categories": "synthetic/woven", "seeds": 3}).seeds == (3,)


def test_a_spec_is_frozen_json_and_rebuilds_equal():
    spec = RunSpec.from_entry(
        {"algorithm": "patchcore", "categories": WOVEN, "params": {"coreset_ratio": 0.01, "layers": ["layer2"]}}
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.epochs = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.params["coreset_ratio"] = 0.5  # type: ignore[index]
    data = json.loads(json.dumps(spec.to_json()))
    assert set(data) == set(RUN_KEYS)
    again = RunSpec.from_json(data)
    assert again == spec and hash(again) == hash(spec) and again.to_json() == spec.to_json()
    assert spec.fingerprint() == again.fingerprint() == spec.replace(device="cpu", name="x").fingerprint()
    assert spec.fingerprint() != spec.replace(params={"coreset_ratio": 0.02}).fingerprint()
    assert spec.fingerprint() != spec.replace(seeds=[1]).fingerprint()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"algorithm": "fastflow", "epoch": 3}, r"^unknown key 'epoch' \(did you mean 'epochs'\?\); known: algorithm,"),
        ({"algorithm": "fastflow", "seed": 3}, r"unknown key 'seed' \(did you mean 'seeds'\?\)"),
        ({"algorithm": "fastflow", "batchsize": 3, "lr": 1}, r"^unknown keys 'batchsize' \(did you mean 'batch_size'"),
        ({}, "needs an 'algorithm'"),
        ({"algorithm": "fast_flow"}, r"unknown algorithm 'fast_flow'; available: (\w+, )*efficient_ad, fastflow"),
        ({"algorithm": "fastflow", "epochs": 2.5}, r"^'epochs' must be a positive integer, got 2.5$"),
        ({"algorithm": "fastflow", "epochs": True}, "'epochs' must be a positive integer, got True"),
        ({"algorithm": "fastflow", "iterations": 0}, "'iterations' must be a positive integer, got 0"),
        ({"algorithm": "fastflow", "batch_size": "8"}, "'batch_size' must be a positive integer, got '8'"),
        ({"algorithm": "fastflow", "train_time_limit_s": float("inf")}, "'train_time_limit_s' must be a positive"),
        ({"algorithm": "fastflow", "params": ["lr"]}, "'params' must be a dict of hyperparameters, got list"),
        ({"algorithm": "fastflow", "params": {"lr": object()}}, "'params' must hold JSON values only"),
        ({"algorithm": "fastflow", "params": {"bad key": 1}}, "'params' keys must be hyperparameter names"),
        ({"algorithm": "fastflow", "seeds": []}, "'seeds' must be a non-empty list"),
        ({"algorithm": "fastflow", "seeds": [-1]}, "'seeds' must hold non-negative integers, got -1"),
        ({"algorithm": "fastflow", "save_predictions": "yes"}, "'save_predictions' must be True or False"),
        ({"algorithm": "fastflow", "name": "a b"}, "'name' must be letters, digits"),
        ({"algorithm": "fastflow", "categories": ["woven"]}, r"'categories': unknown suite 'woven' \(suites: "),
        ({"algorithm": "fastflow", "categories": []}, "'categories' is empty"),
        ({"algorithm": "random", "iterations": 10}, "random is one-shot: its schedule is 'epochs': 1, got iterations"),
    ],
)  # fmt: skip
def test_every_bad_key_is_named(entry, message):
    with pytest.raises(ConfigError, match=message):
        RunSpec.from_entry({"categories": WOVEN, **entry})


def test_stored_specs_are_validated_again():
    spec = RunSpec.from_entry({"algorithm": "random", "categories": WOVEN}).to_json()
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'"):
        RunSpec.from_json({**spec, "epoch": 1})
    with pytest.raises(ConfigError, match=r"lacks \['batch_size'\]"):
        RunSpec.from_json({k: v for k, v in spec.items() if k != "batch_size"})
    with pytest.raises(ConfigError, match="'categories' holds 'woven', which is not a category key"):
        RunSpec.from_json({**spec, "categories": ["woven"]})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        RunSpec.from_json(spec).replace(colour="red")
    with pytest.raises(ConfigError, match="'device' must be"):
        RunSpec.from_json(spec).replace(device="gpu")


def test_hyperparameter_names_are_checked_against_the_constructor():
    RunSpec.from_entry({"algorithm": "fastflow", "categories": WOVEN, "params": {"flow_steps": 2}}).check_params()
    spec = RunSpec.from_entry({"algorithm": "fastflow", "categories": WOVEN, "params": {"flowsteps": 2}})
    with pytest.raises(ConfigError, match=r"^'params': fastflow: unknown hyperparameter 'flowsteps' \(did you mean "
                                          r"'flow_steps'\?\)"):  # fmt: skip
        spec.check_params()


def test_config_files_name_the_file_entry_and_key(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from algorithms.registry import list_algorithms\n"
        "_HELPER = 3\n"
        "EPOCHS = 2\n"
        "def _entry(key):\n    return {'algorithm': key, 'epochs': EPOCHS}\n"
        "models = [_entry('fastflow'), {'algorithm': 'fastflow', 'name': 'ff_short', 'epochs': 1}]\n"
        "categories = ['synthetic/woven', 'synthetic/grid']\n"
        "seeds = [0, 1]\n"
        "train_time_limit_s = 60\n"
    )
    config = load_run_config(path)
    where = re.escape(str(path.resolve()))
    assert config.name == "mine" and config.source == str(path.resolve())
    assert [s.name for s in config.specs] == ["fastflow", "ff_short"]
    assert all(s.seeds == (0, 1) and s.train_time_limit_s == 60.0 for s in config.specs)
    with pytest.raises(ConfigError, match=r"mine.py: 2 entries for algorithm 'fastflow' \(fastflow, ff_short\)"):
        config.spec_for("fastflow")
    with pytest.raises(ConfigError, match=r"mine.py: no entry for algorithm 'patchcore' \(it configures: fastflow\)"):
        config.spec_for("patchcore")
    path.write_text("models = [{'algorithm': 'fastflow'}]\ncategries = ['synthetic']\n")
    with pytest.raises(ConfigError, match=rf"^{where}: unknown top-level name 'categries' "
                                          r"\(did you mean 'categories'\?\)"):  # fmt: skip
        load_run_config(path)
    path.write_text("models = [{'algorithm': 'fastflow', 'epochs': 1}, {'algorithm': 'patchcore', 'epochs': 0}]\n"
                    "categories = ['synthetic']\n")  # fmt: skip
    with pytest.raises(ConfigError, match=rf"^{where}: models\[1\] \(patchcore\): 'epochs' must be a positive"):
        load_run_config(path)
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=rf"^{where}: failed to import: RuntimeError: boom"):
        load_run_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_config(tmp_path / "nothing.py")


def test_shared_keys_are_run_keys_that_do_not_depend_on_the_algorithm():
    assert set(SHARED_KEYS) < set(RUN_KEYS)
    assert not {"algorithm", "params", "epochs", "iterations", "batch_size", "name"} & set(SHARED_KEYS)
    assert list(RUN_KEYS) == [f.name for f in dataclasses.fields(RunSpec)]

"""The benchmark runner: train within budgets, predict, evaluate, record (schema ``vadi-run/1``).

``run_category`` trains one algorithm on one category for at most ``epochs`` epochs and at most
``train_time_limit_s`` seconds of training (the paper gave every algorithm two hours), evaluates
every ``evaluate_every`` epochs and at the end, and returns (and optionally writes) the
per-category results JSON described in ``docs/contracts.md``. The algorithm sees images only:
ground truth is read by the evaluation step alone.

The training budget is enforced inside an epoch too: the training loader handed to
``fit_epoch`` stops yielding batches once the budget is spent, so a slow epoch cannot overrun
it by more than one batch. ``pre_eval`` (e.g. PatchCore's memory bank) is counted as training
time, as in VisionAD, but never cut short.

``run_config`` runs every model of a config over every category of it and writes a summary.
A failing category is recorded with ``status: "failed"``, the error and its traceback, and does
not stop the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from evaluation.metrics import EVALUATOR_VERSION, evaluate_at_protocol

__all__ = [
    "SCHEMA",
    "ConfigError",
    "environment_info",
    "expand_categories",
    "load_config",
    "run_category",
    "run_config",
]

SCHEMA = "vadi-run/1"
SUMMARY_SCHEMA = "vadi-run-summary/1"
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.npz"
CHECKPOINT_DIR = "checkpoint"
SUMMARY_FILE = "summary.json"
DEFAULT_OUT_DIR = Path("var/runs")

ProgressCallback = Callable[[float, str], None]

#: Keys a model entry of a config may have, with their defaults (``algorithm`` is required).
MODEL_KEYS: dict[str, Any] = {
    "algorithm": None,
    "name": None,
    "params": {},
    "epochs": 1,
    "train_time_limit_s": 7200.0,
    "evaluate_every": None,
    "batch_size": 8,
    "save_predictions": False,
    "save_checkpoint": False,
}


class ConfigError(ValueError):
    """A run config (or a ``run_category`` argument) is invalid; nothing has been run or written."""


# -- environment --------------------------------------------------------------------------


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(device: str) -> dict[str, str]:
    """Library versions, device, hardware and git commit of this run.

    Parameters
    ----------
    device : str
        The torch device string the run uses.

    Returns
    -------
    dict
        ``python``, ``torch``, ``timm``, ``numpy``, ``device``, ``hardware``, ``commit``.
    """
    import os

    import timm
    import torch

    hardware = f"{_cpu_name()} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads)"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        hardware = f"{torch.cuda.get_device_name(torch.device(device))}; {hardware}"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "hardware": hardware,
        "commit": _git_commit(),
    }


# -- validation ---------------------------------------------------------------------------


def _check_params(algorithm: str, params: Mapping[str, Any]) -> None:
    from .registry import UnknownAlgorithmError, get_algorithm_class

    try:
        cls = get_algorithm_class(algorithm)
    except UnknownAlgorithmError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(params, Mapping):
        raise ConfigError(f"{algorithm}: params must be a dict, got {type(params).__name__}")
    signature = inspect.signature(cls.__init__)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    known = {n for n, p in signature.parameters.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    unknown = sorted(set(params) - known)
    if unknown and not accepts_any:
        raise ConfigError(f"{algorithm}: unknown hyperparameter(s) {unknown}; accepted: {sorted(known)}")


def _check_run_args(
    *, algorithm: str, params: Mapping[str, Any], epochs: Any, train_time_limit_s: Any, evaluate_every: Any,
    batch_size: Any, seed: Any,
) -> None:
    _check_params(algorithm, params)

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not is_int(epochs) or epochs < 1:
        raise ConfigError(f"{algorithm}: epochs must be a positive integer, got {epochs!r}")
    if (
        isinstance(train_time_limit_s, bool)
        or not isinstance(train_time_limit_s, int | float)
        or not math.isfinite(train_time_limit_s)
        or train_time_limit_s <= 0
    ):
        raise ConfigError(f"{algorithm}: train_time_limit_s must be a positive number, got {train_time_limit_s!r}")
    if evaluate_every is not None and (not is_int(evaluate_every) or evaluate_every < 1):
        raise ConfigError(f"{algorithm}: evaluate_every must be None or a positive integer, got {evaluate_every!r}")
    if not is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"{algorithm}: batch_size must be a positive integer, got {batch_size!r}")
    if not is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


# -- training helpers ---------------------------------------------------------------------


class _BudgetedLoader:
    """Iterates a loader until a training-time deadline; remembers whether it cut an epoch short."""

    def __init__(self, loader: Iterable, *, remaining_s: float) -> None:
        self.loader = loader
        self.remaining_s = remaining_s
        self.truncated = False

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self):
        deadline = time.perf_counter() + self.remaining_s
        for batch in self.loader:
            yield batch
            if time.perf_counter() >= deadline:
                self.truncated = True
                return


def _predict_all(model, loader, n_expected: int, *, desc: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from tqdm.auto import tqdm

    from .utils import batch_images

    scores: list[np.ndarray] = []
    maps: dict[str, list[np.ndarray]] = {}
    for batch in tqdm(loader, desc=desc, leave=False, disable=None):
        prediction = model.predict(batch_images(batch))
        if maps and list(prediction.maps) != list(maps):
            raise RuntimeError(
                f"{model.name}: map variants changed between batches ({list(maps)} -> {list(prediction.maps)})"
            )
        scores.append(prediction.scores)
        for key, value in prediction.maps.items():
            maps.setdefault(key, []).append(value)
    if not scores:
        raise RuntimeError("the test loader yielded no images")
    all_scores = np.concatenate(scores)
    all_maps = {}
    for key, values in maps.items():
        shapes = {v.shape[1:] for v in values}
        if len(shapes) != 1:
            raise RuntimeError(f"{model.name}: map {key!r} changed size between batches: {sorted(shapes)}")
        all_maps[key] = np.concatenate(values)
    if all_scores.shape[0] != n_expected:
        raise RuntimeError(f"{model.name}: predicted {all_scores.shape[0]} images, the test set has {n_expected}")
    return all_scores, all_maps


def _evaluate(ground_truth, scores: np.ndarray, maps: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Every map variant scored by ``evaluate_at_protocol``, the function server-side scoring uses."""
    return {
        variant: evaluate_at_protocol(ground_truth.masks, variant_maps, ground_truth.labels, scores)
        for variant, variant_maps in maps.items()
    }


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, allow_nan=False))
    tmp.replace(path)


def _save_predictions(path: Path, ids: Sequence[str], scores: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    """Store exactly what the run measured: float32 scores and maps, as ``predict`` returned them.

    float16 would change the metrics: values above 65504 become inf, and maps such as
    3000 + U(0, 1) collapse to a couple of values (float16 steps are 2 at 3000).
    """
    arrays: dict[str, np.ndarray] = {"ids": np.asarray(list(ids), dtype=str)}
    arrays["scores"] = np.asarray(scores, dtype=np.float32)  # Prediction scores are float32: no conversion
    for key, value in maps.items():
        arrays[f"map__{key}"] = np.asarray(value, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


# -- the runner ---------------------------------------------------------------------------


def run_category(
    *,
    algorithm: str,
    params: Mapping[str, Any],
    category: str,
    roots: Mapping[str, str | Path] | None = None,
    device: str = "cpu",
    epochs: int,
    train_time_limit_s: float,
    evaluate_every: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    out_dir: str | Path | None = None,
    save_predictions: bool = False,
    save_checkpoint: bool = False,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train, evaluate and record one algorithm on one category.

    Parameters
    ----------
    algorithm : str
        Registered algorithm name.
    params : dict
        Hyperparameter overrides of the algorithm's publication defaults.
    category : str
        Category key, e.g. ``"synthetic/woven"``.
    roots : dict, optional
        Dataset root overrides (see ``algorithms.data.dataset_roots``).
    device : str
        Torch device, ``"cpu"`` or ``"cuda:0"``.
    epochs : int
        Maximum number of training epochs (one-shot methods use 1).
    train_time_limit_s : float
        Budget of training time in seconds (``fit_epoch`` plus ``pre_eval``).
    evaluate_every : int, optional
        Also evaluate after every ``n``-th epoch (always after the last one).
    batch_size : int
        Batch size of the training and test loaders.
    seed : int
        Seed of Python, NumPy and torch (makes a run repeatable).
    out_dir : path, optional
        Directory for ``results.json`` (and ``predictions.npz``, ``checkpoint/``).
    save_predictions : bool
        Write ``predictions.npz`` (ids, float32 scores and maps) into ``out_dir``.
    save_checkpoint : bool
        Save the trained model into ``out_dir/checkpoint``.
    progress : callable, optional
        ``progress(fraction, message)``, called as the run advances (worker heartbeats).

    Returns
    -------
    dict
        The ``vadi-run/1`` results document; ``status`` is ``"failed"`` (with ``error`` and
        ``traceback``) when anything went wrong after validation.

    Raises
    ------
    ConfigError
        Invalid arguments (unknown algorithm or hyperparameter, bad epochs/budget/batch size);
        raised before anything is run or written.
    """
    params = dict(params or {})
    _check_run_args(
        algorithm=algorithm, params=params, epochs=epochs, train_time_limit_s=train_time_limit_s,
        evaluate_every=evaluate_every, batch_size=batch_size, seed=seed,
    )
    if (save_predictions or save_checkpoint) and out_dir is None:
        raise ConfigError("save_predictions and save_checkpoint need an out_dir")
    out_path = Path(out_dir) if out_dir is not None else None

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), f"{algorithm} {category}: {message}")

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "running",
        "error": "",
        "algorithm": algorithm,
        "params": params,
        "category": category,
        "seed": seed,
        "evaluator_version": EVALUATOR_VERSION,
        "primary_variant": None,
        "metrics": {},
        "history": [],
        "timings": {},
        "run": {
            "epochs": epochs,
            "train_time_limit_s": float(train_time_limit_s),
            "evaluate_every": evaluate_every,
            "batch_size": batch_size,
        },
        "environment": {},
        "predictions": None,
        "checkpoint": None,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch
        from tqdm.auto import tqdm

        from .data import load_category, make_loader
        from .registry import create_algorithm, get_algorithm_info
        from .utils import seed_everything

        result["environment"] = environment_info(device)
        info = get_algorithm_info(algorithm)
        report(0.0, "loading data")
        seed_everything(seed)
        data = load_category(category, roots=roots)
        ground_truth = data.ground_truth()  # read and validated before any training: bad masks fail fast
        model = create_algorithm(algorithm, **params).to(torch.device(device))
        result["params"] = model.get_config()  # the full configuration, defaults included
        size = model.input_size
        train_images, test_images = data.train_images(), data.test_images()
        test_ids = list(data.test_ids)
        train_loader = make_loader(train_images, size=size, batch_size=batch_size, shuffle=True, seed=seed)
        # pre_eval (memory banks, normalisation statistics) sees the training set in a fixed order
        pre_eval_loader = make_loader(train_images, size=size, batch_size=batch_size, shuffle=False)
        test_loader = make_loader(test_images, size=size, batch_size=batch_size, shuffle=False)
        n_train, n_test = len(train_images), len(test_images)
        if n_train == 0 or n_test == 0:
            raise RuntimeError(f"{category}: needs training and test images (found {n_train} and {n_test})")
        if len(test_ids) != n_test:
            raise RuntimeError(f"{category}: {len(test_ids)} test ids for {n_test} test images")
        max_epochs = 1 if info.one_shot else epochs

        train_seconds = 0.0
        last_inference_s = 0.0
        budget_exhausted = False
        last: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        epoch = 0
        bar = tqdm(total=max_epochs, desc=f"{algorithm} {category}", leave=False, disable=None)
        try:
            for epoch in range(1, max_epochs + 1):
                model.train()
                budgeted = _BudgetedLoader(train_loader, remaining_s=train_time_limit_s - train_seconds)
                start = time.perf_counter()
                logs = model.fit_epoch(budgeted) or {}
                train_seconds += time.perf_counter() - start
                budget_exhausted = budgeted.truncated or train_seconds >= train_time_limit_s
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, int | float)})
                is_last = epoch == max_epochs or budget_exhausted
                due = is_last or (evaluate_every is not None and epoch % evaluate_every == 0)
                report(0.9 * epoch / max_epochs, f"epoch {epoch}/{max_epochs} trained")
                if not due:
                    continue
                start = time.perf_counter()
                model.pre_eval(pre_eval_loader)
                pre_eval_s = time.perf_counter() - start
                train_seconds += pre_eval_s
                report(0.9 * epoch / max_epochs, f"epoch {epoch}: predicting {n_test} test images")
                start = time.perf_counter()
                scores, maps = _predict_all(model, test_loader, n_test, desc="predict")
                last_inference_s = time.perf_counter() - start
                metrics = _evaluate(ground_truth, scores, maps)
                result["history"].append(
                    {
                        "epoch": epoch,
                        "train_seconds": round(train_seconds, 4),
                        "pre_eval_seconds": round(pre_eval_s, 4),
                        "logs": {k: float(v) for k, v in logs.items() if isinstance(v, int | float)},
                        "metrics": metrics,
                    }
                )
                last = (scores, maps)
                if is_last:
                    break
        finally:
            bar.close()
        assert last is not None  # the last epoch is always evaluated
        scores, maps = last
        result["metrics"] = result["history"][-1]["metrics"]
        result["primary_variant"] = next(iter(maps))
        result["timings"] = {
            "epochs": epoch,
            "train_seconds": round(train_seconds, 4),
            "train_seconds_per_image": round(train_seconds / n_train, 6),
            "inference_seconds": round(last_inference_s, 4),
            "inference_seconds_per_image": round(last_inference_s / n_test, 6),
            "n_train": n_train,
            "n_test": n_test,
            "budget_exhausted": budget_exhausted,
        }
        if out_path is not None and save_predictions:
            _save_predictions(out_path / PREDICTIONS_FILE, test_ids, scores, maps)
            result["predictions"] = str(out_path / PREDICTIONS_FILE)
        if out_path is not None and save_checkpoint:
            model.save(out_path / CHECKPOINT_DIR)
            result["checkpoint"] = str(out_path / CHECKPOINT_DIR)
        result["status"] = "ok"
        report(1.0, "done")
    except Exception as exc:  # one failing category must not stop the others
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        report(1.0, f"failed: {result['error']}")
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if out_path is not None:
        _write_json(out_path / RESULTS_FILE, result)
    return result


# -- configs ------------------------------------------------------------------------------


def load_config(config: str | Path | ModuleType | Mapping[str, Any]) -> dict[str, Any]:
    """Read and validate a run config: a ``.py`` path, a dotted module name, a module or a dict.

    A config defines ``models`` (a list of dicts: ``algorithm``, optional ``name``, ``params``,
    ``epochs``, ``train_time_limit_s``, ``evaluate_every``, ``batch_size``, ``save_predictions``,
    ``save_checkpoint``), ``categories`` (suite names or category keys) and optionally ``seed``
    and ``roots``.

    Returns
    -------
    dict
        ``{"name", "models" (with every key filled in), "categories" (expanded keys), "seed",
        "roots"}``.

    Raises
    ------
    ConfigError
        Naming the first problem found.
    """
    if isinstance(config, Mapping):
        namespace, name = dict(config), str(config.get("name", "config"))
    else:
        module = config if isinstance(config, ModuleType) else _import_config(config)
        namespace = {k: getattr(module, k) for k in dir(module) if not k.startswith("_")}
        name = Path(getattr(module, "__file__", "") or module.__name__).stem
    models = namespace.get("models")
    if not isinstance(models, list | tuple) or not models:
        raise ConfigError(f"config {name!r}: 'models' must be a non-empty list of dicts")
    categories = namespace.get("categories")
    if isinstance(categories, str):
        categories = [categories]
    if not isinstance(categories, list | tuple) or not categories:
        raise ConfigError(f"config {name!r}: 'categories' must be a non-empty list of suite names or category keys")
    seed = namespace.get("seed", 0)
    roots = namespace.get("roots")
    filled, labels = [], set()
    for i, entry in enumerate(models):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"config {name!r}: models[{i}] must be a dict, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(MODEL_KEYS))
        if unknown:
            raise ConfigError(f"config {name!r}: models[{i}] has unknown key(s) {unknown}; known: {sorted(MODEL_KEYS)}")
        if not isinstance(entry.get("algorithm"), str):
            raise ConfigError(f"config {name!r}: models[{i}] needs an 'algorithm' name")
        model = {k: entry.get(k, v) for k, v in MODEL_KEYS.items()}
        model["params"] = dict(model["params"] or {})
        model["name"] = model["name"] or model["algorithm"]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", model["name"]):
            raise ConfigError(f"config {name!r}: model name {model['name']!r} must be letters, digits, '_', '.', '-'")
        if model["name"] in labels:
            raise ConfigError(f"config {name!r}: two models are named {model['name']!r}; give them distinct 'name's")
        labels.add(model["name"])
        _check_run_args(
            algorithm=model["algorithm"], params=model["params"], epochs=model["epochs"],
            train_time_limit_s=model["train_time_limit_s"], evaluate_every=model["evaluate_every"],
            batch_size=model["batch_size"], seed=seed,
        )
        filled.append(model)
    return {"name": name, "models": filled, "categories": expand_categories(categories), "seed": seed, "roots": roots}


def _import_config(config: str | Path) -> ModuleType:
    text = str(config)
    path = Path(text)
    if text.endswith(".py") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"_vadi_config_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import config file {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"config file {path} failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(text)
    except ImportError as exc:
        raise ConfigError(f"config {text!r} is neither a .py file nor an importable module ({exc})") from exc


def expand_categories(entries: Iterable[str]) -> list[str]:
    """Suite names (``"synthetic"``, ``"vadi"``) and category keys to a de-duplicated key list."""
    from .data import SUITES, list_categories

    keys: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"categories must be suite names or category keys, got {entry!r}")
        if "/" in entry:
            found = [entry]
        elif entry in SUITES:
            found = list_categories(entry)
        else:
            suites = ", ".join(sorted(SUITES))
            raise ConfigError(f"unknown suite {entry!r} (suites: {suites}); category keys look like 'mvtec/bottle'")
        keys.extend(k for k in found if k not in keys)
    return keys


def run_config(
    config: str | Path | ModuleType | Mapping[str, Any],
    *,
    device: str = "cpu",
    out_dir: str | Path = DEFAULT_OUT_DIR,
    roots: Mapping[str, str | Path] | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Run every model of a config on every category; write ``summary.json`` into ``out_dir``.

    Per-category documents go to ``out_dir/<model name>/<dataset>/<category>/results.json``.

    Parameters
    ----------
    config : path, module name, module or dict
        See :func:`load_config`.
    device : str
        Torch device for every run.
    out_dir : path
        Output directory (created).
    roots : dict, optional
        Dataset roots, overriding the config's ``roots``.
    progress : callable, optional
        ``progress(fraction, message)`` over the whole config.

    Returns
    -------
    list of dict
        The per-category results documents, in run order.
    """
    spec = load_config(config)
    out_path = Path(out_dir)
    roots = roots if roots is not None else spec["roots"]
    jobs = [(m, c) for m in spec["models"] for c in spec["categories"]]
    results: list[dict[str, Any]] = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    for index, (model, category) in enumerate(jobs):

        def job_progress(fraction: float, message: str, index: int = index) -> None:
            if progress is not None:
                progress((index + fraction) / len(jobs), f"[{index + 1}/{len(jobs)}] {message}")

        results.append(
            run_category(
                algorithm=model["algorithm"],
                params=model["params"],
                category=category,
                roots=roots,
                device=device,
                epochs=model["epochs"],
                train_time_limit_s=model["train_time_limit_s"],
                evaluate_every=model["evaluate_every"],
                batch_size=model["batch_size"],
                seed=spec["seed"],
                out_dir=out_path / model["name"] / category,
                save_predictions=model["save_predictions"],
                save_checkpoint=model["save_checkpoint"],
                progress=job_progress,
            )
        )
        results[-1]["model_name"] = model["name"]
    summary = {
        "schema": SUMMARY_SCHEMA,
        "config": spec["name"],
        "device": device,
        "seed": spec["seed"],
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": [{k: v for k, v in m.items()} for m in spec["models"]],
        "categories": spec["categories"],
        "runs": [
            {
                "model_name": r["model_name"],
                "algorithm": r["algorithm"],
                "category": r["category"],
                "status": r["status"],
                "error": r["error"],
                "primary_variant": r["primary_variant"],
                "metrics": r["metrics"],
                "timings": r["timings"],
                "results": str(out_path / r["model_name"] / r["category"] / RESULTS_FILE),
            }
            for r in results
        ],
    }
    _write_json(out_path / SUMMARY_FILE, summary)
    return results


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m algorithms run --config CONFIG")

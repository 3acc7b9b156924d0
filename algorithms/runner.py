"""The benchmark runner: train on a schedule, predict, evaluate, record (schema ``vadi-run/1``).

``run_category(spec, category)`` runs one ``RunSpec`` (``algorithms.runspec``) on one category
for one of its seeds: it trains for the spec's epochs or iterations, stopping early only at the
wall-clock cap ``train_time_limit_s`` (the paper gave every algorithm two hours), evaluates every
``evaluate_every`` epochs (or iterations) and at the end, and returns (and optionally writes) the
per-category results JSON described in ``docs/contracts.md``, which records the spec. The
algorithm sees images only: ground truth is read by the evaluation step alone.

The cap is enforced inside an epoch too: the training loader handed to ``fit_epoch`` stops
yielding batches once the time is spent (or the iterations are done), so a slow epoch cannot
overrun it by more than one batch. ``pre_eval`` (e.g. PatchCore's memory bank) is counted as
training time, as in VisionAD, but never cut short.

``run_config`` runs every spec of a config over its categories and seeds and writes a summary.
A failing category is recorded with ``status: "failed"``, the error and its traceback, and does
not stop the others.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from evaluation.metrics import EVAL_SIZE, EVALUATOR_VERSION, evaluate_at_protocol, localisation_report, to_protocol

from .runspec import ConfigError, RunSpec, load_run_config

__all__ = [
    "SCHEMA",
    "ConfigError",
    "combine_seeds",
    "environment_info",
    "resolve_device",
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


# -- training helpers ---------------------------------------------------------------------


class _BudgetedLoader:
    """Iterates a loader until a training-time deadline or a number of batches, whichever comes first.

    ``truncated`` tells whether the deadline (not the batch limit) cut the pass short;
    ``batches`` counts the batches handed out.
    """

    def __init__(self, loader: Iterable, *, remaining_s: float, max_batches: int | None = None) -> None:
        self.loader = loader
        self.remaining_s = remaining_s
        self.max_batches = max_batches
        self.truncated = False
        self.batches = 0

    def __len__(self) -> int:
        n = len(self.loader)  # type: ignore[arg-type]
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self):
        deadline = time.perf_counter() + self.remaining_s
        for batch in self.loader:
            self.batches += 1
            yield batch
            if self.max_batches is not None and self.batches >= self.max_batches:
                return
            if time.perf_counter() >= deadline:
                self.truncated = True
                return


class PeakMemory:
    """The peak memory of one run: a context manager; ``megabytes`` and ``measure`` after it exits.

    On CUDA: ``torch.cuda.max_memory_allocated`` of the run's device (tensors only; reset at the
    start). On CPU: the process's resident set size (RSS), sampled every ``interval_s`` by a
    daemon thread from ``/proc/self/statm`` while the run lasts, so that a worker process that
    ran other jobs before does not report their peak (``ru_maxrss`` would). Without ``/proc``
    (macOS) the process's lifetime peak ``ru_maxrss`` is reported and named as such.
    """

    def __init__(self, device: str, *, interval_s: float = 0.05) -> None:
        self.device = str(device)
        self.interval_s = interval_s
        self.megabytes: float | None = None
        self.measure = ""
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _rss_bytes() -> int | None:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return pages * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, self._rss_bytes() or 0)

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        else:
            first = self._rss_bytes()
            if first is not None:
                self._peak = first
                self._thread = threading.Thread(target=self._sample, name="vadi-peak-rss", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.megabytes = torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20
            self.measure = "CUDA max memory allocated"
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss_bytes() or 0)
            self.megabytes = self._peak / 2**20
            self.measure = f"process RSS peak (sampled every {self.interval_s * 1000:.0f} ms)"
        else:
            import resource

            scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
            self.megabytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
            self.measure = "process lifetime RSS peak (ru_maxrss)"


def parameter_counts(model: Any) -> dict[str, int]:
    """``{"params_total", "params_trainable"}``: elements of ``model.parameters()``, and of those with
    ``requires_grad`` (frozen backbones are not trainable). Buffers (memory banks, statistics) are
    not parameters and are not counted."""
    total = trainable = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return {"params_total": int(total), "params_trainable": int(trainable)}


def resolve_device(device: str) -> str:
    """``"auto"`` to ``"cuda:0"`` when CUDA is available, else ``"cpu"``; other devices unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


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


def localisation_document(ground_truth, maps: np.ndarray, *, iou_limit: float = 0.3) -> dict[str, Any] | None:
    """What PL decided for one map variant, anomaly by anomaly, at the protocol's resolution.

    ``evaluation.metrics.localisation_report`` on the masks and maps brought to the protocol
    (as ``evaluate_at_protocol`` does, so its ``pl`` is the reported PL), with each anomaly's
    test-image id and defect type (the test folder's name) added. ``None`` when PL is undefined
    (no anomalous test image).
    """
    if not np.asarray(ground_truth.labels).any():
        return None
    masks, protocol_maps = to_protocol(ground_truth.masks, maps)
    try:
        report = localisation_report(masks, protocol_maps, iou_limit=iou_limit)
    except ValueError:
        return None
    document = report.to_dict(ids=ground_truth.ids, defect_types=ground_truth.defect_types)
    document["size"] = EVAL_SIZE
    return document


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
    spec: RunSpec,
    category: str,
    *,
    seed: int | None = None,
    roots: Mapping[str, str | Path] | None = None,
    out_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train, evaluate and record one run specification on one of its categories, for one seed.

    Parameters
    ----------
    spec : RunSpec
        What to run: algorithm, hyperparameters, schedule, time cap, evaluation schedule, batch
        size, device and what to save (see ``algorithms.runspec``). Taken whole, never unpacked
        by the caller.
    category : str
        One of ``spec.categories``, e.g. ``"synthetic/woven"``.
    seed : int, optional
        One of ``spec.seeds`` (default: the first). Seeds Python, NumPy and torch, and the
        shuffling of the training data: a run repeats exactly.
    roots : dict, optional
        Dataset root overrides (see ``algorithms.data.dataset_roots``).
    out_dir : path, optional
        Directory for ``results.json`` (and, when the spec saves them, ``predictions.npz``: ids,
        float32 scores and maps; ``checkpoint/``: the trained model).
    progress : callable, optional
        ``progress(fraction, message)``, called as the run advances (worker heartbeats).

    Returns
    -------
    dict
        The ``vadi-run/1`` results document (``"spec"`` records the run); ``status`` is
        ``"failed"`` (with ``error`` and ``traceback``) when anything went wrong after validation.

    Raises
    ------
    ConfigError
        A category or seed the spec does not name, an unknown hyperparameter, or outputs to
        save without ``out_dir``; raised before anything is run or written.
    """
    if not isinstance(spec, RunSpec):
        raise TypeError(f"run_category takes a RunSpec (algorithms.runspec), got {type(spec).__name__}")
    if category not in spec.categories:
        raise ConfigError(f"category {category!r} is not one of the run's categories {list(spec.categories)}")
    seed = spec.seeds[0] if seed is None else seed
    if seed not in spec.seeds:
        raise ConfigError(f"seed {seed!r} is not one of the run's seeds {list(spec.seeds)}")
    spec.check_params()
    if (spec.save_predictions or spec.save_checkpoint) and out_dir is None:
        raise ConfigError("save_predictions and save_checkpoint need an out_dir")
    out_path = Path(out_dir) if out_dir is not None else None
    algorithm, train_time_limit_s, evaluate_every = spec.algorithm, spec.train_time_limit_s, spec.evaluate_every

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), f"{algorithm} {category}: {message}")

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "running",
        "error": "",
        "algorithm": algorithm,
        "params": dict(spec.params),
        "category": category,
        "seed": seed,
        "evaluator_version": EVALUATOR_VERSION,
        "primary_variant": None,
        "metrics": {},
        "history": [],
        "timings": {},
        "spec": spec.to_json(),
        "environment": {},
        "predictions": None,
        "checkpoint": None,
        "model": {},
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch
        from tqdm.auto import tqdm

        from .data import load_category, make_loader
        from .registry import create_algorithm, get_algorithm_info
        from .utils import seed_everything

        device = resolve_device(spec.device)
        result["environment"] = environment_info(device)
        info = get_algorithm_info(algorithm)
        report(0.0, "loading data")
        seed_everything(seed)
        data = load_category(category, roots=roots)
        ground_truth = data.ground_truth()  # read and validated before any training: bad masks fail fast
        model = create_algorithm(algorithm, **spec.params).to(torch.device(device))
        result["params"] = model.get_config()  # the full configuration, defaults included
        size, batch_size = model.input_size, spec.batch_size
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
        iterations = spec.iterations  # None for a schedule in epochs
        if iterations is not None:
            max_epochs = math.ceil(iterations / len(train_loader))
        else:
            max_epochs = 1 if info.one_shot else int(spec.epochs)  # type: ignore[arg-type]
        planned_iterations = iterations if iterations is not None else max_epochs * len(train_loader)
        result["model"] = parameter_counts(model)
        peak_memory = PeakMemory(device)
        peak_memory.__enter__()

        train_seconds = 0.0
        last_inference_s = 0.0
        budget_exhausted = False
        last: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        epoch = iterations_done = 0
        bar = tqdm(total=max_epochs, desc=f"{algorithm} {category}", leave=False, disable=None)
        try:
            for epoch in range(1, max_epochs + 1):
                model.train()
                budgeted = _BudgetedLoader(
                    train_loader,
                    remaining_s=train_time_limit_s - train_seconds,
                    max_batches=None if iterations is None else iterations - iterations_done,
                )
                start = time.perf_counter()
                logs = model.fit_epoch(budgeted) or {}
                train_seconds += time.perf_counter() - start
                iterations_done += budgeted.batches
                budget_exhausted = budgeted.truncated or train_seconds >= train_time_limit_s
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, int | float)})
                schedule_done = epoch == max_epochs or (iterations is not None and iterations_done >= iterations)
                is_last = schedule_done or budget_exhausted
                if evaluate_every is None:
                    due = is_last
                elif iterations is None:
                    due = is_last or epoch % evaluate_every == 0
                else:  # a multiple of evaluate_every iterations was passed during this epoch
                    before = iterations_done - budgeted.batches
                    due = is_last or iterations_done // evaluate_every > before // evaluate_every
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
                        "iterations": iterations_done,
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
            peak_memory.__exit__(None, None, None)
        assert last is not None  # the last epoch is always evaluated
        # The schedule is complete when every planned epoch (or iteration) was trained in full;
        # the wall-clock cap stopping it earlier leaves a result that is shown but never ranked.
        schedule_complete = (
            iterations_done >= iterations if iterations is not None else epoch == max_epochs and not budgeted.truncated
        )
        scores, maps = last
        result["metrics"] = result["history"][-1]["metrics"]
        result["primary_variant"] = next(iter(maps))
        # PL explained: every anomaly of the primary map, found or missed, with its IoU per threshold
        localisation = localisation_document(ground_truth, maps[result["primary_variant"]])
        result["localisation"] = {result["primary_variant"]: localisation} if localisation else {}
        result["timings"] = {
            "schedule_unit": spec.schedule_unit,
            "epochs_planned": max_epochs,
            "epochs": epoch,
            "iterations_planned": planned_iterations,
            "iterations": iterations_done,
            "schedule_complete": bool(schedule_complete),
            "train_seconds": round(train_seconds, 4),
            "train_seconds_per_image": round(train_seconds / n_train, 6),
            "inference_seconds": round(last_inference_s, 4),
            "inference_seconds_per_image": round(last_inference_s / n_test, 6),
            "n_train": n_train,
            "n_test": n_test,
            "budget_exhausted": budget_exhausted,
            "peak_memory_mb": round(peak_memory.megabytes, 1) if peak_memory.megabytes is not None else None,
            "peak_memory_measure": peak_memory.measure,
        }
        if out_path is not None and spec.save_predictions:
            _save_predictions(out_path / PREDICTIONS_FILE, test_ids, scores, maps)
            result["predictions"] = str(out_path / PREDICTIONS_FILE)
        if out_path is not None and spec.save_checkpoint:
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


# -- several seeds ------------------------------------------------------------------------

_MEAN_TIMINGS = ("train_seconds", "train_seconds_per_image", "inference_seconds", "inference_seconds_per_image")


def combine_seeds(outputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One category's results over several seeds, as one ``vadi-run/1`` document.

    Parameters
    ----------
    outputs : sequence of dict
        The ``run_category`` documents of one spec and category, one per seed, in seed order.

    Returns
    -------
    dict
        The first seed's document with: ``metrics`` = per map variant and metric the mean over
        the seeds; ``seeds`` (the seeds, in order) and ``seed_metrics`` (``{seed: metrics}``, the
        spread across seeds is computed from them); ``timings`` with the mean times, the
        smallest number of epochs/iterations trained, the largest peak memory and
        ``schedule_complete`` only when every seed completed its schedule. A single output is
        returned with ``seeds`` and ``seed_metrics`` added. When a seed failed, the document is
        that seed's failure (its ``error`` prefixed with the seed): a category's value is never
        the mean of the seeds that happened to succeed.

    Raises
    ------
    ValueError
        No outputs, outputs of different categories or algorithms, or repeated seeds.
    """
    if not outputs:
        raise ValueError("combine_seeds needs at least one run output")
    first = outputs[0]
    seeds = [o.get("seed") for o in outputs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"combine_seeds: repeated seeds {seeds}")
    for other in outputs[1:]:
        for key in ("category", "algorithm"):
            if other.get(key) != first.get(key):
                raise ValueError(f"combine_seeds: outputs of different {key}s ({first.get(key)!r}, {other.get(key)!r})")
    for output in outputs:
        if output.get("status") != "ok":
            failed = dict(output)
            failed["error"] = f"seed {output.get('seed')}: {output.get('error') or 'failed'}"
            failed["seeds"] = seeds
            return failed
    combined = json.loads(json.dumps(first))
    combined["seeds"] = seeds
    combined["seed_metrics"] = {str(o["seed"]): o["metrics"] for o in outputs}
    if len(outputs) == 1:
        return combined
    metrics: dict[str, dict[str, float]] = {}
    for variant, values in first["metrics"].items():
        metrics[variant] = {}
        for metric in values:
            per_seed = [float(o["metrics"][variant][metric]) for o in outputs]
            metrics[variant][metric] = float(np.mean(per_seed))
    combined["metrics"] = metrics
    timings = combined["timings"]
    all_timings = [o.get("timings") or {} for o in outputs]
    for key in _MEAN_TIMINGS:
        values = [t[key] for t in all_timings if isinstance(t.get(key), int | float)]
        if len(values) == len(outputs):
            timings[key] = round(float(np.mean(values)), 6)
    for key in ("epochs", "iterations"):
        values = [t[key] for t in all_timings if isinstance(t.get(key), int)]
        if len(values) == len(outputs):
            timings[key] = min(values)
    memory = [t["peak_memory_mb"] for t in all_timings if isinstance(t.get("peak_memory_mb"), int | float)]
    if memory:
        timings["peak_memory_mb"] = max(memory)
    timings["schedule_complete"] = all(bool(t.get("schedule_complete", True)) for t in all_timings)
    timings["budget_exhausted"] = any(bool(t.get("budget_exhausted")) for t in all_timings)
    combined["timings_per_seed"] = {str(o["seed"]): o.get("timings") or {} for o in outputs}
    return combined


# -- configs ------------------------------------------------------------------------------


def run_out_dir(out_dir: str | Path, spec: RunSpec, category: str, seed: int) -> Path:
    """Where a run writes: ``<out>/<name>/<dataset>/<category>``, with ``seed-<n>/`` when it has several seeds."""
    base = Path(out_dir) / spec.name
    return (base / f"seed-{seed}" if len(spec.seeds) > 1 else base) / category


def run_config(
    config: str | Path | ModuleType | Mapping[str, Any],
    *,
    device: str | None = None,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    roots: Mapping[str, str | Path] | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Run every spec of a config on every category and seed; write ``summary.json`` into ``out_dir``.

    Per-category documents go to :func:`run_out_dir` (``out_dir/<name>/<dataset>/<category>/``).

    Parameters
    ----------
    config : path, module name, module or dict
        See ``algorithms.runspec.load_run_config``.
    device : str, optional
        Overrides every spec's device (``--device`` of the CLI).
    out_dir : path
        Output directory (created).
    roots : dict, optional
        Dataset roots, overriding the config's ``roots``.
    progress : callable, optional
        ``progress(fraction, message)`` over the whole config.

    Returns
    -------
    list of dict
        The per-category results documents, in run order (each with ``model_name``).

    Raises
    ------
    ConfigError
        Before anything runs: the config's own problems and unknown hyperparameters, naming the
        file and the entry.
    """
    loaded = load_run_config(config)
    specs = list(loaded.specs)
    if device is not None:
        try:
            specs = [spec.replace(device=device) for spec in specs]
        except ConfigError as exc:
            raise ConfigError(f"--device: {exc}") from None
    loaded.check_params()
    out_path = Path(out_dir)
    roots = roots if roots is not None else loaded.roots
    jobs = [(spec, seed, category) for spec in specs for seed in spec.seeds for category in spec.categories]
    results: list[dict[str, Any]] = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    for index, (spec, seed, category) in enumerate(jobs):

        def job_progress(fraction: float, message: str, index: int = index) -> None:
            if progress is not None:
                progress((index + fraction) / len(jobs), f"[{index + 1}/{len(jobs)}] {message}")

        result = run_category(
            spec, category, seed=seed, roots=roots, out_dir=run_out_dir(out_path, spec, category, seed),
            progress=job_progress,
        )  # fmt: skip
        result["model_name"] = spec.name
        results.append(result)
    summary = {
        "schema": SUMMARY_SCHEMA,
        "config": loaded.source,
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "specs": [spec.to_json() for spec in specs],
        "runs": [
            {
                "model_name": r["model_name"],
                "algorithm": r["algorithm"],
                "category": r["category"],
                "seed": r["seed"],
                "status": r["status"],
                "error": r["error"],
                "primary_variant": r["primary_variant"],
                "metrics": r["metrics"],
                "timings": r["timings"],
                "results": str(run_out_dir(out_path, spec, r["category"], r["seed"]) / RESULTS_FILE),
            }
            for (spec, _, _), r in zip(jobs, results, strict=True)
        ],
    }
    _write_json(out_path / SUMMARY_FILE, summary)
    return results

"""Re-benchmarks: admins ask for methods x categories; this creates the runs and enqueues their jobs.

One ``BenchmarkRun`` per method (its config: the algorithm's params, budgets and seed from a
config file in ``algorithms/configs/``) with one ``BenchmarkJob`` per category. After the
transaction commits, one Celery task per job is enqueued by name (``jobs.RUN_BENCHMARK_JOB_TASK``);
workers claim, run and record them through ``services.benchmark_jobs``, and the last job to
finish publishes the run. Earlier runs stay as history.

Used by the Django admin, ``manage.py rebenchmark``, the staff API and ``manage.py setup_demo``.
Nothing here imports torch: config files are plain Python dictionaries.
"""

from __future__ import annotations

import hashlib
import json
import re
import runpy
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from ..models import BenchmarkJob, BenchmarkRun, Category, JobStatus, Method, Suite
from .jobs import RUN_BENCHMARK_JOB_TASK, job_enqueue

CONFIG_DIR = Path(settings.BASE_DIR) / "algorithms" / "configs"
DEFAULT_CONFIG = "paper"
_CONFIG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NOT_CONFIGS = {"__init__", "defaults"}
#: The config keys that define what a run computes (and so when two runs are the same run).
_FINGERPRINT_KEYS = ("algorithm", "params", "epochs", "train_time_limit_s", "evaluate_every", "batch_size", "seed")


class BenchmarkRequestError(ValueError):
    """A re-benchmark request that cannot be honoured; the message says what is wrong."""


@dataclass(frozen=True)
class BenchmarkConfig:
    """A loaded config file: per-algorithm entries, default categories (suites or keys), seed."""

    name: str
    models: tuple[dict[str, Any], ...]
    categories: tuple[str, ...]
    seed: int

    def entry_for(self, algorithm: str) -> dict[str, Any]:
        """The config's entry for ``algorithm``; ``BenchmarkRequestError`` when it has none."""
        for entry in self.models:
            if entry.get("algorithm") == algorithm:
                return entry
        available = ", ".join(sorted(str(e.get("algorithm")) for e in self.models)) or "none"
        raise BenchmarkRequestError(
            f"config {self.name!r} has no entry for algorithm {algorithm!r} (it configures: {available})"
        )


def benchmark_config_names() -> list[str]:
    """Names of the config files shipped in ``algorithms/configs/`` (usable by the API and admin)."""
    if not CONFIG_DIR.is_dir():
        return []
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in _NOT_CONFIGS and _CONFIG_NAME.match(p.stem))


_LOADER = (
    "import json, runpy, sys\n"
    "ns = runpy.run_path(sys.argv[1])\n"
    "keep = {k: ns[k] for k in ('models', 'categories', 'seed') if k in ns}\n"
    "sys.stdout.write(json.dumps(keep, default=repr))\n"
)


def _config_namespace(path: Path) -> dict[str, Any]:
    """Execute a config file and return its ``models``, ``categories`` and ``seed``.

    Config files query the algorithm registry, which imports torch. When torch is not loaded
    yet (the web process, a broker-backed command) the file runs in a child interpreter, so
    the web process never imports torch; a worker or an eager run loads it in-process.
    """
    if "torch" in sys.modules:
        try:
            namespace = runpy.run_path(str(path))
        except Exception as exc:
            raise BenchmarkRequestError(f"config {path} could not be loaded: {type(exc).__name__}: {exc}") from exc
        return {k: namespace[k] for k in ("models", "categories", "seed") if k in namespace}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LOADER, str(path)],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchmarkRequestError(f"config {path} could not be loaded: {exc}") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise BenchmarkRequestError(f"config {path} could not be loaded: {last}")
    return json.loads(proc.stdout)


def benchmark_config_load(config: str | Path | None = None, *, allow_paths: bool = True) -> BenchmarkConfig:
    """Load a config by name (``"synthetic_cpu"``) or, when ``allow_paths``, by file path.

    Raises ``BenchmarkRequestError`` naming the file and the problem (missing, no ``models``
    list, an entry without an algorithm or budgets).
    """
    config = DEFAULT_CONFIG if config in (None, "") else config
    text = str(config)
    if _CONFIG_NAME.match(text):
        path, name = CONFIG_DIR / f"{text}.py", text
        if text in _NOT_CONFIGS or not path.is_file():
            raise BenchmarkRequestError(
                f"unknown config {text!r}; available: {', '.join(benchmark_config_names()) or 'none'}"
            )
    elif allow_paths:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        if not path.is_file() or path.suffix != ".py":
            raise BenchmarkRequestError(f"config file {path} does not exist or is not a .py file")
        try:
            name = path.relative_to(CONFIG_DIR).with_suffix("").as_posix()
        except ValueError:
            name = str(path)
    else:
        raise BenchmarkRequestError(f"config must be one of {', '.join(benchmark_config_names())}, got {text!r}")
    namespace = _config_namespace(path)
    models = namespace.get("models")
    if not isinstance(models, list | tuple) or not models:
        raise BenchmarkRequestError(f"config {path} must define a non-empty list `models`")
    for i, entry in enumerate(models):
        if not isinstance(entry, dict) or not entry.get("algorithm"):
            raise BenchmarkRequestError(f"config {path}: models[{i}] must be a dict with an 'algorithm'")
        for key in ("epochs", "train_time_limit_s"):
            if key not in entry:
                raise BenchmarkRequestError(f"config {path}: models[{i}] ({entry['algorithm']}) lacks {key!r}")
    categories = namespace.get("categories") or []
    if isinstance(categories, str):
        categories = [categories]
    return BenchmarkConfig(
        name=name,
        models=tuple(dict(m) for m in models),
        categories=tuple(str(c) for c in categories),
        seed=int(namespace.get("seed", 0) or 0),
    )


def _fingerprint(run_config: dict[str, Any]) -> str:
    core = {key: run_config.get(key) for key in _FINGERPRINT_KEYS}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_config_build(config: BenchmarkConfig, algorithm: str, *, device: str = "auto") -> dict[str, Any]:
    """The JSON stored on a run: algorithm, params, budgets, seed, device and a fingerprint."""
    entry = config.entry_for(algorithm)
    run_config = {
        "config_name": config.name,
        "algorithm": algorithm,
        "params": dict(entry.get("params") or {}),
        "epochs": int(entry["epochs"]),
        "train_time_limit_s": float(entry["train_time_limit_s"]),
        "evaluate_every": entry.get("evaluate_every"),
        "batch_size": int(entry.get("batch_size") or 8),
        "seed": int(entry.get("seed", config.seed)),
        "device": device,
        "save_predictions": bool(entry.get("save_predictions", False)),
    }
    try:
        json.dumps(run_config)
    except TypeError as exc:
        raise BenchmarkRequestError(f"config {config.name!r} entry for {algorithm!r} is not JSON: {exc}") from exc
    run_config["fingerprint"] = _fingerprint(run_config)
    return run_config


def _git_commit() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _resolve_methods(methods: Iterable[str | Method]) -> list[Method]:
    keys, resolved = [], []
    for item in methods:
        if isinstance(item, Method):
            resolved.append(item)
        else:
            keys.extend(k.strip() for k in str(item).split(",") if k.strip())
    if keys:
        found = {m.key: m for m in Method.objects.filter(key__in=keys)}
        missing = [k for k in keys if k not in found]
        if missing:
            raise BenchmarkRequestError(f"unknown method(s): {', '.join(missing)}")
        resolved.extend(found[k] for k in keys)
    unique = list({m.pk: m for m in resolved}.values())
    if not unique:
        raise BenchmarkRequestError("choose at least one method")
    not_reproducible = [m.key for m in unique if not m.algorithm_key]
    if not_reproducible:
        raise BenchmarkRequestError(
            f"method(s) {', '.join(not_reproducible)} have no registered algorithm, so our workers cannot run them"
        )
    return unique


def _resolve_categories(
    suites: Sequence[str], categories: Sequence[str], config: BenchmarkConfig
) -> tuple[list[Category], Suite | None]:
    names = [*suites, *categories] or list(config.categories)
    if not names:
        raise BenchmarkRequestError("choose at least one suite or category")
    suite_rows = {s.key: s for s in Suite.objects.filter(key__in=names)}
    category_rows = {c.key: c for c in Category.objects.filter(key__in=names)}
    chosen: dict[int, Category] = {}
    unknown = []
    for name in names:
        if name in suite_rows:
            for category in suite_rows[name].categories.order_by("key"):
                chosen.setdefault(category.pk, category)
        elif name in category_rows:
            chosen.setdefault(category_rows[name].pk, category_rows[name])
        else:
            unknown.append(name)
    if unknown:
        raise BenchmarkRequestError(
            f"unknown suite(s) or category key(s): {', '.join(unknown)} (run `manage.py sync_catalog` first?)"
        )
    if not chosen:
        raise BenchmarkRequestError(f"the chosen suites have no categories: {', '.join(names)}")
    # Remember the suite when the request was exactly one suite (the run page links to it).
    suite = suite_rows[names[0]] if len(names) == 1 and names[0] in suite_rows else None
    return sorted(chosen.values(), key=lambda c: c.key), suite


def benchmark_run_complete_for(*, method: Method, run_config: dict[str, Any], categories: Iterable[Category]):
    """A published run of ``method`` with the same fingerprint whose jobs all succeeded on exactly ``categories``."""
    wanted = {c.pk for c in categories}
    candidates = BenchmarkRun.objects.filter(
        method=method, status=JobStatus.DONE, is_published=True, config__fingerprint=run_config["fingerprint"]
    ).order_by("-created_at")
    for run in candidates:
        jobs = list(run.jobs.values_list("category_id", "status"))
        if {c for c, _ in jobs} == wanted and all(s == JobStatus.DONE for _, s in jobs):
            return run
    return None


def benchmark_runs_create(
    *,
    methods: Iterable[str | Method],
    suites: Sequence[str] = (),
    categories: Sequence[str] = (),
    config: str | Path | BenchmarkConfig | None = None,
    requested_by=None,
    device: str = "auto",
    skip_complete: bool = False,
    allow_config_paths: bool = True,
) -> list[BenchmarkRun]:
    """Create one run per method (one job per category) and enqueue the jobs when the transaction commits.

    ``suites`` and ``categories`` (keys) are merged; when both are empty the config's own
    ``categories`` are used. With ``skip_complete``, a method that already has a complete,
    published run of the same config on the same categories gets no new run (that run is
    returned instead). Everything is validated before anything is written; a bad request
    raises ``BenchmarkRequestError``.
    """
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise BenchmarkRequestError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not isinstance(config, BenchmarkConfig):
        config = benchmark_config_load(config, allow_paths=allow_config_paths)
    method_rows = _resolve_methods(methods)
    category_rows, suite = _resolve_categories(list(suites), list(categories), config)
    plans = [(m, run_config_build(config, m.algorithm_key, device=device)) for m in method_rows]
    commit = _git_commit()

    runs: list[BenchmarkRun] = []
    job_ids: list[int] = []
    with transaction.atomic():
        for method, run_config in plans:
            if skip_complete:
                existing = benchmark_run_complete_for(method=method, run_config=run_config, categories=category_rows)
                if existing is not None:
                    runs.append(existing)
                    continue
            run = BenchmarkRun.objects.create(
                method=method,
                suite=suite,
                requested_by=requested_by if getattr(requested_by, "pk", None) else None,
                config=run_config,
                commit=commit,
                progress_message=f"0/{len(category_rows)} categories finished; queued",
            )
            run.categories.set(category_rows)
            jobs = BenchmarkJob.objects.bulk_create(
                [BenchmarkJob(run=run, category=c, progress_message="queued") for c in category_rows]
            )
            job_ids.extend(job.pk for job in jobs)
            runs.append(run)
        job_enqueue(RUN_BENCHMARK_JOB_TASK, job_ids)
    return runs


def benchmark_run_repeat(*, run: BenchmarkRun, requested_by=None) -> BenchmarkRun:
    """A new run of the same method, categories and config as ``run`` (its results replace the old on publish)."""
    if not run.method.algorithm_key:
        raise BenchmarkRequestError(f"method {run.method.key} has no registered algorithm")
    categories = list(run.categories.order_by("key")) or [j.category for j in run.jobs.select_related("category")]
    if not categories:
        raise BenchmarkRequestError(f"run {run.pk} has no categories to repeat")
    run_config = dict(run.config)
    with transaction.atomic():
        new = BenchmarkRun.objects.create(
            method=run.method,
            suite=run.suite,
            requested_by=requested_by if getattr(requested_by, "pk", None) else None,
            config=run_config,
            commit=_git_commit(),
            progress_message=f"0/{len(categories)} categories finished; queued",
        )
        new.categories.set(categories)
        jobs = BenchmarkJob.objects.bulk_create(
            [BenchmarkJob(run=new, category=c, progress_message="queued") for c in categories]
        )
        job_enqueue(RUN_BENCHMARK_JOB_TASK, [job.pk for job in jobs])
    return new

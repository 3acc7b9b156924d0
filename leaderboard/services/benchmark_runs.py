"""Re-benchmarks: admins ask for methods x categories; this creates the runs and enqueues their jobs.

One ``BenchmarkRun`` per method with one ``BenchmarkJob`` per category. What a run computes is
one ``RunSpec`` (``algorithms.runspec``), built exactly as the CLI builds it: the config file
(``settings.VADI_RUN_CONFIG_DIR``, e.g. ``algorithms/configs/synthetic_cpu.py``) is read by
``load_run_config``, the method's entry is taken whole, and only what the request chooses (the
categories, the device) is replaced, through the same validator. The run stores the spec
(``BenchmarkRun.config = {"config_name", "spec", "fingerprint"}``) and the worker hands it to
the runner unchanged. A bad config gives the CLI's own message, naming the file and the key.

After the transaction commits, the jobs are sent to the benchmark queue a few at a time, fairly
across runs and users (``services.dispatch``; one Celery task per job, by name
``RUN_BENCHMARK_JOB_TASK``); workers claim, run and record them through
``services.benchmark_jobs``, and the last job to finish publishes the run. Earlier runs stay as
history.

Used by the Django admin, ``manage.py rebenchmark``, the staff API and ``manage.py setup_demo``.
Nothing here imports torch: configs and ``RunSpec`` read algorithm metadata only.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from algorithms.runspec import ConfigError, RunConfig, RunSpec, load_run_config

from ..models import BenchmarkJob, BenchmarkRun, Category, JobStatus, Method, Suite
from .dispatch import benchmark_jobs_dispatch

DEFAULT_CONFIG = "paper"
_CONFIG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class BenchmarkRequestError(ValueError):
    """A re-benchmark request that cannot be honoured; the message says what is wrong."""


def _config_dir() -> Path:
    return Path(settings.VADI_RUN_CONFIG_DIR)


def benchmark_config_names() -> list[str]:
    """Names of the run configs in ``VADI_RUN_CONFIG_DIR`` (what the API and the admin offer)."""
    folder = _config_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__" and _CONFIG_NAME.match(p.stem))


def benchmark_config_needs_weights(name: str) -> bool:
    """Whether a named config trains any entry on pretrained backbones (weights from the hub cache or a download).

    An entry counts as random-initialised only when its params say ``pretrained: False``; an
    unreadable config counts as needing weights (it is offered last).
    """
    try:
        loaded = benchmark_config_load(name, allow_paths=False)
    except BenchmarkRequestError:
        return True
    return any(spec.params.get("pretrained", True) is not False for spec in loaded.specs)


def benchmark_config_default() -> str:
    """The config a re-benchmark form starts from (``VADI_DEFAULT_RUN_CONFIG``).

    Default: ``synthetic_cpu`` (random-initialised, runs anywhere: the demo) when the deployment
    runs with ``DEBUG``, else ``paper``; falls back to the first available config.
    """
    names = benchmark_config_names()
    wanted = getattr(settings, "VADI_DEFAULT_RUN_CONFIG", "") or ("synthetic_cpu" if settings.DEBUG else DEFAULT_CONFIG)
    return wanted if wanted in names else (names[0] if names else DEFAULT_CONFIG)


def benchmark_config_choices() -> list[tuple[str, str]]:
    """``(name, label)`` of the configs to offer, the default first, each saying what it needs."""
    default = benchmark_config_default()
    names = sorted(benchmark_config_names(), key=lambda n: (n != default, n))
    needs = "pretrained backbones: needs their weights in the hub cache or a download"
    runs_anywhere = "random-initialised backbones: runs on any worker"
    return [(name, f"{name} ({needs if benchmark_config_needs_weights(name) else runs_anywhere})") for name in names]


def benchmark_config_load(config: str | Path | None = None, *, allow_paths: bool = True) -> RunConfig:
    """Load a config by name (``"synthetic_cpu"``) or, when ``allow_paths``, by file path.

    Raises ``BenchmarkRequestError`` with ``load_run_config``'s message (the file, the entry and
    the key), or naming the configs available.
    """
    config = DEFAULT_CONFIG if config in (None, "") else config
    text = str(config)
    unknown = f"unknown config {text!r}; available: {', '.join(benchmark_config_names()) or 'none'}"
    if _CONFIG_NAME.match(text):
        path = _config_dir() / f"{text}.py"
        if text == "__init__" or not path.is_file():
            raise BenchmarkRequestError(unknown)
    elif allow_paths:
        path = Path(text).expanduser()
        if not path.is_file() or path.suffix != ".py":
            raise BenchmarkRequestError(f"config file {path.resolve()} does not exist or is not a .py file")
    else:  # the admin and the API name configs; only management commands may give a path
        raise BenchmarkRequestError(unknown)
    try:
        return load_run_config(path)
    except ConfigError as exc:
        raise BenchmarkRequestError(str(exc)) from exc


def run_spec_build(
    config: RunConfig, algorithm: str, *, categories: Sequence[str], device: str, seeds: Sequence[int] | None = None
) -> RunSpec:
    """The config's run of ``algorithm`` on the chosen ``categories`` (keys) and ``device``, validated.

    Every seed of the entry is run: each job trains its category once per seed, and the
    category's value is the mean over the seeds, each seed's value kept (``Result.extra``).
    ``seeds`` replaces the entry's seeds (validated as the config's would be).
    """
    changes: dict[str, Any] = {"categories": tuple(categories), "device": device}
    if seeds is not None:
        changes["seeds"] = tuple(seeds)
    try:
        return config.spec_for(algorithm).replace(**changes)
    except ConfigError as exc:
        raise BenchmarkRequestError(str(exc)) from exc


def run_config_json(config_name: str, spec: RunSpec) -> dict[str, Any]:
    """What ``BenchmarkRun.config`` stores: the config's name, the spec, its fingerprint."""
    return {"config_name": config_name, "spec": spec.to_json(), "fingerprint": spec.fingerprint()}


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


def _resolve_categories(names: Sequence[str]) -> tuple[list[Category], Suite | None]:
    """Category rows for suite keys and category keys; the suite, when they are exactly one suite's."""
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
    rows = sorted(chosen.values(), key=lambda c: c.key)
    if len(names) == 1 and names[0] in suite_rows:  # the run page links to the suite
        return rows, suite_rows[names[0]]
    keys = {c.pk for c in rows}
    same = [s for s in Suite.objects.prefetch_related("categories") if {c.pk for c in s.categories.all()} == keys]
    return rows, same[0] if len(same) == 1 else None


def benchmark_run_complete_for(*, method: Method, spec: RunSpec, categories: Iterable[Category]):
    """A published run of ``method`` with the same fingerprint whose jobs all succeeded on exactly ``categories``."""
    wanted = {c.pk for c in categories}
    candidates = BenchmarkRun.objects.filter(
        method=method, status=JobStatus.DONE, is_published=True, config__fingerprint=spec.fingerprint()
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
    config: str | Path | RunConfig | None = None,
    requested_by=None,
    device: str = "auto",
    seeds: Sequence[int] | None = None,
    skip_complete: bool = False,
    allow_config_paths: bool = True,
    dispatch: bool = True,
) -> list[BenchmarkRun]:
    """Create one run per method (one job per category) and dispatch the first jobs when the transaction commits.

    Each method's run is its entry in ``config`` (a ``RunSpec``) with the categories of
    ``suites`` and ``categories`` (keys; merged), ``device`` and, when given, ``seeds`` (each
    job then trains once per seed; values are the means over the seeds); with neither suites nor
    categories, the entry's own categories. With ``skip_complete``, a method that already has a
    complete, published run of the same spec on the same categories gets no new run (that run
    is returned instead). Everything is validated before anything is written; a bad request
    raises ``BenchmarkRequestError``. With ``dispatch=False`` the jobs wait in the database for
    the caller's (or the sweeper's) ``benchmark_jobs_dispatch`` (the admin, when tasks run
    eagerly, dispatches after its answer so that the browser does not wait for the training).
    """
    if not isinstance(config, RunConfig):
        config = benchmark_config_load(config, allow_paths=allow_config_paths)
    method_rows = _resolve_methods(methods)
    requested = [*suites, *categories]
    plans = []
    for method in method_rows:
        try:
            entry = config.spec_for(method.algorithm_key)
        except ConfigError as exc:
            raise BenchmarkRequestError(str(exc)) from exc
        category_rows, suite = _resolve_categories(requested or list(entry.categories))
        spec = run_spec_build(
            config, method.algorithm_key, categories=[c.key for c in category_rows], device=device, seeds=seeds
        )
        plans.append((method, spec, category_rows, suite))
    commit = _git_commit()

    runs: list[BenchmarkRun] = []
    job_ids: list[int] = []
    with transaction.atomic():
        for method, spec, category_rows, suite in plans:
            if skip_complete:
                existing = benchmark_run_complete_for(method=method, spec=spec, categories=category_rows)
                if existing is not None:
                    runs.append(existing)
                    continue
            run = BenchmarkRun.objects.create(
                method=method,
                suite=suite,
                requested_by=requested_by if getattr(requested_by, "pk", None) else None,
                config=run_config_json(config.name, spec),
                commit=commit,
                progress_message=f"0/{len(category_rows)} categories finished; queued",
            )
            run.categories.set(category_rows)
            jobs = BenchmarkJob.objects.bulk_create(
                [BenchmarkJob(run=run, category=c, progress_message="queued") for c in category_rows]
            )
            job_ids.extend(job.pk for job in jobs)
            runs.append(run)
        if job_ids and dispatch:
            benchmark_jobs_dispatch()  # the first ones; claims send the rest (services.dispatch)
    return runs


def benchmark_run_repeat(*, run: BenchmarkRun, requested_by=None) -> BenchmarkRun:
    """A new run of the same method, categories and config as ``run`` (its results replace the old on publish)."""
    if not run.method.algorithm_key:
        raise BenchmarkRequestError(f"method {run.method.key} has no registered algorithm")
    categories = list(run.categories.order_by("key")) or [j.category for j in run.jobs.select_related("category")]
    if not categories:
        raise BenchmarkRequestError(f"run {run.pk} has no categories to repeat")
    try:
        spec = RunSpec.from_json(run.config.get("spec"))
    except ConfigError as exc:
        raise BenchmarkRequestError(f"run {run.pk} cannot be repeated as it was recorded: {exc}") from exc
    run_config = run_config_json(str(run.config.get("config_name") or ""), spec)
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
        BenchmarkJob.objects.bulk_create(
            [BenchmarkJob(run=new, category=c, progress_message="queued") for c in categories]
        )
        benchmark_jobs_dispatch()
    return new

"""Submissions and benchmark runs, as the visibility rule lets each viewer see them.

``visibility`` says who sees what: published runs and submissions for everyone, their own
submissions for owners, everything for staff. A hidden row and a missing one look the same
(``DoesNotExist``): nobody learns that a private submission exists.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet

from ..failures import public_message
from ..models import BenchmarkJob, BenchmarkRun, JobStatus, Submission
from .visibility import Viewer, run_visible_q, submission_visible_q

JOB_FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED)


def submission_list(*, viewer: Viewer, method_key: str | None = None) -> QuerySet[Submission]:
    """The submissions ``viewer`` may see, newest first; optionally of one method."""
    qs = Submission.objects.filter(submission_visible_q(viewer)).select_related("method", "suite", "owner")
    if method_key:
        qs = qs.filter(method__key=method_key)
    return qs.order_by("-created_at", "-pk")


def submission_get(*, pk: int, viewer: Viewer) -> Submission:
    """The submission if ``viewer`` may see it; ``Submission.DoesNotExist`` otherwise (no existence leak)."""
    return submission_list(viewer=viewer).get(pk=pk)


def submissions_of(*, owner) -> QuerySet[Submission]:
    """The submissions ``owner`` made (public and private), newest first (for their own pages only)."""
    return Submission.objects.filter(owner=owner).select_related("method", "suite").order_by("-created_at", "-pk")


def submission_active_count(*, owner) -> int:
    """How many of ``owner``'s submissions wait or are being scored (what the concurrent quota counts)."""
    return Submission.objects.filter(owner=owner, status__in=Submission.ACTIVE_STATUSES).count()


def benchmark_run_list(
    *, viewer: Viewer, method_key: str | None = None, pks: Iterable[int] | None = None, with_jobs: bool = False
) -> QuerySet[BenchmarkRun]:
    """The runs ``viewer`` may see (published ones; all for staff), newest first.

    Optionally of one method, or exactly ``pks``; ``with_jobs`` prefetches the jobs.
    """
    qs = BenchmarkRun.objects.filter(run_visible_q(viewer)).select_related("method", "suite")
    if method_key:
        qs = qs.filter(method__key=method_key)
    if pks is not None:
        qs = qs.filter(pk__in=list(pks))
    if with_jobs:
        qs = qs.prefetch_related("jobs__category")
    return qs.order_by("-created_at", "-pk")


def benchmark_job_list(*, run: BenchmarkRun) -> QuerySet[BenchmarkJob]:
    """The run's per-category jobs, in category order."""
    return run.jobs.select_related("category")


def benchmark_job_progress(*, run_ids: Iterable[int] | None = None, created_since=None) -> tuple[int, int, str]:
    """``(finished, total, message)`` over the jobs of the given runs (or of runs created since a time).

    ``message`` is the latest progress message of a running job ("" when none runs). For the
    command-line progress bars of ``setup_demo`` and ``rebenchmark --wait`` (system viewer: no
    visibility filter; the commands are run by the operator).
    """
    jobs = BenchmarkJob.objects.all()
    if run_ids is not None:
        jobs = jobs.filter(run_id__in=list(run_ids))
    if created_since is not None:
        jobs = jobs.filter(run__created_at__gte=created_since)
    counts = {row["status"]: row["n"] for row in jobs.values("status").annotate(n=Count("pk")).order_by()}
    total = sum(counts.values())
    finished = sum(n for status, n in counts.items() if status in JOB_FINISHED_STATUSES)
    running = (
        jobs.filter(status=JobStatus.RUNNING)
        .select_related("run__method", "category")
        .order_by("-updated_at")
        .first()
    )
    message = f"{running.run.method.key} {running.category.key}: {running.progress_message}" if running else ""
    return finished, total, message


def benchmark_run_get(*, pk: int, viewer: Viewer) -> BenchmarkRun:
    """The run if ``viewer`` may see it; ``BenchmarkRun.DoesNotExist`` otherwise."""
    return benchmark_run_list(viewer=viewer).get(pk=pk)


def benchmark_run_public_config(run: BenchmarkRun) -> dict:
    """The run's config as anyone may read it: a config given by file path is named without its path."""
    config = dict(run.config or {})
    if "config_name" in config:
        config["config_name"] = public_message(config["config_name"])
    return config


def job_status(job) -> dict:
    """The JSON status document that the live-progress script polls (messages are public text)."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "progress": round(float(job.progress), 4),
        "progress_message": job.progress_message,
        "error_message": job.error_message if job.status == "failed" else "",
        "is_finished": job.is_finished,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "updated_at": job.updated_at.isoformat() if job.updated_at else None,
    }


def benchmark_run_spec_document(run: BenchmarkRun) -> dict:
    """The run's specification as recorded (``RunSpec.to_json()``): a config file for the CLI."""
    return dict((run.config or {}).get("spec") or {})


def benchmark_run_provenance(run: BenchmarkRun, jobs: Iterable[BenchmarkJob], *, spec_url: str) -> dict[str, Any]:
    """Everything a run page shows about how its numbers were obtained (no query: ``jobs`` are given).

    Returns a dict: ``spec`` (the recorded ``RunSpec`` as JSON), ``params`` (the full
    hyperparameters the model ran with, defaults included, from the first finished job; else
    the spec's overrides), ``pretrained`` (bool or None), ``input_size``, ``schedule`` ("20
    epochs"), ``seeds``, ``time_cap_s``, ``evaluator_versions``, ``per_job`` (category, epochs
    planned and trained, iterations, ``schedule_complete``, times, peak memory, parameters),
    ``schedule_incomplete`` (categories that hit the cap), ``config_name``, ``fingerprint``,
    ``commit``, ``hardware``, ``environment`` and ``commands`` (shell lines that reproduce
    the run from the downloadable spec at ``spec_url``).
    """
    config = benchmark_run_public_config(run)
    spec = dict(config.get("spec") or {})
    jobs = list(jobs)
    outputs = [j.output for j in jobs if isinstance(j.output, dict) and j.output.get("status") == "ok"]
    params = dict(outputs[0].get("params") or {}) if outputs else dict(spec.get("params") or {})
    pretrained = params.get("pretrained") if isinstance(params.get("pretrained"), bool) else None
    unit = "epochs" if spec.get("epochs") is not None else "iterations"
    length = spec.get(unit)
    per_job = []
    for job in jobs:
        t = job.timings or {}
        model = (job.output or {}).get("model") or {}
        per_job.append(
            {
                "category": job.category.key,
                "status": job.get_status_display(),
                "failed": job.status == "failed",
                "error": job.error_message,
                "epochs_planned": t.get("epochs_planned"),
                "epochs": t.get("epochs"),
                "iterations_planned": t.get("iterations_planned"),
                "iterations": t.get("iterations"),
                "schedule_complete": t.get("schedule_complete", not t.get("budget_exhausted", False)) if t else None,
                "train_seconds": t.get("train_seconds"),
                "inference_seconds_per_image": t.get("inference_seconds_per_image"),
                "peak_memory_mb": t.get("peak_memory_mb"),
                "peak_memory_measure": t.get("peak_memory_measure", ""),
                "params_total": model.get("params_total"),
                "params_trainable": model.get("params_trainable"),
                "seeds": (job.output or {}).get("seeds"),
                "evaluator_version": (job.output or {}).get("evaluator_version", ""),
            }
        )
    environment = dict(run.environment or {})
    device = str(environment.get("device") or spec.get("device") or "cpu")
    categories = spec.get("categories") or []
    datasets = sorted({str(c).split("/", 1)[0] for c in categories})
    spec_file = f"run-{run.pk}-spec.json"
    commands = []
    if run.commit:
        commands.append(f"git checkout {shlex.quote(run.commit)}")
    commands.append(f"curl -o {spec_file} {shlex.quote(spec_url)}")
    roots = " ".join(f"--data-root {d}=/path/to/{d}" for d in datasets)
    commands.append(
        f".venv/bin/python -m algorithms run --config {spec_file} --device {shlex.quote(device)} "
        f"--out var/runs/reproduce-{run.pk}" + (f" {roots}" if roots else "")
    )
    return {
        "spec": spec,
        "spec_json": json.dumps(spec, indent=2, sort_keys=True),
        "params": dict(sorted(params.items())),
        "pretrained": pretrained,
        "input_size": params.get("input_size"),
        "schedule": f"{length} {unit}" if length is not None else "",
        "batch_size": spec.get("batch_size"),
        "seeds": spec.get("seeds") or [],
        "time_cap_s": spec.get("train_time_limit_s"),
        "evaluator_versions": sorted({j["evaluator_version"] for j in per_job if j["evaluator_version"]}),
        "per_job": per_job,
        "schedule_incomplete": [j["category"] for j in per_job if j["schedule_complete"] is False],
        "config_name": config.get("config_name", ""),
        "fingerprint": config.get("fingerprint", ""),
        "commit": run.commit,
        "hardware": environment.get("hardware", ""),
        "environment": environment,
        "commands": commands,
        "datasets": datasets,
    }

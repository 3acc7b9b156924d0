"""Run one (benchmark run, category) job on a worker: claim it, train + evaluate, hand back the output.

``benchmark_job_execute`` is what the Celery task ``evaluation.run_benchmark_job`` runs. It
trains and evaluates, and writes no row itself: the claim, progress, heartbeats, the results and
the run's finalisation are ``leaderboard.services.benchmark_jobs`` transitions on the task's lease, so a
task whose job was taken away (swept, then claimed by another worker) writes nothing. The
runner's progress callback is throttled here and reports through the lease; a small background
thread beats while a long silent phase (building a memory bank) runs, so it does not look like
a dead worker.

Only ``benchmark_job_execute`` imports torch (through the runner's training), inside the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils.module_loading import import_string

from algorithms.runner import SCHEMA as RUN_SCHEMA
from algorithms.runner import combine_seeds
from algorithms.runspec import RunSpec
from leaderboard.failures import exception_detail
from leaderboard.services.benchmark_jobs import (
    BENCHMARK_JOBS,
    benchmark_job_claim,
    benchmark_job_complete,
    benchmark_job_progress,
    benchmark_job_unclaimed,
)
from leaderboard.services.jobs import (
    HeartbeatThread,
    JobLease,
    JobLostError,
    heartbeat_interval_s,
    is_transient,
    setting_or_env,
)

if TYPE_CHECKING:  # pragma: no cover
    from leaderboard.models import BenchmarkJob

logger = logging.getLogger(__name__)


def benchmark_runner() -> Callable[..., dict]:
    """The function that trains + evaluates one category (``VADI_BENCHMARK_RUNNER``, a dotted path).

    Default ``algorithms.runner.run_category``; any replacement takes the same arguments:
    ``(spec: RunSpec, category: str, *, roots, out_dir, progress)``.
    """
    return import_string(str(setting_or_env("VADI_BENCHMARK_RUNNER", "algorithms.runner.run_category")))


# Progress ----------------------------------------------------------------------------------


class _ProgressReporter:
    """The runner's ``progress(fraction, message)`` callback: throttled writes through the lease."""

    def __init__(self, job: BenchmarkJob, lease: JobLease, *, interval_s: float) -> None:
        self.lease = lease
        self.run_id = job.run_id
        self.category = job.category.key
        self.interval_s = interval_s
        self.lost = False
        self._last = 0.0

    def mark_lost(self) -> None:
        """Called by the heartbeat thread when the job is no longer this task's."""
        self.lost = True

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.lost:
            raise self.lease.lost()
        now = time.monotonic()
        fraction = min(1.0, max(0.0, float(fraction)))
        if now - self._last < self.interval_s and fraction < 1.0:
            return
        self._last = now
        try:
            benchmark_job_progress(
                self.lease, run_id=self.run_id, category=self.category, progress=fraction, message=message
            )
        except JobLostError:
            self.lost = True
            raise
        logger.info("job %s %s: %3.0f%% %s", self.lease.pk, self.category, 100 * fraction, message)


# Execute -----------------------------------------------------------------------------------


def worker_device() -> str:
    """The device of runs that ask for ``"auto"``: ``VADI_DEVICE``, else ``cuda:0`` when visible, else ``cpu``.

    A GPU worker serves one GPU (``scripts/gpu_workers.py`` starts one process per GPU with
    ``CUDA_VISIBLE_DEVICES=<that GPU>`` and ``VADI_DEVICE=cuda:0``), so ``cuda:0`` is that GPU.
    """
    configured = str(setting_or_env("VADI_DEVICE", "") or "").strip()
    if configured:
        return configured
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def on_this_worker(spec: RunSpec) -> RunSpec:
    """The run's spec with ``device="auto"`` made this worker's device; an explicit device is kept."""
    return spec.replace(device=worker_device()) if spec.device == "auto" else spec


def _job_out_dir(job: BenchmarkJob) -> Path:
    return Path(settings.VADI_RUNS_ROOT) / f"run-{job.run_id}" / job.category.key.replace("/", "__")


def _failure_output(job: BenchmarkJob, message: str, *, traceback: str = "") -> dict[str, Any]:
    return {
        "schema": RUN_SCHEMA,
        "status": "failed",
        "error": message,
        "traceback": traceback,
        "category": job.category.key,
    }


def _check_output(output: Any, category: str) -> str:
    """Return '' when the runner's JSON is usable, else what is wrong with it."""
    if not isinstance(output, dict):
        return f"the runner returned {type(output).__name__}, not a results dict"
    if output.get("schema") != RUN_SCHEMA:
        return f"results schema is {output.get('schema')!r}, expected {RUN_SCHEMA!r}"
    if output.get("status") == "failed":
        return ""
    if output.get("status") != "ok":
        return f"results status is {output.get('status')!r}, expected 'ok' or 'failed'"
    if output.get("category") != category:
        return f"results are for category {output.get('category')!r}, not {category!r}"
    metrics = output.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return "results have no metrics"
    if output.get("primary_variant") not in metrics:
        return f"primary variant {output.get('primary_variant')!r} is not among {sorted(metrics)}"
    if not output.get("evaluator_version"):
        return "results name no evaluator_version"
    for variant, values in metrics.items():
        if not isinstance(values, dict) or not values:
            return f"map variant {variant!r} has no metric values"
    return ""


def output_error(output: Any, *, category: str) -> str:
    """Why the runner's ``output`` for ``category`` fails the job; '' when its results can be recorded.

    An unusable output (not a ``vadi-run/1`` results dict for this category with metrics, a
    primary variant and an evaluator version) is named as such; a runner that reported a
    failure gives its own message.
    """
    problem = _check_output(output, category)
    if problem:
        return f"unusable runner output: {problem}"
    if output.get("status") == "failed":
        return str(output.get("error") or "the runner reported a failure without a message")
    return ""


def _run_seeds(runner: Callable[..., dict], spec: RunSpec, job: BenchmarkJob, reporter: _ProgressReporter) -> Any:
    """Run the spec's seeds one after the other on the job's category; one combined output.

    A single seed is the runner's own document (with ``seeds``); several are combined by
    ``algorithms.runner.combine_seeds`` (per metric the mean over the seeds, every seed's values
    kept). Each seed writes into ``seed-<n>/`` of the job's folder; progress is spread evenly.
    """
    roots = {name: Path(root) for name, root in settings.DATASET_ROOTS.items()}
    if len(spec.seeds) == 1:
        output = runner(spec, job.category.key, roots=roots, out_dir=_job_out_dir(job), progress=reporter)
        usable = _check_output(output, job.category.key) == "" and output.get("status") == "ok"
        return combine_seeds([output]) if usable else output
    outputs = []
    n = len(spec.seeds)
    for index, seed in enumerate(spec.seeds):

        def progress(fraction: float, message: str = "", index: int = index, seed: int = seed) -> None:
            reporter((index + fraction) / n, f"seed {seed} ({index + 1}/{n}): {message}")

        output = runner(
            spec, job.category.key, seed=seed, roots=roots, out_dir=_job_out_dir(job) / f"seed-{seed}",
            progress=progress,
        )  # fmt: skip
        if _check_output(output, job.category.key) or output.get("status") != "ok":
            return output
        outputs.append(output)
    return combine_seeds(outputs)


def benchmark_job_execute(*, job_id: int, task_id: str, runner: Callable[..., dict] | None = None) -> str:
    """Claim the job, train + evaluate its category with the run's ``RunSpec``, hand back the outcome.

    Returns ``"done"``, ``"failed"``, ``"skipped"`` (another task has the job or it is finished)
    or ``"lost"`` (the job was taken away while it ran). Transient errors (database, I/O)
    propagate so that the task retries them; everything else fails the job with its message.
    ``runner`` replaces the configured runner (``benchmark_runner()``; same keyword interface).
    """
    job = benchmark_job_claim(job_id=job_id, task_id=task_id)
    if job is None:  # finished (a redelivered task: its run is finalised again, idempotently) or another's
        if not benchmark_job_unclaimed(job_id=job_id):
            logger.warning("benchmark job %s does not exist; nothing to do", job_id)
        return "skipped"

    lease = BENCHMARK_JOBS.lease(job.pk, task_id)
    reporter = _ProgressReporter(job, lease, interval_s=heartbeat_interval_s())
    try:
        with HeartbeatThread(lease, interval_s=heartbeat_interval_s(), on_lost=reporter.mark_lost):
            if runner is None:
                runner = benchmark_runner()
            spec = on_this_worker(RunSpec.from_json(job.run.config.get("spec")))  # as recorded, validated again
            output = _run_seeds(runner, spec, job, reporter)
    except JobLostError:
        output = None
    except SoftTimeLimitExceeded:
        limit = setting_or_env("VADI_BENCHMARK_SOFT_TIME_LIMIT_S", None)
        logger.error("job %s: stopped at the benchmark time limit (%s s)", job.pk, limit)
        output = _failure_output(
            job,
            f"stopped: the job ran longer than the benchmark time limit ({limit} s); a shorter training budget "
            "(train_time_limit_s) or a higher limit lets it finish",
            traceback=f"the soft time limit of the benchmark queue: VADI_BENCHMARK_SOFT_TIME_LIMIT_S={limit}",
        )
    except Exception as exc:
        if is_transient(exc):
            raise
        logger.exception("job %s: the runner raised", job.pk)
        output = _failure_output(job, f"{type(exc).__name__}: {exc}", traceback=exception_detail(exc))
    if output is None or reporter.lost:
        logger.warning("job %s was taken from task %s while it ran; its output is discarded", job.pk, task_id)
        return "lost"
    return benchmark_job_complete(lease, output=output, error=output_error(output, category=job.category.key))

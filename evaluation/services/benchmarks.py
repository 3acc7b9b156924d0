"""Run one (benchmark run, category) job on a worker and record what it produced.

The lifecycle of a ``BenchmarkJob``: ``queued`` -> ``running`` (claimed by exactly one task with a
conditional update) -> ``done`` | ``failed``. The running task reports progress and a heartbeat
(``heartbeat_at``) through the runner's progress callback, throttled, and from a small
background thread so that a long silent phase (building a memory bank) does not look like a
dead worker. A job whose heartbeat stops is requeued or failed by the sweeper
(``evaluation.services.sweeper``). Every write after the claim is conditional on the job still
belonging to this task, so a task whose job was taken away (swept, then claimed by another
worker) writes nothing.

Results are recorded with ``leaderboard.services.result_record`` (update-or-create on the
unique key: a retried job writes each value once) as each job finishes; when the last job of a
run finishes, the run is finalised: its results are published (``results_publish``) and the
run says which categories failed.

Only ``benchmark_job_execute`` imports torch (through ``algorithms.runner``), inside the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.module_loading import import_string

from leaderboard.models import BenchmarkJob, BenchmarkRun, JobStatus, Provenance
from leaderboard.services.jobs import (
    HeartbeatThread,
    JobLostError,
    heartbeat_interval_s,
    is_transient,
    job_claim,
    setting_or_env,
)
from leaderboard.services.results import result_record, results_publish

logger = logging.getLogger(__name__)

RUN_SCHEMA = "vadi-run/1"
#: States of a benchmark job that a worker holds (what the claim, heartbeats and the sweeper watch).
RUNNING_STATUSES = (JobStatus.RUNNING,)
_MESSAGE_LENGTH = BenchmarkJob._meta.get_field("progress_message").max_length


def benchmark_runner() -> Callable[..., dict]:
    """The function that trains + evaluates one category (``VADI_BENCHMARK_RUNNER``, a dotted path).

    Default ``algorithms.runner.run_category``; any replacement must accept the same keywords.
    """
    return import_string(str(setting_or_env("VADI_BENCHMARK_RUNNER", "algorithms.runner.run_category")))


def _clip(message: str) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= _MESSAGE_LENGTH else message[: _MESSAGE_LENGTH - 1] + "…"


# Claim -------------------------------------------------------------------------------------


def benchmark_job_claim(*, job_id: int, task_id: str) -> BenchmarkJob | None:
    """Take ``job_id`` for the task ``task_id``; ``None`` when another task has it or it is finished.

    A queued job is claimed; so is a *running* job whose heartbeat is older than the timeout
    and which has attempts left: that is a task redelivered by the broker after its worker
    died. The claim is one conditional ``UPDATE``, so two tasks never both win.
    """
    now = timezone.now()
    with transaction.atomic():
        won = job_claim(
            BenchmarkJob.objects.filter(pk=job_id).exclude(run__status__in=[JobStatus.DONE, JobStatus.FAILED]),
            task_id=task_id,
            running=RUNNING_STATUSES,
            claimed_status=JobStatus.RUNNING,
            message=_clip("started"),
            now=now,
        )
        if not won:
            return None
        job = BenchmarkJob.objects.select_related("run", "run__method", "category").get(pk=job_id)
        BenchmarkRun.objects.filter(pk=job.run_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=now, heartbeat_at=now
        )
    logger.info(
        "job %s (%s, %s) claimed by task %s, attempt %s",
        job.pk,
        job.run.method.key,
        job.category.key,
        task_id,
        job.attempts,
    )
    return job


def benchmark_job_release(*, job_id: int, task_id: str, reason: str) -> bool:
    """Hand a claimed job back to the queue (before a retry); ``False`` if it was not ours."""
    return bool(
        BenchmarkJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, celery_task_id=task_id).update(
            status=JobStatus.QUEUED, progress_message=_clip(f"retrying: {reason}"), heartbeat_at=timezone.now()
        )
    )


def benchmark_job_fail(*, job_id: int, message: str, task_id: str | None = None) -> bool:
    """Mark a job failed with ``message`` (only if it is ours, when ``task_id`` is given), then finalise its run."""
    jobs = BenchmarkJob.objects.filter(pk=job_id).exclude(status__in=[JobStatus.DONE, JobStatus.FAILED])
    if task_id is not None:
        jobs = jobs.filter(celery_task_id=task_id)
    now = timezone.now()
    changed = jobs.update(status=JobStatus.FAILED, error_message=message, finished_at=now, heartbeat_at=now)
    run_id = BenchmarkJob.objects.filter(pk=job_id).values_list("run_id", flat=True).first()
    if run_id is not None:
        benchmark_run_finalize(run_id=run_id)
    return bool(changed)


# Progress and heartbeats -------------------------------------------------------------------


def _run_progress_update(run_id: int, message: str) -> None:
    """Recompute a run's progress: finished jobs count 1, running ones their own fraction."""
    jobs = BenchmarkJob.objects.filter(run_id=run_id)
    total = jobs.count()
    if not total:
        return
    finished = jobs.filter(status__in=[JobStatus.DONE, JobStatus.FAILED]).count()
    partial = jobs.exclude(status__in=[JobStatus.DONE, JobStatus.FAILED]).aggregate(s=Sum("progress"))["s"] or 0.0
    BenchmarkRun.objects.filter(pk=run_id).exclude(status__in=[JobStatus.DONE, JobStatus.FAILED]).update(
        progress=min(1.0, (finished + partial) / total),
        progress_message=_clip(f"{finished}/{total} categories finished; {message}"),
        heartbeat_at=timezone.now(),
    )


class _ProgressReporter:
    """The runner's ``progress(fraction, message)`` callback: throttled, ownership-checked writes."""

    def __init__(self, job: BenchmarkJob, task_id: str, *, interval_s: float) -> None:
        self.job_id = job.pk
        self.run_id = job.run_id
        self.category = job.category.key
        self.task_id = task_id
        self.interval_s = interval_s
        self.lost = False
        self._last = 0.0

    def mark_lost(self) -> None:
        """Called by the heartbeat thread when the job is no longer this task's."""
        self.lost = True

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.lost:
            raise JobLostError(f"job {self.job_id} was taken from task {self.task_id}")
        now = time.monotonic()
        fraction = min(1.0, max(0.0, float(fraction)))
        if now - self._last < self.interval_s and fraction < 1.0:
            return
        self._last = now
        alive = BenchmarkJob.objects.filter(
            pk=self.job_id, status=JobStatus.RUNNING, celery_task_id=self.task_id
        ).update(progress=fraction, progress_message=_clip(message or f"{fraction:.0%}"), heartbeat_at=timezone.now())
        if not alive:
            self.lost = True
            raise JobLostError(f"job {self.job_id} was taken from task {self.task_id}")
        _run_progress_update(self.run_id, f"{self.category}: {message or f'{fraction:.0%}'}")
        logger.info("job %s %s: %3.0f%% %s", self.job_id, self.category, 100 * fraction, message)


# Execute -----------------------------------------------------------------------------------


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _job_out_dir(job: BenchmarkJob) -> Path:
    return Path(settings.VADI_RUNS_ROOT) / f"run-{job.run_id}" / job.category.key.replace("/", "__")


def _failure_output(job: BenchmarkJob, message: str) -> dict[str, Any]:
    return {"schema": RUN_SCHEMA, "status": "failed", "error": message, "category": job.category.key}


def _check_output(output: Any, job: BenchmarkJob) -> str:
    """Return '' when the runner's JSON is usable, else what is wrong with it."""
    if not isinstance(output, dict):
        return f"the runner returned {type(output).__name__}, not a results dict"
    if output.get("schema") != RUN_SCHEMA:
        return f"results schema is {output.get('schema')!r}, expected {RUN_SCHEMA!r}"
    if output.get("status") == "failed":
        return ""
    if output.get("status") != "ok":
        return f"results status is {output.get('status')!r}, expected 'ok' or 'failed'"
    if output.get("category") != job.category.key:
        return f"results are for category {output.get('category')!r}, not {job.category.key!r}"
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


def _record_results(job: BenchmarkJob, output: dict[str, Any]) -> int:
    run = job.run
    extra = {"job": job.pk, "timings": output.get("timings") or {}, "seed": output.get("seed")}
    count = 0
    for variant, values in output["metrics"].items():
        for metric, value in values.items():
            result_record(
                method=run.method,
                category=job.category,
                metric=metric,
                value=value,
                provenance=Provenance.REPRODUCED,
                evaluator_version=output["evaluator_version"],
                variant=variant,
                is_primary_variant=variant == output["primary_variant"],
                benchmark_run=run,
                extra=extra,
            )
            count += 1
    return count


def benchmark_job_complete(*, job_id: int, task_id: str, output: dict[str, Any]) -> str:
    """Store the runner's ``output`` for a job this task owns: results + status, atomically.

    Returns the job's new status, or ``"lost"`` when the job is no longer this task's (nothing
    is written then). A runner failure, an unusable output or a value the leaderboard rejects
    fails the job with the reason.
    """
    with transaction.atomic():
        job = (
            BenchmarkJob.objects.select_for_update()
            .select_related("run", "run__method", "category")
            .filter(pk=job_id, status=JobStatus.RUNNING, celery_task_id=task_id)
            .first()
        )
        if job is None:
            return "lost"
        problem = _check_output(output, job)
        error = problem and f"unusable runner output: {problem}"
        if not error and output.get("status") == "failed":
            error = str(output.get("error") or "the runner reported a failure without a message")
        if not error:
            try:
                with transaction.atomic():
                    recorded = _record_results(job, output)
            except ValidationError as exc:
                error = f"results rejected: {'; '.join(exc.messages)}"
            else:
                logger.info("job %s %s: recorded %s values", job.pk, job.category.key, recorded)
        now = timezone.now()
        job.status = JobStatus.FAILED if error else JobStatus.DONE
        job.error_message = error
        job.output = output if isinstance(output, dict) else {}
        job.timings = dict(output.get("timings") or {}) if isinstance(output, dict) else {}
        job.progress = 1.0
        job.progress_message = _clip("failed" if error else "done")
        job.finished_at = now
        job.heartbeat_at = now
        job.save()
        run_id = job.run_id
    if error:
        logger.warning("job %s failed: %s", job_id, error.splitlines()[0] if error else "")
    _run_progress_update(run_id, f"{job.category.key} {job.status}")
    benchmark_run_finalize(run_id=run_id)
    return job.status


def benchmark_job_execute(*, job_id: int, task_id: str, runner: Callable[..., dict] | None = None) -> str:
    """Claim the job, train + evaluate its category with the run's config, record the outcome.

    Returns ``"done"``, ``"failed"``, ``"skipped"`` (another task has the job or it is finished)
    or ``"lost"`` (the job was taken away while it ran). Transient errors (database, I/O)
    propagate so that the task retries them; everything else fails the job with its message.
    ``runner`` replaces the configured runner (``benchmark_runner()``; same keyword interface).
    """
    job = benchmark_job_claim(job_id=job_id, task_id=task_id)
    if job is None:
        run_id = BenchmarkJob.objects.filter(pk=job_id).values_list("run_id", flat=True).first()
        if run_id is None:
            logger.warning("benchmark job %s does not exist; nothing to do", job_id)
        else:  # a redelivered task of a finished job: make sure its run was finalised
            benchmark_run_finalize(run_id=run_id)
        return "skipped"

    config = job.run.config
    reporter = _ProgressReporter(job, task_id, interval_s=heartbeat_interval_s())
    heartbeat = HeartbeatThread(
        BenchmarkJob,
        pk=job.pk,
        task_id=task_id,
        running=RUNNING_STATUSES,
        interval_s=heartbeat_interval_s(),
        on_lost=reporter.mark_lost,
        label="job",
    )
    try:
        with heartbeat:
            if runner is None:
                runner = benchmark_runner()
            output = runner(
                algorithm=config["algorithm"],
                params=dict(config.get("params") or {}),
                category=job.category.key,
                roots={name: Path(root) for name, root in settings.DATASET_ROOTS.items()},
                device=_resolve_device(str(config.get("device") or "auto")),
                epochs=int(config["epochs"]),
                train_time_limit_s=float(config["train_time_limit_s"]),
                evaluate_every=config.get("evaluate_every"),
                batch_size=int(config.get("batch_size") or 8),
                seed=int(config.get("seed") or 0),
                out_dir=_job_out_dir(job),
                save_predictions=bool(config.get("save_predictions", False)),
                progress=reporter,
            )
    except JobLostError:
        output = None
    except Exception as exc:
        if is_transient(exc):
            raise
        logger.exception("job %s: the runner raised", job.pk)
        output = _failure_output(job, f"{type(exc).__name__}: {exc}")
    if output is None or reporter.lost:
        logger.warning("job %s was taken from task %s while it ran; its output is discarded", job.pk, task_id)
        return "lost"
    return benchmark_job_complete(job_id=job.pk, task_id=task_id, output=output)


# Finalise ----------------------------------------------------------------------------------


def _failure_summary(failed: list[BenchmarkJob]) -> str:
    lines = []
    for job in failed:
        first = (job.error_message or "no message").strip().splitlines()
        lines.append(f"{job.category.key}: {first[-1] if first else 'no message'}")
    return "; ".join(lines)


def benchmark_run_finalize(*, run_id: int) -> bool:
    """When every job of the run is finished: publish its results and close it. ``True`` if this call did.

    Safe to call any number of times and from concurrent tasks: the run row is locked and a
    finished run is left alone. A run with at least one successful category is ``done`` and
    published (its message names the failed categories, if any); a run where every category
    failed is ``failed``. Earlier runs' results stay as history.
    """
    with transaction.atomic():
        run = BenchmarkRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished:
            return False
        jobs = list(run.jobs.select_related("category").order_by("category__key"))
        if not jobs or any(not job.is_finished for job in jobs):
            return False
        done = [job for job in jobs if job.status == JobStatus.DONE]
        failed = [job for job in jobs if job.status == JobStatus.FAILED]
        if done:
            environment = dict(done[0].output.get("environment") or {})
            run.environment = environment
            run.commit = str(environment.get("commit") or run.commit)[:64]
            published = results_publish(benchmark_run=run)
            run.is_published = True
            run.status = JobStatus.DONE
            run.error_message = (
                f"{len(failed)} of {len(jobs)} categories failed: {_failure_summary(failed)}" if failed else ""
            )
        else:
            published = 0
            run.status = JobStatus.FAILED
            run.error_message = f"every category failed: {_failure_summary(failed)}"
        now = timezone.now()
        run.progress = 1.0
        run.progress_message = _clip(
            f"{len(done)}/{len(jobs)} categories done" + (f", {len(failed)} failed" if failed else "")
        )
        run.finished_at = now
        run.heartbeat_at = now
        run.save()
    logger.info("run %s finalised: %s, %s results published", run_id, run.status, published)
    return True

"""Benchmark-job writes: claim, progress, completion, failure, and finalising the run.

The lifecycle of a ``BenchmarkJob``: ``queued`` -> ``running`` (claimed by exactly one task with
a conditional update) -> ``done`` | ``failed``. The running task reports progress and a
heartbeat through its lease (``jobs.JobLease``); a job whose heartbeat stops is requeued or
failed by the sweeper (``services.sweeper``). Every write after the claim is conditional on the
lease, so a task whose job was taken away (swept, then claimed by another worker) writes
nothing.

Results are recorded with ``result_record`` (update-or-create on the unique key: a retried job
writes each value once) as each job finishes; when the last job of a run finishes, the run is
finalised: its results are published (``results_publish``) and the run says which categories
failed. The training and evaluation themselves run in ``evaluation.services.benchmarks``,
which writes nothing: every row write of a benchmark job or run is made here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from ..models import BenchmarkJob, BenchmarkRun, JobStatus, Provenance
from ..selectors.localisation import PUBLIC_GROUND_TRUTH_DATASETS
from .dispatch import benchmark_jobs_dispatch, benchmark_jobs_dispatch_quietly
from .jobs import (
    FINISHED_STATUSES,
    RUN_BENCHMARK_JOB_TASK,
    JobKind,
    JobLease,
    clip,
    error_fields,
    job_claim,
    job_progress,
)
from .localisation import localisation_record
from .results import result_record, results_publish

logger = logging.getLogger(__name__)

# Claim -------------------------------------------------------------------------------------


def benchmark_job_claim(*, job_id: int, task_id: str) -> BenchmarkJob | None:
    """Take ``job_id`` for the task ``task_id``; ``None`` when another task has it or it is finished.

    A queued job is claimed; so is a *running* job whose heartbeat is older than the timeout
    and which has attempts left: that is a task redelivered by the broker after its worker
    died. The claim is one conditional ``UPDATE``, so two tasks never both win. The winner
    holds ``BENCHMARK_JOBS.lease(job_id, task_id)``; its run moves to running, and the next
    waiting job is dispatched to take its place in the broker's line (``services.dispatch``).
    """
    now = timezone.now()
    with transaction.atomic():
        won = job_claim(
            BENCHMARK_JOBS.lease(job_id, task_id),
            claimed_status=JobStatus.RUNNING,
            message="started",
            where=~Q(run__status__in=FINISHED_STATUSES),  # a closed run's jobs stay closed
            now=now,
        )
        if not won:
            return None
        # A message that reached a worker without the dispatcher (a broker redelivery after the
        # sweeper handed the job back): the job is in flight now, so it is dispatched.
        BenchmarkJob.objects.filter(pk=job_id, dispatched_at__isnull=True).update(dispatched_at=now)
        job = BenchmarkJob.objects.select_related("run", "run__method", "category").get(pk=job_id)
        BenchmarkRun.objects.filter(pk=job.run_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=now, heartbeat_at=now
        )
    benchmark_jobs_dispatch_quietly()
    logger.info(
        "job %s (%s, %s) claimed by task %s, attempt %s",
        job.pk,
        job.run.method.key,
        job.category.key,
        task_id,
        job.attempts,
    )
    return job


def benchmark_job_unclaimed(*, job_id: int) -> bool:
    """A task found nothing to claim: make sure the job's run is finalised; ``False`` if the job is gone.

    A redelivered task of a finished job lands here; finalising is idempotent.
    """
    run_id = BenchmarkJob.objects.filter(pk=job_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    benchmark_run_finalize(run_id=run_id)
    return True


# Progress ------------------------------------------------------------------------------------


def _run_progress_update(run_id: int, message: str) -> None:
    """Recompute a run's progress: finished jobs count 1, running ones their own fraction."""
    jobs = BenchmarkJob.objects.filter(run_id=run_id)
    total = jobs.count()
    if not total:
        return
    finished = jobs.filter(status__in=FINISHED_STATUSES).count()
    partial = jobs.exclude(status__in=FINISHED_STATUSES).aggregate(s=Sum("progress"))["s"] or 0.0
    BenchmarkRun.objects.filter(pk=run_id).exclude(status__in=FINISHED_STATUSES).update(
        progress=min(1.0, (finished + partial) / total),
        progress_message=clip(f"{finished}/{total} categories finished; {message}"),
        heartbeat_at=timezone.now(),
    )


def benchmark_job_progress(lease: JobLease, *, run_id: int, category: str, progress: float, message: str) -> None:
    """Record a running job's progress (with a heartbeat) and its run's overall progress.

    Raises ``JobLostError`` when the job no longer belongs to the lease's task.
    """
    job_progress(lease, progress=progress, message=message or f"{progress:.0%}")
    _run_progress_update(run_id, f"{category}: {message or f'{progress:.0%}'}")


# Completion ----------------------------------------------------------------------------------


def result_extra(job_pk: int, output: Mapping[str, Any], environment: Mapping[str, Any]) -> dict[str, Any]:
    """What every result of one job keeps beside its value (``Result.extra``), read by the tables.

    ``schedule_complete`` (False when the wall-clock cap stopped the training before its planned
    epochs or iterations: shown, never ranked), ``pretrained`` (the backbone's flag in the full
    hyperparameters; None when the algorithm has none), ``seeds``, and ``cost``: training time,
    inference time per image, peak memory (and how it was measured), parameter counts and the
    hardware they were measured on.
    """
    timings = dict(output.get("timings") or {})
    params = output.get("params") or {}
    model = output.get("model") or {}
    return {
        "job": job_pk,
        "timings": timings,
        "seed": output.get("seed"),
        "seeds": list(output.get("seeds") or [output.get("seed")]),
        "schedule_complete": bool(timings.get("schedule_complete", not timings.get("budget_exhausted", False))),
        "pretrained": params.get("pretrained") if isinstance(params.get("pretrained"), bool) else None,
        "cost": {
            "train_seconds": timings.get("train_seconds"),
            "inference_seconds_per_image": timings.get("inference_seconds_per_image"),
            "peak_memory_mb": timings.get("peak_memory_mb"),
            "peak_memory_measure": timings.get("peak_memory_measure", ""),
            "params_total": model.get("params_total"),
            "params_trainable": model.get("params_trainable"),
            "hardware": str(environment.get("hardware") or ""),
            "device": str(environment.get("device") or ""),
        },
    }


#: Runner output keys that describe the test set image by image or anomaly by anomaly.
BLIND_HIDDEN_OUTPUT_KEYS = frozenset({"localisation"})


def ground_truth_public(category) -> bool:
    """Whether the category's ground truth may be shown (not a blind dataset)."""
    return bool(category.dataset.ground_truth_public) and category.dataset.key in PUBLIC_GROUND_TRUTH_DATASETS


def _record_results(job: BenchmarkJob, output: Mapping[str, Any]) -> int:
    run = job.run
    base = result_extra(job.pk, output, output.get("environment") or {})
    seed_metrics = output.get("seed_metrics") or {}
    localisations = output.get("localisation") or {}
    count = 0
    for variant, values in output["metrics"].items():
        for metric, value in values.items():
            extra = dict(base)
            if len(seed_metrics) > 1:  # every seed's value: the spread across seeds
                extra["seed_values"] = [float(seed_metrics[str(s)][variant][metric]) for s in base["seeds"]]
            result = result_record(
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
            public = ground_truth_public(job.category)
            if metric == "pl" and public and isinstance(localisations.get(variant), dict):  # PL explained
                localisation_record(
                    result=result,
                    document=localisations[variant],
                    predictions=str(output.get("predictions") or ""),
                    seed=output.get("seed"),
                )
            count += 1
    return count


def benchmark_job_complete(lease: JobLease, *, output: Any, error: str = "") -> str:
    """Store the runner's ``output`` for the lease's job: results + status, atomically.

    ``error`` is the caller's verdict on the output ('' when it is a usable ``vadi-run/1``
    results dict with status ``ok``; otherwise why the job failed). Without an error, every
    metric value is recorded; a value the leaderboard rejects fails the job with the reason.
    The output is kept on the job either way. Returns the job's new status, or ``"lost"`` when
    the job is no longer the lease's (nothing is written then). Finalises the run when this
    was its last job.
    """
    with transaction.atomic():
        job = (
            BenchmarkJob.objects.select_for_update()
            .select_related("run", "run__method", "category", "category__dataset")
            .filter(pk=lease.pk, status__in=BenchmarkJob.RUNNING_STATUSES, celery_task_id=lease.task_id)
            .first()
        )
        if job is None:
            return "lost"
        if isinstance(output, dict) and not ground_truth_public(job.category):
            # A blind category: what PL decided anomaly by anomaly (defect types, boxes, per image)
            # is its hidden ground truth; neither a Localisation row nor the stored output keeps it.
            output = {k: v for k, v in output.items() if k not in BLIND_HIDDEN_OUTPUT_KEYS}
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
        traceback = str(output.get("traceback") or "") if isinstance(output, dict) and error else ""
        fields = error_fields(error, detail=traceback) if error else {"error_message": "", "error_detail": ""}
        job.error_message, job.error_detail = fields["error_message"], fields["error_detail"]
        job.output = output if isinstance(output, dict) else {}
        job.timings = dict(output.get("timings") or {}) if isinstance(output, dict) else {}
        job.progress = 1.0
        job.progress_message = clip("failed" if error else "done")
        job.finished_at = now
        job.heartbeat_at = now
        job.save()
        run_id = job.run_id
    if error:
        logger.warning("job %s failed: %s", lease.pk, error.splitlines()[0] if error else "")
    _run_progress_update(run_id, f"{job.category.key} {job.status}")
    benchmark_run_finalize(run_id=run_id)
    benchmark_jobs_dispatch_quietly()
    return job.status


def _finalize_run_of(job_id: int) -> None:
    """``BENCHMARK_JOBS.on_failed``: a failed job may have been its run's last; its worker is free."""
    benchmark_job_unclaimed(job_id=job_id)
    benchmark_jobs_dispatch_quietly()


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
                error_fields(f"{len(failed)} of {len(jobs)} categories failed: {_failure_summary(failed)}")[
                    "error_message"
                ]
                if failed
                else ""
            )
        else:
            published = 0
            run.status = JobStatus.FAILED
            run.error_message = error_fields(f"every category failed: {_failure_summary(failed)}")["error_message"]
        now = timezone.now()
        run.progress = 1.0
        run.progress_message = clip(
            f"{len(done)}/{len(jobs)} categories done" + (f", {len(failed)} failed" if failed else "")
        )
        run.finished_at = now
        run.heartbeat_at = now
        run.save()
    logger.info("run %s finalised: %s, %s results published", run_id, run.status, published)
    return True


#: One (benchmark run, category) unit, trained and evaluated by ``evaluation.run_benchmark_job``.
BENCHMARK_JOBS = JobKind(
    label="benchmark job",
    model=BenchmarkJob,
    task_name=RUN_BENCHMARK_JOB_TASK,
    give_up_message="Server error: gave up after repeated temporary errors",
    on_failed=_finalize_run_of,
    dispatch=benchmark_jobs_dispatch,
)

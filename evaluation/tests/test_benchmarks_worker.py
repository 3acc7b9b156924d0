"""Re-benchmarks on REAL Celery workers (PostgreSQL + Redis): end to end, and a worker killed mid-job.

Skipped without ``CELERY_BROKER_URL`` (the embedded default has no broker); CI sets it.
"""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection
from django.utils import timezone

from evaluation.tests.test_benchmarks_support import make_catalog, make_tiny_suite, wait_for
from leaderboard.models import BenchmarkJob, BenchmarkRun, JobStatus, Result
from leaderboard.services.benchmark_runs import benchmark_runs_create
from leaderboard.services.sweeper import jobs_sweep
from tests.workers import WorkerProcess, app_on_queue, require_broker, require_worker_database

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def env(settings, tmp_path):
    """A tiny suite, catalog rows, methods, and the Celery app pointed at a queue of this test's own."""
    broker = require_broker()
    if connection.vendor != "postgresql":
        pytest.skip("worker tests share the database with a worker process: use PostgreSQL (DATABASE_URL)")
    from config.celery import app
    from leaderboard.services import method_sync_from_registry

    root = tmp_path / "synthetic"
    make_tiny_suite(root, ("woven",))
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(root)}
    method_sync_from_registry()
    make_catalog(["synthetic/woven"])
    queue = f"vadi-bench-{os.getpid()}-{time.monotonic_ns()}"
    db_url = require_worker_database()
    workers: list[WorkerProcess] = []

    def start(name: str, **extra: str) -> WorkerProcess:
        worker = WorkerProcess(
            name=f"{queue}-{name}", queue=queue, db_url=db_url, broker=broker, log_path=tmp_path / f"{name}.log",
            env={"VADI_SYNTHETIC_ROOT": str(root), "VADI_RUNS_ROOT": str(tmp_path / "runs"),
                 "DJANGO_MEDIA_ROOT": str(tmp_path / "media"), "VADI_HEARTBEAT_INTERVAL_S": "0.5", **extra},
        )  # fmt: skip
        workers.append(worker)
        worker.wait_ready(app)
        return worker

    try:
        with app_on_queue(app, queue=queue, broker=broker):
            yield start, root
    finally:
        for worker in workers:
            worker.stop()


def _finished(runs):
    fresh = list(BenchmarkRun.objects.filter(pk__in=[r.pk for r in runs]))
    return fresh if all(r.is_finished for r in fresh) else None


def test_rebenchmark_runs_end_to_end_on_a_real_worker(env):
    from algorithms.runner import run_category
    from algorithms.runspec import RunSpec

    start, root = env
    worker = start("a")
    runs = benchmark_runs_create(methods=["random", "patchcore"], suites=["tiny"], config="tiny", device="cpu")
    runs = wait_for(lambda: _finished(runs), timeout=240, what=f"the runs to finish; worker log:\n{worker.log()}")
    for run in runs:
        assert run.status == JobStatus.DONE and run.is_published, run.error_message
        job = run.jobs.get()
        assert job.status == JobStatus.DONE and job.attempts == 1 and job.celery_task_id
        recorded: dict[str, dict[str, float]] = {}
        for row in Result.objects.filter(benchmark_run=run, is_current=True):
            recorded.setdefault(row.variant, {})[row.metric] = row.value
        assert recorded == job.output["metrics"]  # exactly the runner's JSON, every map variant
        assert job.timings == job.output["timings"] and job.timings["n_test"] > 0
        assert {r.variant for r in Result.objects.filter(benchmark_run=run, is_primary_variant=True)} == {
            job.output["primary_variant"]
        }
    random_run = next(r for r in runs if r.method.key == "random")
    local = run_category(RunSpec.from_json(random_run.config["spec"]), "synthetic/woven", roots={"synthetic": root})
    assert local["metrics"] == random_run.jobs.get().output["metrics"]


def test_a_worker_killed_mid_job_is_recovered_with_exactly_one_set_of_results(env):
    from evaluation.tasks import run_benchmark_job

    start, _ = env
    doomed = start("doomed", VADI_BENCHMARK_RUNNER="evaluation.tests.test_benchmarks_support.paused_run_category")
    (run,) = benchmark_runs_create(methods=["random"], suites=["tiny"], config="tiny", device="cpu")
    job = wait_for(
        lambda: BenchmarkJob.objects.filter(run=run, status=JobStatus.RUNNING, progress_message__contains="paused")
        .first(),
        timeout=120,
        what=f"the job to be running on the doomed worker; log:\n{doomed.log()}",
    )
    first_task = job.celery_task_id
    doomed.kill()
    # Nothing heartbeats any more; the job would stay "running" forever without the sweeper.
    time.sleep(2.5)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and (timezone.now() - job.heartbeat_at).total_seconds() > 2
    survivor = start("survivor")
    report = jobs_sweep(timeout_s=2, attempts=2)
    assert report.requeued == [f"benchmark job {job.pk} (after attempt 1 of 2)"]
    (run,) = wait_for(lambda: _finished([run]), timeout=180, what=f"recovery; log:\n{survivor.log()}")
    job.refresh_from_db()
    assert run.status == JobStatus.DONE and run.is_published
    assert job.status == JobStatus.DONE and job.attempts == 2 and job.celery_task_id != first_task
    n_values = sum(len(v) for v in job.output["metrics"].values())
    assert Result.objects.filter(benchmark_run=run).count() == n_values
    assert Result.objects.filter(method=run.method, is_current=True).count() == n_values
    # Much later the broker redelivers the dead worker's unacknowledged task: it must change nothing.
    before = list(Result.objects.filter(benchmark_run=run).order_by("pk").values_list("pk", "value"))
    assert run_benchmark_job.apply(args=[job.pk], task_id=first_task).get() == "skipped"
    assert list(Result.objects.filter(benchmark_run=run).order_by("pk").values_list("pk", "value")) == before

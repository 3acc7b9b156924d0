"""Queues by kind of work on REAL workers: an upload is scored in seconds while a re-benchmark runs.

Two real Celery workers, one per queue, as deployed (``docker-compose.yml``): a scoring worker
(scoring + housekeeping queues) that cannot import PyTorch, as in the web image, and a benchmark
worker. The benchmark jobs really train and evaluate tiny categories (``timed_run_category``:
the real runner, held to a few seconds per job); the scoring is the real service. PostgreSQL and
Redis (``CELERY_BROKER_URL``); skipped without a broker.
"""

# The shared fixtures are imported from test_submissions; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import os
import time

import pytest
from django.db import connection
from django.db.models import Q

from config.queues import BENCHMARKS, HOUSEKEEPING, SCORING
from evaluation.tests.bundle_corpus import write_valid
from evaluation.tests.test_benchmarks_support import make_catalog, make_tiny_suite, wait_for
from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    create_submission,
    expected_values,
    honest_categories,
    results_of,
    spec_for,
    tiny_data_root,
    tiny_suite,
    user,
)
from leaderboard.models import BenchmarkJob, BenchmarkRun, JobStatus, Submission
from leaderboard.services.benchmark_runs import benchmark_runs_create
from tests.workers import (
    WorkerProcess,
    app_on_queues,
    queue_names,
    require_broker,
    require_worker_database,
    torch_blocked_env,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

#: Categories of the re-benchmark (the upload's suite uses woven and screw, on another root).
BENCH_NAMES = ("grid", "leather", "pill", "washer")
JOB_SECONDS = 5
AHEAD = 2


def _waiting() -> int:
    return BenchmarkJob.objects.filter(status=JobStatus.QUEUED, dispatched_at__isnull=False).count()


def _started(runs) -> int:
    return BenchmarkJob.objects.filter(run__in=runs).filter(~Q(status=JobStatus.QUEUED) | Q(attempts__gt=0)).count()


def test_an_upload_is_scored_within_30_s_while_a_rebenchmark_holds_the_benchmark_queue(
    tiny_suite, tiny_data_root, tmp_path, settings
):
    broker = require_broker()
    if connection.vendor != "postgresql":
        pytest.skip("the workers share the database with this process: use PostgreSQL (DATABASE_URL)")
    from config.celery import app
    from leaderboard.services import method_sync_from_registry

    bench_root = tmp_path / "bench-data"
    make_tiny_suite(bench_root, BENCH_NAMES)
    method_sync_from_registry()
    make_catalog([f"synthetic/{name}" for name in BENCH_NAMES], suite_key="bench4")
    make_catalog([f"synthetic/{name}" for name in BENCH_NAMES[:1]], suite_key="bench1")
    settings.MEDIA_ROOT = tmp_path / "media"  # where the scoring worker reads the uploaded archive
    settings.VADI_BENCHMARK_DISPATCH_AHEAD = AHEAD
    queues = queue_names(f"vadi-q-{os.getpid()}-{time.monotonic_ns()}")
    db_url = require_worker_database()
    common = {"DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT), "VADI_HEARTBEAT_INTERVAL_S": "0.5",
              "VADI_BENCHMARK_DISPATCH_AHEAD": str(AHEAD)}  # fmt: skip
    scoring = WorkerProcess(
        name=f"{queues[SCORING]}-w", queue=f"{queues[SCORING]},{queues[HOUSEKEEPING]}", queues=queues, pool="prefork",
        db_url=db_url, broker=broker, log_path=tmp_path / "scoring.log",
        env={**common, **torch_blocked_env(tmp_path / "no-torch"), "VADI_SYNTHETIC_ROOT": str(tiny_data_root)},
    )  # fmt: skip
    gpu = WorkerProcess(
        name=f"{queues[BENCHMARKS]}-w", queue=queues[BENCHMARKS], queues=queues, pool="prefork",
        db_url=db_url, broker=broker, log_path=tmp_path / "benchmarks.log",
        env={**common, "VADI_SYNTHETIC_ROOT": str(bench_root), "VADI_RUNS_ROOT": str(tmp_path / "runs"),
             "VADI_DEVICE": "cpu", "VADI_TEST_JOB_SECONDS": str(JOB_SECONDS),
             "VADI_BENCHMARK_RUNNER": "evaluation.tests.test_benchmarks_support.timed_run_category"},
    )  # fmt: skip
    try:
        with app_on_queues(app, queues=queues, broker=broker):
            scoring.wait_ready(app)
            gpu.wait_ready(app)
            admin = user("admin", is_staff=True)
            first = benchmark_runs_create(
                methods=["random", "patchcore"], suites=["bench4"], config="tiny", requested_by=admin
            )
            assert _waiting() == AHEAD  # 8 jobs: the first two in the broker, six in the database
            wait_for(lambda: _started(first) >= 1, timeout=120, what=f"a benchmark job to start:\n{gpu.log()}")

            # An upload arrives while the re-benchmark holds the benchmark queue.
            categories = honest_categories(tiny_data_root, seed=5)
            bundle = write_valid(tmp_path / "upload.zip", spec_for(tiny_data_root), categories)
            arrived = time.monotonic()
            submission = create_submission(user("alice"), bundle)
            scored = wait_for(
                lambda: Submission.objects.filter(pk=submission.pk, status=JobStatus.DONE).first()
                or Submission.objects.filter(pk=submission.pk, status=JobStatus.FAILED).first(),
                timeout=60, what=f"the upload to be scored:\n{scoring.log()}",
            )  # fmt: skip
            waited = time.monotonic() - arrived
            assert scored.status == JobStatus.DONE, scored.error_message
            assert waited <= 30 and (scored.finished_at - scored.created_at).total_seconds() <= 30, waited
            assert results_of(scored) == expected_values(tiny_data_root, categories)  # real scoring
            unfinished = BenchmarkJob.objects.filter(run__in=first).exclude(status__in=BenchmarkJob.FINISHED_STATUSES)
            # Behind one FIFO queue, the upload would have waited for all of these (> 30 s of work).
            assert unfinished.count() * JOB_SECONDS > 30, "the upload was not scored *during* the re-benchmark"

            # Another admin's small run starts before the first request's remaining jobs.
            second_admin = user("bob", is_staff=True)
            (second,) = benchmark_runs_create(
                methods=["random"], suites=["bench1"], config="tiny", requested_by=second_admin
            )
            started_when_asked = _started(first)
            started_before = None
            peak_waiting = 0
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                peak_waiting = max(peak_waiting, _waiting())
                if started_before is None and _started([second]):
                    started_before = _started(first)
                runs = list(BenchmarkRun.objects.filter(pk__in=[r.pk for r in [*first, second]]))
                if all(run.is_finished for run in runs):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"the runs did not finish:\n{gpu.log()[-5000:]}")
    finally:
        scoring.stop()
        gpu.stop()
    assert peak_waiting <= AHEAD  # the broker's line never grew: the rest waited in the database
    # At most AHEAD jobs of the first request were in line before the second run's first job.
    assert started_before is not None and started_before <= started_when_asked + AHEAD, (
        started_when_asked,
        started_before,
    )
    for run in BenchmarkRun.objects.filter(pk__in=[r.pk for r in [*first, second]]):
        assert run.status == JobStatus.DONE and run.is_published, run.error_message
        assert all(job.attempts == 1 for job in run.jobs.all())

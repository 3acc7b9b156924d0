"""Evaluation only computes: every row a job writes is written by the leaderboard's code.

Each test runs one job path end to end in this process (eager Celery) while every ``INSERT``,
``UPDATE`` and ``DELETE`` is recorded with the innermost frame of our own code that issued it;
each of those frames must lie in ``leaderboard/``. (The import-linter contract
``rows-written-by-leaderboard`` keeps ``evaluation`` from importing the models; this checks
what a contract cannot: that no model instance handed to evaluation is saved there.)
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from evaluation.tests.bundle_corpus import write_valid
from evaluation.tests.test_benchmarks import catalog, tiny_root  # noqa: F401  (fixtures)
from evaluation.tests.test_submissions import (  # noqa: F401  (tiny_data_root, tiny_suite: fixtures)
    create_submission,
    honest_categories,
    spec_for,
    stored_submission,
    tiny_data_root,
    tiny_suite,
    user,
)
from leaderboard.models import BenchmarkJob, BenchmarkRun, JobStatus, Submission
from leaderboard.services.benchmark_runs import benchmark_runs_create
from leaderboard.services.sweeper import jobs_sweep

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("INSERT", "UPDATE", "DELETE")


def _writer(stack: traceback.StackSummary) -> str:
    """The innermost frame of the project's own code (not a library, not a test) in ``stack``."""
    for frame in reversed(stack):
        path = Path(frame.filename)
        if not path.is_relative_to(ROOT):
            continue
        parts = path.relative_to(ROOT).parts
        if parts[0] == ".venv" or "site-packages" in parts or "tests" in parts:
            continue
        return f"{'/'.join(parts)}:{frame.lineno} ({frame.name})"
    return "<a test or a library, not the project>"


@contextmanager
def row_writes() -> Iterator[list[tuple[str, str]]]:
    """Record ``(SQL verb, writer)`` for every write this connection sends while the block runs."""
    records: list[tuple[str, str]] = []

    def wrapper(execute, sql, params, many, context):
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb in WRITES:
            records.append((verb, _writer(traceback.extract_stack())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield records


def assert_only_leaderboard_writes(records: list[tuple[str, str]]) -> None:
    assert records, "the job path wrote nothing: the recorder saw no write"
    outside = sorted({writer for _, writer in records if not writer.startswith("leaderboard/")})
    assert not outside, f"rows written outside leaderboard/: {outside}"


def test_a_scored_submission_is_written_by_the_leaderboard(tiny_suite, tiny_data_root, tmp_path,  # noqa: F811
                                                           django_capture_on_commit_callbacks):  # fmt: skip
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), honest_categories(tiny_data_root))
    owner = user()
    with row_writes() as records, django_capture_on_commit_callbacks(execute=True):
        submission = create_submission(owner, path)
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE, submission.error_message
    assert {"INSERT", "UPDATE"} <= {verb for verb, _ in records}
    assert_only_leaderboard_writes(records)


def test_a_failed_submission_is_written_by_the_leaderboard(tiny_suite, tiny_data_root, tmp_path):  # noqa: F811
    from evaluation.services.submissions import submission_score

    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root, method="Another method"))
    submission = stored_submission(user(), path, method="My method")
    with row_writes() as records:
        assert submission_score(submission_id=submission.pk, task_id="task-0") == "failed"
    assert Submission.objects.get(pk=submission.pk).status == JobStatus.FAILED
    assert_only_leaderboard_writes(records)


def always_down(spec, category, **kwargs):
    """A runner whose database is down for good (a transient error, every time)."""
    raise OperationalError("server closed the connection unexpectedly")


@pytest.mark.parametrize("runner", [None, f"{__name__}.always_down"], ids=["done", "retried-then-given-up"])
def test_a_benchmark_run_is_written_by_the_leaderboard(catalog, settings, runner,  # noqa: F811
                                                       django_capture_on_commit_callbacks):  # fmt: skip
    if runner:
        settings.VADI_BENCHMARK_RUNNER = runner
    with row_writes() as records, django_capture_on_commit_callbacks(execute=True):
        (run,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    run.refresh_from_db()
    job = run.jobs.get()
    if runner:  # claimed, released before each retry, failed after the last one; the run closed
        assert job.status == JobStatus.FAILED and job.error_message.startswith("Server error: gave up after repeated")
        assert "OperationalError" in job.error_detail and "OperationalError" not in job.error_message
        assert run.status == JobStatus.FAILED
    else:
        assert job.status == JobStatus.DONE and run.status == JobStatus.DONE and run.is_published
    assert_only_leaderboard_writes(records)


def _lost(run: BenchmarkRun, *, attempts: int) -> BenchmarkJob:
    """What a dead worker leaves behind: the job running under its task id, the heartbeat stopped."""
    job = run.jobs.get()
    silent_since = timezone.now() - timedelta(hours=1)
    BenchmarkJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, attempts=attempts, celery_task_id="dead", heartbeat_at=silent_since
    )
    BenchmarkRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING)
    return job


def test_the_sweeper_is_the_leaderboard(catalog, django_capture_on_commit_callbacks):  # noqa: F811
    (requeued,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    (failed,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    first, second = _lost(requeued, attempts=1), _lost(failed, attempts=2)
    with row_writes() as records, django_capture_on_commit_callbacks(execute=True):
        report = jobs_sweep(timeout_s=120, attempts=2)  # the requeued job's fresh task runs on commit
    assert report.requeued == [f"benchmark job {first.pk} (after attempt 1 of 2)"]
    assert report.failed == [f"benchmark job {second.pk} (attempt 2 of 2)"]
    requeued.refresh_from_db()
    failed.refresh_from_db()
    assert requeued.status == JobStatus.DONE and failed.status == JobStatus.FAILED
    assert_only_leaderboard_writes(records)

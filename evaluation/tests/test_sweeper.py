"""The stale-job sweeper: a lost worker's job is requeued once per allowed attempt, then failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from evaluation.tests.test_benchmarks_support import make_catalog, make_tiny_suite
from leaderboard.models import BenchmarkJob, BenchmarkRun, JobStatus, Result, Submission
from leaderboard.services.benchmark_runs import benchmark_runs_create
from leaderboard.services.sweeper import jobs_sweep


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_tiny_suite(root, ("woven",))
    return root


@pytest.fixture
def queued_run(db, settings, tiny_root):
    """A run of the random baseline on one category, created but not enqueued (on_commit not run)."""
    from leaderboard.services import method_sync_from_registry

    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tiny_root)}
    method_sync_from_registry()
    make_catalog(["synthetic/woven"])
    (run,) = benchmark_runs_create(methods=["random"], suites=["tiny"], config="tiny")
    return run


def _lose_worker(job: BenchmarkJob, *, attempts: int, silent_s: float = 600) -> None:
    """What a dead worker leaves behind: RUNNING, its task id, a heartbeat that stopped."""
    BenchmarkJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        attempts=attempts,
        celery_task_id="dead-task",
        started_at=timezone.now() - timedelta(seconds=silent_s + 5),
        heartbeat_at=timezone.now() - timedelta(seconds=silent_s),
    )
    BenchmarkRun.objects.filter(pk=job.run_id).update(status=JobStatus.RUNNING)


def test_a_lost_job_with_attempts_left_is_requeued_and_then_runs(queued_run, django_capture_on_commit_callbacks):
    job = queued_run.jobs.get()
    _lose_worker(job, attempts=1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = jobs_sweep(timeout_s=120, attempts=2)
    assert report.requeued == [f"benchmark job {job.pk} (after attempt 1 of 2)"] and report.failed == []
    # Handed back to the dispatcher, which sends it again in the same sweep under a fresh task id.
    assert report.dispatched == [f"benchmark job {job.pk}"] and report.resent == []
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.celery_task_id not in ("", "dead-task")
    assert job.dispatched_at is not None and "worker lost" in job.progress_message
    assert len(callbacks) == 1  # one fresh task, enqueued after the commit
    callbacks[0]()
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.attempts == 2  # the requeued task ran (eagerly) and finished
    queued_run.refresh_from_db()
    assert queued_run.status == JobStatus.DONE and queued_run.is_published
    n_values = sum(len(v) for v in job.output["metrics"].values())
    assert Result.objects.filter(benchmark_run=queued_run).count() == n_values


def test_a_lost_job_without_attempts_left_fails_with_worker_lost(queued_run):
    job = queued_run.jobs.get()
    _lose_worker(job, attempts=2)
    report = jobs_sweep(timeout_s=120, attempts=2)
    assert report.failed == [f"benchmark job {job.pk} (attempt 2 of 2)"] and report.requeued == []
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.finished_at is not None
    assert job.error_message == "worker lost: no heartbeat for more than 120 s on attempt 2 of 2; giving up"
    queued_run.refresh_from_db()
    assert queued_run.status == JobStatus.FAILED
    assert queued_run.error_message.startswith("every category failed: synthetic/woven: worker lost")
    assert not Result.objects.exists()
    assert not jobs_sweep(timeout_s=120, attempts=2)  # nothing left to do


def test_live_and_queued_jobs_are_left_alone(queued_run):
    job = queued_run.jobs.get()
    assert not jobs_sweep(timeout_s=120)  # queued: the broker has its task
    _lose_worker(job, attempts=1, silent_s=30)  # heartbeat 30 s old: still alive for a 120 s timeout
    assert not jobs_sweep(timeout_s=120)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.celery_task_id == "dead-task"


def test_settings_give_the_defaults(queued_run, settings):
    job = queued_run.jobs.get()
    settings.VADI_HEARTBEAT_TIMEOUT_S = 5
    settings.VADI_MAX_ATTEMPTS = 1
    _lose_worker(job, attempts=1, silent_s=10)
    report = jobs_sweep()
    assert report.failed == [f"benchmark job {job.pk} (attempt 1 of 1)"]
    job.refresh_from_db()
    assert "no heartbeat for more than 5 s on attempt 1 of 1" in job.error_message
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        jobs_sweep(timeout_s=0)


def test_stale_submissions_are_swept_by_the_same_mechanism(db, django_user_model, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile

    from leaderboard.models import Method

    suite, _ = make_catalog(["synthetic/woven"])
    user = django_user_model.objects.create_user("alice", password="x")
    method = Method.objects.create(key="mine", name="Mine")
    old = timezone.now() - timedelta(minutes=30)
    subs = []
    for attempts in (1, 2):
        sub = Submission(owner=user, method=method, suite=suite)
        sub.archive.save(f"s{attempts}.zip", ContentFile(b"not a zip"), save=False)
        sub.save()
        Submission.objects.filter(pk=sub.pk).update(
            status=JobStatus.SCORING, attempts=attempts, heartbeat_at=old, celery_task_id="dead"
        )
        subs.append(sub)
    with django_capture_on_commit_callbacks(execute=True):
        report = jobs_sweep(timeout_s=120, attempts=2)
    assert report.requeued == [f"submission {subs[0].pk} (after attempt 1 of 2)"]
    assert report.failed == [f"submission {subs[1].pk} (attempt 2 of 2)"]
    first, second = (Submission.objects.get(pk=s.pk) for s in subs)
    # The requeued one ran again (eagerly) and failed on its own merits: a corrupt archive.
    assert first.attempts == 2 and first.status == JobStatus.FAILED and "worker lost" not in first.error_message
    assert second.status == JobStatus.FAILED and second.error_message.startswith("worker lost")


def test_sweep_jobs_command_reports(queued_run, capsys):
    call_command("sweep_jobs")
    assert "no stale jobs" in capsys.readouterr().out
    _lose_worker(queued_run.jobs.get(), attempts=2)
    call_command("sweep_jobs", "--timeout", "60")
    assert f"failed benchmark job {queued_run.jobs.get().pk} (attempt 2 of 2): worker lost" in capsys.readouterr().out

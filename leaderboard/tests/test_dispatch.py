"""Fair dispatch of benchmark jobs (services.dispatch): a bounded line in the broker, fair across users and runs.

The messages are captured, never sent (``django_capture_on_commit_callbacks(execute=False)``), and
the Celery app is switched out of eager mode where the bound applies. The end-to-end behaviour on
real workers is ``evaluation/tests/test_queues_worker.py``.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from leaderboard.models import BenchmarkJob, JobStatus
from leaderboard.services.dispatch import DISPATCHED_MESSAGE, HeldJob, benchmark_jobs_dispatch, fair_order
from leaderboard.services.sweeper import jobs_sweep
from leaderboard.tasknames import RUN_BENCHMARK_JOB_TASK

from .factories import BenchmarkRunFactory, CategoryFactory, DatasetFactory, MethodFactory, UserFactory

T0 = timezone.now() - timedelta(days=1)


@pytest.fixture
def not_eager():
    """The Celery app as with a broker (the bound applies); messages are still only captured."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield app
    finally:
        app.conf.task_always_eager = previous


@pytest.fixture
def categories(db):
    dataset = DatasetFactory(key="mvtec")
    return [CategoryFactory(dataset=dataset, name=f"c{i:02d}") for i in range(8)]


def make_run(categories, *, n: int, user=None, created_at=None, status=JobStatus.QUEUED):
    """A run with ``n`` held jobs (queued, never dispatched), as ``benchmark_runs_create`` leaves them."""
    run = BenchmarkRunFactory(method=MethodFactory(), status=status, progress=0.0, requested_by=user)
    if created_at is not None:
        type(run).objects.filter(pk=run.pk).update(created_at=created_at)
    BenchmarkJob.objects.bulk_create(
        [BenchmarkJob(run=run, category=c, progress_message="queued") for c in categories[:n]]
    )
    return run


def held(pk, run_id, user_id, minutes, key):
    created = T0 + timedelta(minutes=minutes)
    return HeldJob(pk=pk, run_id=run_id, user_id=user_id, run_created_at=created, category_key=key)


def dispatched(run) -> list[str]:
    return list(
        run.jobs.filter(dispatched_at__isnull=False).order_by("category__key").values_list("category__key", flat=True)
    )


def claim(job: BenchmarkJob, *, at=None) -> None:
    """What a worker's claim leaves: running, started (at ``at``)."""
    at = at or timezone.now()
    BenchmarkJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=at, heartbeat_at=at)


def sent_tasks(callbacks) -> int:
    return len(callbacks)


# The order (a pure function) ------------------------------------------------------------------


def test_fair_order_alternates_users_then_runs_then_categories():
    big = [held(i, 1, 10, 0, f"mvtec/c{i:02d}") for i in range(6)]  # user 10, an old run of 6 jobs
    other_run = [held(100 + i, 2, 10, 5, f"mvtec/c{i:02d}") for i in range(2)]  # user 10 again, newer
    small = [held(200 + i, 3, 20, 9, f"visa/c{i:02d}") for i in range(2)]  # user 20, newest
    order = fair_order(big + other_run + small)
    assert [(j.run_id, j.category_key) for j in order[:6]] == [
        (1, "mvtec/c00"),  # oldest run of the two users (tie on load 0)
        (3, "visa/c00"),  # user 20 has nothing in flight, user 10 has one now
        (2, "mvtec/c00"),  # user 10 again; its run 2 has nothing in flight, run 1 has one
        (3, "visa/c01"),
        (1, "mvtec/c01"),
        (2, "mvtec/c01"),
    ]
    assert len(order) == 10 and sorted(j.pk for j in order) == sorted(j.pk for j in big + other_run + small)
    # Within a run, categories go in key order whatever order the rows came in.
    assert [j.category_key for j in fair_order(list(reversed(big)))] == [f"mvtec/c{i:02d}" for i in range(6)]


def test_fair_order_counts_what_is_already_in_flight_and_stops_at_the_limit():
    big = [held(i, 1, 10, 0, f"k{i}") for i in range(5)]
    late = [held(50 + i, 2, 20, 60, f"k{i}") for i in range(5)]
    # User 10 already has 3 jobs dispatched and unfinished: user 20's newer run goes first, three times.
    order = fair_order(big + late, run_load={1: 3}, user_load={10: 3}, limit=4)
    assert [j.run_id for j in order] == [2, 2, 2, 1]
    assert fair_order(big, limit=0) == []


# Dispatching -----------------------------------------------------------------------------------


def test_at_most_ahead_jobs_wait_in_the_broker_and_each_claim_sends_the_next(
    not_eager, categories, django_capture_on_commit_callbacks
):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    big = make_run(categories, n=8, user=alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = benchmark_jobs_dispatch(ahead=2)
    assert len(first.dispatched) == 2 and sent_tasks(callbacks) == 1  # one send (a group of two) on commit
    assert dispatched(big) == ["mvtec/c00", "mvtec/c01"]
    job = big.jobs.get(category__key="mvtec/c00")
    assert job.celery_task_id and job.progress_message == DISPATCHED_MESSAGE

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert not benchmark_jobs_dispatch(ahead=2)  # idempotent: the line is full, nothing is sent
    assert callbacks == []

    # Bob asks for a small run while Alice's big one holds the GPUs: his first job is next in line.
    small = make_run(categories, n=2, user=bob, created_at=timezone.now())
    claim(job)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        after_claim = benchmark_jobs_dispatch(ahead=2)
    assert [BenchmarkJob.objects.get(pk=pk).run_id for pk in after_claim.dispatched] == [small.pk]
    assert len(callbacks) == 1
    claim(big.jobs.get(category__key="mvtec/c01"))
    benchmark_jobs_dispatch(ahead=2)
    # Alice has 2 in flight and 1 waiting, Bob 1 waiting: Bob's second job goes first.
    assert dispatched(small) == ["mvtec/c00", "mvtec/c01"] and len(dispatched(big)) == 2


def test_a_claim_dispatches_the_next_job(not_eager, settings, categories, django_capture_on_commit_callbacks):
    from leaderboard.services.benchmark_jobs import benchmark_job_claim

    settings.VADI_BENCHMARK_DISPATCH_AHEAD = 1
    run = make_run(categories, n=3)
    with django_capture_on_commit_callbacks(execute=False):
        benchmark_jobs_dispatch()
        (first,) = run.jobs.filter(dispatched_at__isnull=False)
        claimed = benchmark_job_claim(job_id=first.pk, task_id=first.celery_task_id)
    assert claimed is not None and claimed.status == JobStatus.RUNNING
    assert dispatched(run) == ["mvtec/c00", "mvtec/c01"]


def test_a_message_that_reaches_a_worker_without_the_dispatcher_marks_its_job_dispatched(
    not_eager, categories, django_capture_on_commit_callbacks
):
    from leaderboard.services.benchmark_jobs import benchmark_job_claim

    run = make_run(categories, n=1)
    job = run.jobs.get()
    with django_capture_on_commit_callbacks(execute=False):
        assert benchmark_job_claim(job_id=job.pk, task_id="redelivered") is not None
    job.refresh_from_db()
    assert job.dispatched_at is not None and job.status == JobStatus.RUNNING


def test_without_a_broker_every_held_job_is_sent_at_once(categories, django_capture_on_commit_callbacks):
    run = make_run(categories, n=5)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = benchmark_jobs_dispatch()  # the test settings run tasks eagerly: no line to protect
    assert len(report.dispatched) == 5 and len(callbacks) == 1
    assert len(dispatched(run)) == 5


def test_jobs_of_finished_runs_are_never_sent(not_eager, categories, django_capture_on_commit_callbacks):
    make_run(categories, n=3, status=JobStatus.FAILED)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert not benchmark_jobs_dispatch(ahead=5)
    assert callbacks == []


def test_ahead_must_be_positive(not_eager, settings, categories):
    settings.VADI_BENCHMARK_DISPATCH_AHEAD = 0
    with pytest.raises(ValueError, match="VADI_BENCHMARK_DISPATCH_AHEAD must be at least 1, got 0"):
        benchmark_jobs_dispatch()


# Lost messages -----------------------------------------------------------------------------


def test_a_job_skipped_over_by_the_fifo_line_is_sent_again_under_its_task_id(
    not_eager, settings, categories, django_capture_on_commit_callbacks
):
    settings.VADI_BENCHMARK_RESEND_GRACE_S = 600
    run = make_run(categories, n=3)
    t = timezone.now() - timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=False):
        benchmark_jobs_dispatch(ahead=1, now=t)  # c00's message will be "lost"
        claim(run.jobs.get(category__key="mvtec/c00"), at=t + timedelta(seconds=1))
        benchmark_jobs_dispatch(ahead=1, now=t + timedelta(seconds=2))  # c01
    lost = run.jobs.get(category__key="mvtec/c01")
    # c02 is dispatched after c01 and claimed: c01 should have been taken first (FIFO).
    c02 = run.jobs.get(category__key="mvtec/c02")
    BenchmarkJob.objects.filter(pk=c02.pk).update(
        dispatched_at=t + timedelta(seconds=3), celery_task_id="t-c02", status=JobStatus.RUNNING,
        started_at=t + timedelta(seconds=4),
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        early = benchmark_jobs_dispatch(ahead=1, now=t + timedelta(seconds=4 + 599))
    assert early.resent == [] and callbacks == []  # within the grace: a retry's countdown may still be running
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = benchmark_jobs_dispatch(ahead=1, now=t + timedelta(seconds=4 + 601))
    assert report.resent == [lost.pk] and report.dispatched == [] and len(callbacks) == 1
    again = BenchmarkJob.objects.get(pk=lost.pk)
    assert again.celery_task_id == lost.celery_task_id  # a duplicate of a message that was not lost is skipped
    assert again.dispatched_at == t + timedelta(seconds=605) and again.status == JobStatus.QUEUED
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert not benchmark_jobs_dispatch(ahead=1, now=t + timedelta(seconds=606))  # not resent twice
    assert callbacks == []


def test_a_job_that_waited_too_long_is_sent_again(not_eager, settings, categories, django_capture_on_commit_callbacks):
    settings.VADI_BENCHMARK_RESEND_AFTER_S = 3600
    run = make_run(categories, n=1)
    t = timezone.now() - timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=False):
        benchmark_jobs_dispatch(ahead=1, now=t)
        assert not benchmark_jobs_dispatch(ahead=1, now=t + timedelta(seconds=3599))
        report = benchmark_jobs_dispatch(ahead=1, now=t + timedelta(seconds=3601))
    assert report.resent == [run.jobs.get().pk]


def test_every_sweep_dispatches_and_resends(not_eager, settings, categories, django_capture_on_commit_callbacks):
    settings.VADI_BENCHMARK_DISPATCH_AHEAD = 1
    settings.VADI_BENCHMARK_RESEND_AFTER_S = 60
    run = make_run(categories, n=2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = jobs_sweep()
    first = run.jobs.get(category__key="mvtec/c00")
    assert report.dispatched == [f"benchmark job {first.pk}"] and len(callbacks) == 1
    BenchmarkJob.objects.filter(pk=first.pk).update(dispatched_at=timezone.now() - timedelta(seconds=61))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = jobs_sweep()
    assert report.resent == [f"benchmark job {first.pk}"] and report.dispatched == []
    assert report.as_dict()["resent"] == [f"benchmark job {first.pk}"]


def test_the_message_carries_the_task_name_and_the_job_ids(not_eager, categories, monkeypatch,
                                                          django_capture_on_commit_callbacks):  # fmt: skip
    """What is sent: the benchmark task by name, one per job, under the task id stored on the job."""
    from leaderboard.services import dispatch

    run = make_run(categories, n=2)
    sent = []
    monkeypatch.setattr(dispatch, "job_enqueue", lambda name, pks, task_ids: sent.append((name, pks, task_ids)))
    benchmark_jobs_dispatch(ahead=2)
    ((name, pks, task_ids),) = sent
    assert name == RUN_BENCHMARK_JOB_TASK
    assert dict(zip(pks, task_ids)) == {job.pk: job.celery_task_id for job in run.jobs.all()}


# Concurrency (PostgreSQL's advisory lock) ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_never_overfill_the_line(not_eager, categories, monkeypatch):
    """B counts the line, then A dispatches and commits, then B picks: B must not add a second batch.

    Without serialisation B would count an empty line before A's commit and pick other jobs
    after it (read committed), sending ``2 x ahead``. The advisory lock makes A wait for B.
    """
    if connection.vendor != "postgresql":
        pytest.skip("concurrent dispatchers are serialised by a PostgreSQL advisory lock; SQLite serialises writers")
    from leaderboard.services import dispatch as module

    runs = [make_run(categories, n=8) for _ in range(3)]
    monkeypatch.setattr(module, "job_enqueue", lambda *args, **kwargs: None)  # the rows are what is checked
    b_counted, a_done = threading.Event(), threading.Event()
    original_held = module._held

    def held_after_a_commits():
        if threading.current_thread().name == "B":
            b_counted.set()
            a_done.wait(timeout=3)  # with the lock A cannot finish before B commits: B goes on after 3 s
        return original_held()

    monkeypatch.setattr(module, "_held", held_after_a_commits)
    errors = []

    def run_b() -> None:
        try:
            benchmark_jobs_dispatch(ahead=3)
        except Exception as exc:  # surfaced below
            errors.append(repr(exc))
        finally:
            connections.close_all()

    def run_a() -> None:
        try:
            assert b_counted.wait(timeout=30)
            benchmark_jobs_dispatch(ahead=3)
            a_done.set()
        except Exception as exc:  # surfaced below
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run_b, name="B"), threading.Thread(target=run_a, name="A")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(len(dispatched(run)) for run in runs) == 3

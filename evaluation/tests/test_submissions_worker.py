"""Submissions through a real Celery worker (Redis + the test database), and quotas under a race.

Worker tests run when ``CELERY_BROKER_URL`` is set (CI sets it) and skip otherwise. They start
their own worker process, because it must find this module's generated ground truth through
``VADI_SYNTHETIC_ROOT`` at start-up. The quota race needs PostgreSQL's row locks.
"""

# The shared fixtures are imported from test_submissions; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import os
import re
import threading
import time
from types import SimpleNamespace

import pytest

from evaluation.tests.bundle_corpus import bad_bundle, write_valid
from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    create_submission,
    expected_values,
    honest_categories,
    results_of,
    spec_for,
    stored_submission,
    tiny_data_root,
    tiny_suite,
    user,
)
from leaderboard.models import JobStatus, Result, Submission
from tests.workers import WorkerProcess, app_on_queue, require_broker, require_worker_database


def _wait_finished(pk: int, *, timeout: float = 120.0) -> Submission:
    deadline = time.monotonic() + timeout
    while True:
        submission = Submission.objects.get(pk=pk)
        if submission.is_finished:
            return submission
        if time.monotonic() > deadline:
            raise AssertionError(f"submission {pk} still {submission.status} after {timeout:.0f} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def submissions_worker_process(django_db_setup, django_db_blocker, tiny_data_root, tmp_path_factory):
    """A real ``celery worker`` on its own queue whose dataset root is the generated ground truth."""
    broker = require_broker()
    from config.celery import app

    with django_db_blocker.unblock():
        db_url = require_worker_database()
    queue = f"vadi-submissions-{os.getpid()}"
    media = tmp_path_factory.mktemp("submissions-media")
    worker = WorkerProcess(
        name=queue,
        queue=queue,
        db_url=db_url,
        broker=broker,
        log_path=tmp_path_factory.mktemp("submissions-worker") / "worker.log",
        env={"VADI_SYNTHETIC_ROOT": str(tiny_data_root), "DJANGO_MEDIA_ROOT": str(media)},
    )
    try:
        with app_on_queue(app, queue=queue, broker=broker):
            worker.wait_ready(app)
        yield SimpleNamespace(log=worker.log_path, media=media, queue=queue, broker=broker)
    finally:
        worker.stop()


@pytest.fixture
def submissions_worker(submissions_worker_process):
    """The module's worker, with the Celery app sending tasks to it for this test only.

    Other tests of the module keep eager tasks, so that no upload of theirs reaches a worker
    that cannot see their media root.
    """
    from config.celery import app

    with app_on_queue(app, queue=submissions_worker_process.queue, broker=submissions_worker_process.broker):
        yield submissions_worker_process


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_valid_bundle_is_scored_end_to_end_by_a_real_worker(submissions_worker, tiny_suite, tiny_data_root, tmp_path,
                                                            settings):  # fmt: skip
    settings.MEDIA_ROOT = submissions_worker.media  # where the worker reads archives
    categories = honest_categories(tiny_data_root, seed=11)
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), categories)
    submission = create_submission(user(), path)  # autocommit: the task is sent to the broker now
    done = _wait_finished(submission.pk)
    assert done.status == JobStatus.DONE, f"{done.error_message}\n{submissions_worker.log.read_text()[-3000:]}"
    assert done.attempts == 1 and done.progress == 1.0
    assert done.started_at <= done.finished_at and done.heartbeat_at is not None
    assert results_of(done) == expected_values(tiny_data_root, categories)
    assert Result.objects.filter(submission=done, is_current=True).count() == 8
    assert re.search(rf"score_submission\[{done.celery_task_id}\] succeeded", submissions_worker.log.read_text())


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["zip_bomb", "pickled_object_array", "path_traversal", "nan_in_maps"])
def test_bad_bundles_fail_on_the_worker_and_write_nothing(name, submissions_worker, tiny_suite, tiny_data_root,
                                                          tmp_path, settings):  # fmt: skip
    settings.MEDIA_ROOT = submissions_worker.media  # where the worker reads archives
    from leaderboard.services.submissions import submission_send

    case = bad_bundle(name)
    path = case.build(tmp_path / f"{name}.zip", spec_for(tiny_data_root))
    submission = stored_submission(user(), path)  # as if it had passed the upload-time checks
    assert submission_send(submission.pk)
    failed = _wait_finished(submission.pk)
    assert failed.status == JobStatus.FAILED
    assert failed.error_message.startswith("Invalid bundle: ")
    assert re.search(case.message, failed.error_message), failed.error_message
    assert not Result.objects.filter(submission=failed).exists()
    assert failed.archive.name == "" and not list(submissions_worker.media.rglob(f"*{failed.uuid}*"))  # deleted


@pytest.mark.django_db(transaction=True)
def test_daily_quota_holds_when_uploads_race(tiny_suite, tiny_data_root, tmp_path, settings):
    """Four threads upload at once with a quota of one per day: exactly one gets through."""
    from django.db import connection, connections

    from leaderboard.services.submissions import QuotaExceeded, method_for_user

    if connection.vendor != "postgresql":
        pytest.skip("the race needs PostgreSQL's row locks (SELECT ... FOR UPDATE); SQLite serialises writers")
    settings.VADI_SUBMISSIONS_PER_DAY = 1
    settings.VADI_SUBMISSIONS_CONCURRENT = 10
    owner = user()
    method_for_user(owner=owner, name="Corpus method")  # exists already: the race is on the quota alone
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root))
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def upload() -> None:
        try:
            barrier.wait(timeout=30)
            create_submission(owner, path)
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("quota")
        except Exception as exc:  # surfaced by the assertion below
            outcomes.append(f"error: {exc!r}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["created", "quota", "quota", "quota"], outcomes
    assert Submission.objects.filter(owner=owner).count() == 1

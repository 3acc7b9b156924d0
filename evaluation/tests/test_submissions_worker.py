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
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from evaluation.tests.bundle_corpus import bad_bundle, write_valid
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
from leaderboard.models import JobStatus, Result, Submission

ROOT = Path(__file__).resolve().parents[2]


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
def submissions_worker(django_db_setup, django_db_blocker, tiny_data_root, tmp_path_factory):
    """A real ``celery worker`` on its own queue whose dataset root is the generated ground truth."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker:
        pytest.skip("needs a broker: set CELERY_BROKER_URL (CI does) to run worker-backed tests")
    from django.db import connection

    from config.celery import app

    with django_db_blocker.unblock():
        params = connection.settings_dict
        if connection.vendor == "sqlite":
            if params["NAME"] in ("", ":memory:") or "mode=memory" in str(params["NAME"]):
                pytest.skip("the worker needs a database on disk or a server, not in-memory SQLite")
            db_url = f"sqlite:///{params['NAME']}"
        else:
            password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
            db_url = (
                f"postgres://{params.get('USER') or ''}{password}@{params.get('HOST') or '127.0.0.1'}:"
                f"{params.get('PORT') or 5432}/{params['NAME']}"
            )
    queue = f"vadi-submissions-{os.getpid()}"
    name = f"{queue}@{os.uname().nodename}"
    log_path = tmp_path_factory.mktemp("submissions-worker") / "worker.log"
    media = tmp_path_factory.mktemp("submissions-media")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "VADI_SYNTHETIC_ROOT": str(tiny_data_root),
        "DJANGO_MEDIA_ROOT": str(media),
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO", "-Q", queue,
             "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        previous = (app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend)
        app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend = False, queue, broker
        try:
            deadline = time.monotonic() + 120
            while not app.control.ping(destination=[name], timeout=1.0):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"celery worker did not start:\n{log_path.read_text()}")
            yield SimpleNamespace(log=log_path, media=media)
        finally:
            app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend = previous
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


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
    case = bad_bundle(name)
    path = case.build(tmp_path / f"{name}.zip", spec_for(tiny_data_root))
    submission = create_submission(user(), path)
    failed = _wait_finished(submission.pk)
    assert failed.status == JobStatus.FAILED
    assert failed.error_message.startswith("Invalid bundle: ")
    assert re.search(case.message, failed.error_message), failed.error_message
    assert not Result.objects.filter(submission=failed).exists()


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

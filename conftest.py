"""Shared pytest fixtures.

``celery_worker`` starts a real Celery worker process on the configured broker
(``CELERY_BROKER_URL``) against the test database, for tests marked ``worker``. Without a
broker those tests are skipped with a reason (the embedded default has no broker); CI sets one.
"""

from __future__ import annotations

import os

import pytest

from tests.workers import WorkerProcess, app_on_queue, require_broker, require_worker_database


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes uploads and run outputs under its own temporary directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VADI_RUNS_ROOT = tmp_path / "runs"


@pytest.fixture(scope="session")
def _celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """One real ``celery worker`` subprocess for the session, using the test database."""
    broker = require_broker()
    from config.celery import app

    with django_db_blocker.unblock():
        db_url = require_worker_database()
    queue = f"vadi-test-{os.getpid()}"
    worker = WorkerProcess(
        name=queue,
        queue=queue,
        db_url=db_url,
        broker=broker,
        log_path=tmp_path_factory.mktemp("worker") / "worker.log",
        env={"DJANGO_MEDIA_ROOT": str(tmp_path_factory.mktemp("worker-media"))},
    )
    try:
        with app_on_queue(app, queue=queue, broker=broker):
            worker.wait_ready(app)
        yield worker, queue, broker
    finally:
        worker.stop()


@pytest.fixture
def celery_worker(_celery_worker_process):
    """The Celery app, sending tasks to the session's real worker for this test only.

    Other tests keep running tasks eagerly: the worker never sees their (uncommitted) rows.
    The worker mechanics (skips, the subprocess, the app pointed at its queue) live in
    ``tests.workers``, shared with the tests that start workers of their own.
    """
    from config.celery import app

    worker, queue, broker = _celery_worker_process
    with app_on_queue(app, queue=queue, broker=broker):
        app.worker_log_path = worker.log_path
        yield app

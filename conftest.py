"""Shared pytest fixtures.

``celery_worker`` starts a real Celery worker process on the configured broker
(``CELERY_BROKER_URL``) against the test database, for tests marked ``worker``. Without a
broker those tests are skipped with a reason (the embedded default has no broker); CI sets one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes uploads and run outputs under its own temporary directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VADI_RUNS_ROOT = tmp_path / "runs"


def _database_url_for_worker() -> str:
    from django.db import connection

    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real ``celery worker`` subprocess using the test database; yields the Celery app."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker:
        pytest.skip("needs a broker: set CELERY_BROKER_URL (CI does) to run worker-backed tests")
    from django.db import connection

    from config.celery import app

    with django_db_blocker.unblock():
        if (connection.vendor == "sqlite" and connection.settings_dict["NAME"] in ("", ":memory:")) or (
            "mode=memory" in str(connection.settings_dict["NAME"])
        ):
            pytest.skip("the worker needs a database on disk or a server, not in-memory SQLite")
        db_url = _database_url_for_worker()
    queue = f"vadi-test-{os.getpid()}"
    media = tmp_path_factory.mktemp("worker-media")
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        DJANGO_MEDIA_ROOT=str(media),
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    previous = (app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend)
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    app.conf.result_backend = broker
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{log_path.read_text()}")
            replies = app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=1.0)
            if replies:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start in time:\n{log_path.read_text()}")
        app.worker_log_path = log_path
        yield app
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend = previous
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

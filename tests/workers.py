"""Real Celery worker subprocesses for tests (no tests here).

One mechanism for every worker-backed test: the ``celery_worker`` fixture (``conftest.py``),
the submissions worker (``evaluation/tests/test_submissions_worker.py``) and the re-benchmark
workers that a test may SIGKILL (``evaluation/tests/test_benchmarks_worker.py``).

* :func:`require_broker` / :func:`require_worker_database` skip a test, with the reason, when
  there is no broker or the test database is one a second process cannot share;
* :class:`WorkerProcess` starts ``celery worker`` on a queue of its own against that database;
* :func:`app_on_queue` points the in-process Celery app at that queue (not eager) meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def require_broker() -> str:
    """The broker URL (``CELERY_BROKER_URL``); skips the test when none is set."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker:
        pytest.skip("needs a broker: set CELERY_BROKER_URL (CI does) to run worker-backed tests")
    return broker


def require_worker_database() -> str:
    """A URL under which a worker process reaches the test database (call with database access).

    Skips the test when the database is in-memory SQLite, which another process cannot open.
    """
    from django.db import connection

    params = connection.settings_dict
    name = str(params["NAME"])
    if connection.vendor == "sqlite":
        if name in ("", ":memory:") or "mode=memory" in name:
            pytest.skip("the worker needs a database on disk or a server, not in-memory SQLite")
        return f"sqlite:///{name}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{name}"


@contextlib.contextmanager
def app_on_queue(app, *, queue: str, broker: str) -> Iterator[None]:
    """Send ``app``'s tasks to ``queue`` on ``broker`` (not eagerly) for the block, then restore it."""
    previous = (app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend)
    app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend = False, queue, broker
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue, app.conf.result_backend = previous


class WorkerProcess:
    """A real ``celery worker`` subprocess (solo pool) on its own queue, which a test may SIGKILL.

    ``env`` adds to the environment (dataset roots, media root, knobs); the worker's output goes
    to ``log_path``.
    """

    def __init__(
        self, *, name: str, queue: str, db_url: str, broker: str, log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = f"{name}@{os.uname().nodename}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed by stop())
        full_env = dict(os.environ)
        full_env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=db_url,
            CELERY_BROKER_URL=broker,
            CELERY_RESULT_BACKEND=broker,
            CELERY_TASK_DEFAULT_QUEUE=queue,
            **(env or {}),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO",
             "-Q", queue, "-n", self.name, "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, app, timeout: float = 120) -> None:
        """Block until the worker answers a ping; raises with its log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[self.name], timeout=1.0):
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} did not start in time:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no ack, no cleanup (what a crashed machine does)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), SIGKILL after 30 s; closes the log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

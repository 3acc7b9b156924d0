"""Real Celery worker subprocesses for tests (no tests here).

One mechanism for every worker-backed test: the ``celery_worker`` fixture (``conftest.py``),
the submissions worker (``evaluation/tests/test_submissions_worker.py``) and the re-benchmark
workers that a test may SIGKILL (``evaluation/tests/test_benchmarks_worker.py``).

* :func:`require_broker` / :func:`require_worker_database` skip a test, with the reason, when
  there is no broker or the test database is one a second process cannot share;
* :class:`WorkerProcess` starts ``celery worker`` on a queue of its own against that database;
* :func:`app_on_queue` points the in-process Celery app at that queue (not eager) meanwhile, or
  :func:`app_on_queues` routes each kind of work to a queue of its own (``config.queues``);
* :func:`torch_blocked_env` makes a subprocess behave as if PyTorch were not installed (the web
  image: web process, scoring worker, beat);
* :class:`RedisServer` is a Redis of the test's own on a free port, which the test may stop and
  start again (the broker going away and coming back), and :func:`app_on_broker` points the
  in-process Celery app at it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
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
def app_on_queues(app, *, queues: Mapping[str, str], broker: str) -> Iterator[None]:
    """Route ``app``'s tasks by kind of work to ``queues`` (kind -> queue name) on ``broker``, not eagerly.

    The routes come from the same table as the settings' (``config.queues.task_routes``), with
    queue names of the test's own, so that parallel test sessions on one broker never meet.
    Restored after the block.
    """
    from config.queues import SCORING, task_routes

    names = ("task_always_eager", "task_default_queue", "task_routes", "result_backend")
    previous = {name: app.conf[name] for name in names}
    app.conf.update(
        task_always_eager=False,
        task_default_queue=queues[SCORING],
        task_routes=task_routes(queues),
        result_backend=broker,
    )
    try:
        yield
    finally:
        app.conf.update(previous)


@contextlib.contextmanager
def app_on_queue(app, *, queue: str, broker: str) -> Iterator[None]:
    """Send every one of ``app``'s tasks to ``queue`` on ``broker`` (not eagerly) for the block, then restore it."""
    from config.queues import KINDS

    with app_on_queues(app, queues=dict.fromkeys(KINDS, queue), broker=broker):
        yield


def queue_names(prefix: str) -> dict[str, str]:
    """Queue names of a test's own, one per kind of work: ``{"scoring": "<prefix>-scoring", ...}``."""
    from config.queues import KINDS

    return {kind: f"{prefix}-{kind}" for kind in KINDS}


class WorkerProcess:
    """A real ``celery worker`` subprocess (solo pool by default) on its own queue(s), which a test may SIGKILL.

    ``queue`` may list several queues, comma-separated, as ``-Q`` does; ``queues`` (kind ->
    queue name, default every kind to ``queue``) is where the worker's own sends go (the
    settings' ``VADI_QUEUE_*``), so that they stay on the test's queues. ``env`` adds to the
    environment (dataset roots, media root, knobs; :func:`torch_blocked_env` for a worker of the
    web image); the worker's output goes to ``log_path``.
    """

    def __init__(
        self,
        *,
        name: str,
        queue: str,
        db_url: str,
        broker: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        pool: str = "solo",
        queues: Mapping[str, str] | None = None,
    ) -> None:
        self.name = f"{name}@{os.uname().nodename}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed by stop())
        from config.queues import KINDS, queue_setting

        # What the worker itself sends (a claim dispatches the next benchmark job) goes to the
        # test's queues too: by default every kind to ``queue``.
        routes = dict(queues) if queues is not None else dict.fromkeys(KINDS, queue)
        full_env = dict(os.environ)
        full_env.update({queue_setting(kind): routes[kind] for kind in KINDS})
        full_env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=db_url,
            CELERY_BROKER_URL=broker,
            CELERY_RESULT_BACKEND=broker,
            **(env or {}),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", f"--pool={pool}", "--concurrency=1",
             "--loglevel=INFO", "-Q", queue, "-n", self.name, "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
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


#: What the web image does not install (requirements-worker.txt does).
TORCH_PACKAGES = ("torch", "torchvision", "timm")

_BLOCKER = """\
# Written by tests/workers.py: this process behaves as if PyTorch were not installed.
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {blocked!r}


class _NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed in the web image)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def torch_blocked_env(directory: Path, blocked: tuple[str, ...] = TORCH_PACKAGES) -> dict[str, str]:
    """Environment additions under which a Python subprocess cannot import ``blocked`` (a ``sitecustomize``).

    Any attempt raises ``ModuleNotFoundError``, as in the web image where PyTorch is not installed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_BLOCKER.format(blocked=tuple(blocked)))
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{directory}{os.pathsep}{path}" if path else str(directory)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A ``redis-server`` subprocess of the test's own on a free port (never the machine's Redis).

    :meth:`stop` ends it (SIGTERM to this process only) and :meth:`start` starts it again on the
    same port, empty (nothing is persisted): a broker that went away and came back. Skips the
    test when ``redis-server`` is not installed.
    """

    def __init__(self, directory: Path) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            pytest.skip("needs redis-server on PATH to start a broker of the test's own")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        log = open(self.directory / "redis.log", "a")  # noqa: SIM115  (handed to the subprocess)
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self.is_up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def is_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None


@contextlib.contextmanager
def app_on_broker(app, url: str) -> Iterator[None]:
    """Point ``app``'s broker at ``url`` for the block (its connection and producer pools renewed), then restore it."""
    names = ("broker_url", "broker_write_url", "broker_read_url")
    previous = {name: app.conf.get(name) for name in names}

    def renew_pools() -> None:
        # Dropped, not closed: kombu keeps pools per broker URL process-wide (``kombu.pools``), and a
        # closed one would be handed out again to whoever asks for that URL next.
        app._pool = None
        app.amqp._producer_pool = None

    renew_pools()
    # The read and write URLs, because ``broker_url`` itself prefers the CELERY_BROKER_URL variable.
    app.conf.update(broker_url=url, broker_write_url=url, broker_read_url=url)
    try:
        yield
    finally:
        renew_pools()
        app.conf.update(previous)

"""Helpers shared by the re-benchmark tests (no tests here): tiny suites, catalog rows, workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY_SIZES = {"image_size": 64, "n_train": 6, "n_test_good": 3, "n_test_defect": 3}


def make_tiny_suite(root: Path, names: tuple[str, ...] = ("woven", "grid"), **sizes) -> list[str]:
    """Generate ``names`` of the synthetic suite at test sizes under ``root``; returns their keys."""
    from algorithms.data import generate_suite

    generate_suite(root, seed=0, categories=list(names), **{**TINY_SIZES, **sizes})
    return [f"synthetic/{name}" for name in names]


def make_catalog(keys: list[str], *, suite_key: str = "tiny"):
    """Dataset/Category/Suite rows for ``keys`` (catalog_sync covers whole suites only)."""
    from leaderboard.models import Category, Dataset, Suite

    dataset, _ = Dataset.objects.get_or_create(key="synthetic", defaults={"name": "Synthetic"})
    categories = [
        Category.objects.get_or_create(key=key, defaults={"dataset": dataset, "name": key.split("/")[1]})[0]
        for key in keys
    ]
    suite, _ = Suite.objects.get_or_create(key=suite_key, defaults={"name": suite_key})
    suite.categories.set(categories)
    return suite, categories


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class WorkerProcess:
    """A real ``celery worker`` subprocess on its own queue, which a test may SIGKILL."""

    def __init__(self, *, name: str, queue: str, db_url: str, broker: str, log_path: Path, env: dict[str, str]):
        self.name = f"{name}@{os.uname().nodename}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115
        full_env = dict(os.environ)
        full_env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=db_url,
            CELERY_BROKER_URL=broker,
            CELERY_RESULT_BACKEND=broker,
            CELERY_TASK_DEFAULT_QUEUE=queue,
            **env,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO",
             "-Q", queue, "-n", self.name, "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, app, timeout: float = 120) -> None:
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def paused_run_category(*, progress=None, **kwargs) -> dict:
    """A runner for the worker-death test: reports progress, then hangs until its worker is killed."""
    if progress is not None:
        progress(0.05, "paused for the worker-death test")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.5)
    raise RuntimeError("paused runner was not killed")

"""Helpers shared by the re-benchmark tests (no tests here): tiny suites, catalog rows, a paused runner.

Worker processes come from ``tests.workers`` (shared with the other worker-backed tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

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


def paused_run_category(spec, category, *, progress=None, **kwargs) -> dict:
    """A runner for the worker-death test: reports progress, then hangs until its worker is killed."""
    if progress is not None:
        progress(0.05, "paused for the worker-death test")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.5)
    raise RuntimeError("paused runner was not killed")


def timed_run_category(spec, category, **kwargs) -> dict:
    """The real runner (``algorithms.runner.run_category``), made to last ``VADI_TEST_JOB_SECONDS`` (default 3 s).

    For the queue tests: a benchmark job that really trains and evaluates its (tiny) category
    and then holds its worker like a long GPU job would, so that many jobs are queued and
    running while an upload arrives. The results are the runner's own.
    """
    import os

    from algorithms.runner import run_category

    started = time.monotonic()
    output = run_category(spec, category, **kwargs)
    remaining = float(os.environ.get("VADI_TEST_JOB_SECONDS", "3")) - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    return output

"""Entry points of the demo's local worker processes (``services.local_pool``), importable before Django is set up.

A spawned process unpickles the functions it runs by importing their module; this one imports
nothing of Django's models at import time (``leaderboard.services`` does), so it can be loaded
before :func:`worker_init` has called ``django.setup()``.
"""

from __future__ import annotations

import os
from typing import Any

from .tasknames import RUN_BENCHMARK_JOB_TASK


def worker_init(threads: int, snapshot: dict[str, Any]) -> None:
    """Runs once in each spawned process, before torch loads: the thread budget, the parent's settings, Django."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import django
    from django.conf import settings as child_settings

    for name, value in snapshot.items():
        setattr(child_settings, name, value)
    django.setup()  # torch, imported later by the task, reads OMP_NUM_THREADS when it loads


def run_job(job_id: int, task_id: str, *, child: bool = True) -> str:
    """Run the benchmark task for ``job_id`` in this process (``apply``: no broker); its outcome."""
    from celery import current_app

    if RUN_BENCHMARK_JOB_TASK not in current_app.tasks:
        current_app.loader.import_default_modules()
    try:
        return str(current_app.tasks[RUN_BENCHMARK_JOB_TASK].apply(args=[job_id], task_id=task_id).get(propagate=False))
    finally:
        if child:
            from django.db import connection

            connection.close()

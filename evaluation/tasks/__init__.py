"""Celery tasks of the evaluation app (Celery's autodiscovery imports this package).

One module per area; each task takes ids and calls one service.
"""

from celery import current_app

from .benchmarks import run_benchmark_job, sweep_stale_jobs
from .connect import install as _install_connect_step
from .health import health_check
from .submissions import score_submission

# A worker sends the uploads accepted while the broker was down as soon as it (re)connects.
_install_connect_step(current_app)

__all__ = ["health_check", "run_benchmark_job", "score_submission", "sweep_stale_jobs"]

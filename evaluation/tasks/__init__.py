"""Celery tasks of the evaluation app (Celery's autodiscovery imports this package).

One module per area; each task takes ids and calls one service.
"""

from .benchmarks import run_benchmark_job, sweep_stale_jobs
from .health import health_check
from .submissions import score_submission

__all__ = ["health_check", "run_benchmark_job", "score_submission", "sweep_stale_jobs"]

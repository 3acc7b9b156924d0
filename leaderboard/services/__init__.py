"""Writes: every change to leaderboard rows, and every enqueue, goes through a function in this package.

Modules: ``catalog`` (datasets, categories, suites, methods), ``results`` (record and publish),
``submissions`` and ``benchmark_runs`` (create jobs), ``jobs`` (the life cycle every job shares:
leases, claim, progress, heartbeats, release, failure, the enqueue), ``benchmark_jobs`` (a
benchmark job's transitions and its run's finalisation), ``sweeper`` (lost workers),
``accounts`` (API tokens). Import from the submodules;
the most used names are re-exported here.
"""

from .catalog import catalog_sync, method_sync_from_registry
from .results import result_record, results_publish

__all__ = [
    "catalog_sync",
    "method_sync_from_registry",
    "result_record",
    "results_publish",
]

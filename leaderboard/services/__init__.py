"""Writes: every change to leaderboard rows goes through a function in this package.

Import from the submodules (``leaderboard.services.results``, ``leaderboard.services.catalog``);
the names are re-exported here for convenience.
"""

from .catalog import catalog_sync, method_sync_from_registry
from .results import result_record, results_publish

__all__ = [
    "catalog_sync",
    "method_sync_from_registry",
    "result_record",
    "results_publish",
]

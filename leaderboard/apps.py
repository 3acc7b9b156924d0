"""The leaderboard app. Migrating a database also creates the catalog (see :func:`catalog_on_migrate`)."""

from __future__ import annotations

import sys

from django.apps import AppConfig
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate


class LeaderboardConfig(AppConfig):
    name = "leaderboard"
    verbose_name = "Leaderboard"

    def ready(self) -> None:
        post_migrate.connect(catalog_on_migrate, sender=self, dispatch_uid="leaderboard.catalog_on_migrate")


def catalog_on_migrate(sender, *, using: str = DEFAULT_DB_ALIAS, verbosity: int = 1, stdout=None, **kwargs) -> None:
    """After ``manage.py migrate``: create or update the catalog, so a fresh database is usable at once.

    Datasets, categories and suites come from ``algorithms.data`` (test ids from the dataset
    folders that exist), the metric definitions from ``evaluation.metrics`` (they are code, read
    by the pages), and one method per registered algorithm from its ``AlgorithmInfo`` record
    (the registry reads the records without importing the algorithms' model code). Both
    syncs are idempotent; a sync that cannot run (a malformed dataset folder, a deployment
    without torch) says why and what to run instead, and the migration stands.

    Off when ``VADI_CATALOG_ON_MIGRATE`` is false (the test settings: tests build their own
    catalogs).
    """
    if using != DEFAULT_DB_ALIAS or not getattr(settings, "VADI_CATALOG_ON_MIGRATE", True):
        return
    from .models import Category, Suite
    from .services.catalog import catalog_sync, method_sync_from_registry

    out = stdout or sys.stdout
    try:
        catalog_sync()
    except ValueError as exc:  # DatasetError: a dataset folder exists but is malformed
        out.write(f"  Catalog not synced: {exc}\n  Fix it, then run `manage.py sync_catalog --methods`.\n")
        return
    try:
        methods = method_sync_from_registry()
    except ImportError as exc:  # a web-only deployment without the algorithms' dependencies
        out.write(f"  Registered methods not synced ({exc}); run `manage.py sync_catalog --methods` on a worker.\n")
        methods = []
    if verbosity >= 1:
        keys = ", ".join(m.key for m in methods) or "none"
        out.write(
            f"  Catalog: {Suite.objects.count()} suites, {Category.objects.count()} categories; methods: {keys}\n"
        )

"""Create or update datasets, categories and suites from ``algorithms.data`` (and methods from the registry)."""

from django.core.management.base import BaseCommand, CommandError

from leaderboard.services.catalog import catalog_sync, method_sync_from_registry


class Command(BaseCommand):
    help = (
        "Sync Dataset/Category/Suite rows from algorithms.data (test ids are read from disk only for "
        "datasets whose root exists) and, with --methods, one Method per registered algorithm."
    )

    def add_arguments(self, parser):
        parser.add_argument("--suite", action="append", dest="suites", help="a suite key (repeatable); default: all")
        parser.add_argument("--methods", action="store_true", help="also upsert a Method per registered algorithm")

    def handle(self, *args, suites=None, methods=False, **options):
        try:
            catalog_sync(suites=suites)
        except ValueError as exc:  # unknown suite, malformed dataset root (DatasetError)
            raise CommandError(str(exc)) from exc
        from leaderboard.models import Category, Suite

        self.stdout.write(f"catalog: {Suite.objects.count()} suites, {Category.objects.count()} categories")
        if methods:
            synced = method_sync_from_registry()
            self.stdout.write(f"methods: {', '.join(m.key for m in synced) or 'none registered'}")

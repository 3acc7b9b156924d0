"""Generate the blind suite on this server (secret seed ``VADI_BLIND_SEED``) and sync its catalog rows.

    manage.py blind_generate [--image-size N] [--n-train N] [--n-test-good N] [--n-test-defect N] [--force]

Sizes default to the ``VADI_BLIND_*`` settings. Idempotent: an existing suite is kept unless
``--force`` (which also drops the cached downloads; every published id then changes). Then, to
put the library's methods on the Blind board: ``manage.py rebenchmark --suite blind ...`` (or the
admin's re-benchmark action, which runs on the workers like any other).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from leaderboard.services.blind import BlindSuiteError, blind_root, blind_suite_generate


class Command(BaseCommand):
    help = "Generate the blind suite with the secret seed (VADI_BLIND_SEED) and sync its categories."

    def add_arguments(self, parser):
        parser.add_argument("--image-size", type=int, default=None)
        parser.add_argument("--n-train", type=int, default=None)
        parser.add_argument("--n-test-good", type=int, default=None)
        parser.add_argument("--n-test-defect", type=int, default=None)
        parser.add_argument("--force", action="store_true", help="regenerate even when the suite exists")

    def handle(self, *args, **options):
        try:
            keys = blind_suite_generate(
                image_size=options["image_size"],
                n_train=options["n_train"],
                n_test_good=options["n_test_good"],
                n_test_defect=options["n_test_defect"],
                force=options["force"],
            )
        except BlindSuiteError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"blind suite in {blind_root()}: {', '.join(keys)}")

"""Seed fake methods with results on every category of a suite: for load and browser tests only.

Never use it for the demo or production: the methods are fictitious (``leaderboard.services.seed``).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from leaderboard.services.seed import seed_results, seed_results_clear


class Command(BaseCommand):
    help = "Create N fake methods with results on every category of a suite (load/browser tests only)."

    def add_arguments(self, parser):
        parser.add_argument("--methods", type=int, default=30)
        parser.add_argument("--suite", default="vadi")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--clear", action="store_true", help="delete earlier fake methods first")

    def handle(self, *args, methods, suite, seed, clear, **options):
        if clear:
            self.stdout.write(f"removed {seed_results_clear()} fake methods")
        try:
            written = seed_results(methods=methods, suite_key=suite, seed=seed)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"seeded {methods} fake methods, {written} results on suite {suite!r}")

"""Requeue or fail jobs whose worker stopped sending heartbeats, and dispatch waiting benchmark jobs.

Run it every minute, e.g. from cron, where Celery beat does not run.

manage.py sweep_jobs [--timeout 120] [--attempts 2]
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from leaderboard.services.sweeper import jobs_sweep


class Command(BaseCommand):
    help = "Requeue (or, after the allowed attempts, fail) jobs whose heartbeat is stale."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=None, help="seconds (default VADI_HEARTBEAT_TIMEOUT_S)")
        parser.add_argument("--attempts", type=int, default=None, help="starts allowed (default VADI_MAX_ATTEMPTS)")

    def handle(self, *args, **options):
        try:
            report = jobs_sweep(timeout_s=options["timeout"], attempts=options["attempts"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for entry in report.requeued:
            self.stdout.write(f"requeued {entry}")
        for entry in report.failed:
            self.stdout.write(f"failed {entry}: worker lost")
        for entry in report.dispatched:
            self.stdout.write(f"dispatched {entry}")
        for entry in report.resent:
            self.stdout.write(f"sent again {entry} (its message looked lost)")
        if not report:
            self.stdout.write("no stale jobs")

"""Prepare the demo site (placeholder until the scoring issue wires the real demo path)."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Prepare the demo leaderboard."

    def handle(self, *args, **options):
        self.stdout.write("Demo data: nothing to prepare yet.")

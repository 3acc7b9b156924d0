"""Fictitious methods with results on every category of a suite: the home-page load test's fixture.

Only ``benchmarks/home_page_load.py`` uses it, against the throw-away database that script
creates. It is not part of the site (no management command, nothing under ``leaderboard/``) and
it refuses to write where real data could be:

* when ``DJANGO_DEBUG`` is off (production settings);
* when the database holds anything but the catalog and this fixture's own rows: any user other
  than its own, any submission or benchmark run it did not make, any result of another source.

Nothing fictitious is labelled ``reproduced`` (nothing was re-trained): each fake method gets
one public, finished submission by the fixture's own user (``fictitious-load-test``) whose
values are recorded and published as ``server_scored`` through the same services as real
uploads (``result_record``, ``results_publish``), so the tables cost what real ones cost. The
methods are named "Fictitious 01"... and owned by that user; like uploads, they have no family.

    DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/x/bench.sqlite3 \\
        python benchmarks/fake_results.py --methods 30 --suite vadi [--seed 0]

Factories come from the leaderboard's test factories (factory_boy, a development dependency).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FAKE_USER = "fictitious-load-test"
FAKE_KEY_PREFIX = "fictitious-"


class RefusedDatabase(RuntimeError):
    """The database may hold real data: the fixture writes nothing there."""


def database_check() -> None:
    """Raise :class:`RefusedDatabase` unless this is a development database holding no real data."""
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from leaderboard.models import BenchmarkRun, Result, Submission

    if not settings.DEBUG:
        raise RefusedDatabase(
            "DJANGO_DEBUG is off: these are production settings, and fictitious results never go into a "
            "production database (run the load test, which makes its own throw-away database)"
        )
    found = []
    if get_user_model().objects.exclude(username=FAKE_USER).exists():
        found.append("user accounts")
    if Submission.objects.exclude(owner__username=FAKE_USER).exists():
        found.append("submissions")
    if BenchmarkRun.objects.exists():
        found.append("benchmark runs")
    if Result.objects.exclude(submission__owner__username=FAKE_USER).exists():
        found.append("results")
    if found:
        raise RefusedDatabase(
            f"the database holds real data ({', '.join(found)}); fictitious results are written only into a "
            "throw-away database"
        )


def seed_fake_results(*, methods: int, suite_key: str = "vadi", seed: int = 0, evaluator_version: str | None = None):
    """Create ``methods`` fictitious methods with every metric on every category of ``suite_key``.

    Returns the number of results written. Values are deterministic for a ``seed``; seeding
    again publishes a new submission per method, superseding the previous values.
    """
    import numpy as np
    from django.db import transaction

    from leaderboard.models import Provenance, Suite
    from leaderboard.selectors.metrics import metric_keys
    from leaderboard.services.results import result_record, results_publish
    from leaderboard.tests.factories import MethodFactory, SubmissionFactory, UserFactory

    if methods < 1:
        raise ValueError(f"methods must be at least 1, got {methods}")
    database_check()
    try:
        suite = Suite.objects.get(key=suite_key)
    except Suite.DoesNotExist:
        raise ValueError(f"no suite {suite_key!r}: run `manage.py sync_catalog` first") from None
    categories = list(suite.categories.order_by("key"))
    if not categories:
        raise ValueError(f"suite {suite_key!r} has no categories")
    if evaluator_version is None:
        from evaluation.metrics import EVALUATOR_VERSION

        evaluator_version = EVALUATOR_VERSION
    keys = metric_keys()
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.0, 0.15, size=len(categories))
    owner = UserFactory(username=FAKE_USER)
    written = 0
    for i in range(1, methods + 1):
        with transaction.atomic():
            method = MethodFactory(
                key=f"{FAKE_KEY_PREFIX}{i:02d}",
                name=f"Fictitious {i:02d}",
                owner=owner,
                description="Fictitious values written by benchmarks/fake_results.py for the home-page load test.",
            )
            submission = SubmissionFactory(owner=owner, method=method, suite=suite, description="fictitious")
            skill = rng.uniform(0.75, 0.98)
            for c, category in enumerate(categories):
                for m, key in enumerate(keys):
                    base = skill - difficulty[c] - (0.25 if key == "pl" else 0.05 * m)
                    result_record(
                        method=method,
                        category=category,
                        metric=key,
                        value=float(np.clip(base + rng.normal(0.0, 0.03), 0.0, 1.0)),
                        provenance=Provenance.SERVER_SCORED,
                        evaluator_version=evaluator_version,
                        submission=submission,
                        extra={"fictitious": True},
                    )
                    written += 1
            results_publish(submission=submission)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", type=int, default=30)
    parser.add_argument("--suite", default="vadi")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    try:
        written = seed_fake_results(methods=args.methods, suite_key=args.suite, seed=args.seed)
    except (RefusedDatabase, ValueError) as exc:
        print(f"fake_results: refused: {exc}", file=sys.stderr)
        return 2
    print(f"seeded {args.methods} fictitious methods, {written} server-scored results on suite {args.suite!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

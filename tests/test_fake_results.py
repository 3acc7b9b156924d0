"""The load test's fictitious results never reach a real database and are never labelled ``reproduced``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent


def _fake_results():
    spec = importlib.util.spec_from_file_location("fake_results", ROOT / "benchmarks" / "fake_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def synthetic_catalog(tmp_path):
    from leaderboard.services.catalog import catalog_sync

    catalog_sync(suites=["synthetic"], roots={"synthetic": tmp_path / "absent"})


def test_the_site_has_no_command_that_writes_fictitious_results():
    with pytest.raises(CommandError, match="Unknown command"):
        call_command("seed_results", "--methods", "1")


@pytest.mark.django_db
@override_settings(DEBUG=True)
def test_fictitious_results_are_server_scored_by_the_fixture_user(synthetic_catalog):
    from leaderboard.models import Method, Provenance, Result, Suite
    from leaderboard.selectors.leaderboard import suite_leaderboard

    fake = _fake_results()
    written = fake.seed_fake_results(methods=3, suite_key="synthetic")
    n_cat = Suite.objects.get(key="synthetic").categories.count()
    assert written == 3 * n_cat * 4 == Result.objects.filter(is_current=True).count()
    assert not Result.objects.filter(provenance=Provenance.REPRODUCED).exists()
    assert set(Result.objects.values_list("submission__owner__username", flat=True)) == {fake.FAKE_USER}
    methods = Method.objects.filter(results__isnull=False).distinct()
    assert {m.owner.username for m in methods} == {fake.FAKE_USER}
    assert all(m.name.startswith("Fictitious ") and m.key.startswith(fake.FAKE_KEY_PREFIX) for m in methods)
    assert len(suite_leaderboard(suite_key="synthetic").rows) == 3
    fake.seed_fake_results(methods=1, suite_key="synthetic", seed=7)  # again: its own data is no obstacle


@pytest.mark.django_db
@override_settings(DEBUG=False)
def test_refused_with_production_settings(synthetic_catalog):
    from leaderboard.models import Result

    fake = _fake_results()
    with pytest.raises(fake.RefusedDatabase, match="DJANGO_DEBUG is off"):
        fake.seed_fake_results(methods=2, suite_key="synthetic")
    assert not Result.objects.exists()


@pytest.mark.django_db
@override_settings(DEBUG=True)
def test_refused_on_a_database_with_real_data(synthetic_catalog):
    from leaderboard.models import Method, Result
    from leaderboard.tests.factories import BenchmarkRunFactory, UserFactory

    fake = _fake_results()
    UserFactory(username="a-real-researcher")
    with pytest.raises(fake.RefusedDatabase, match="user accounts"):
        fake.seed_fake_results(methods=2, suite_key="synthetic")
    BenchmarkRunFactory()
    with pytest.raises(fake.RefusedDatabase, match="benchmark runs"):
        fake.seed_fake_results(methods=2, suite_key="synthetic")
    assert not Result.objects.exists() and not Method.objects.filter(key__startswith="fictitious-").exists()


def test_command_line_refuses_production_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "load-test-" + "k3y" * 20,
        "DJANGO_ALLOWED_HOSTS": "localhost",
    }
    proc = subprocess.run(
        [sys.executable, "benchmarks/fake_results.py", "--methods", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "DJANGO_DEBUG is off" in proc.stderr, proc.stdout + proc.stderr

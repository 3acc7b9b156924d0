"""The skeleton: the web process without torch, settings, the Celery round trip, the home page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fresh_python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_web_process_does_not_import_torch():
    """At run time, what import-linter cannot see: the registry imports algorithm modules by name.

    The static rules (the library never imports Django, the metrics never import torch, the web
    modules import no torch) are import-linter contracts in ``pyproject.toml``
    (``tests/test_architecture.py``).
    """
    code = (
        "import os, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "django.setup()\n"
        "from django.urls import resolve\n"
        "import config.urls, leaderboard.views.pages, leaderboard.apis.public\n"
        "assert 'torch' not in sys.modules, 'torch imported by the web process'\n"
        "print('ok')\n"
    )
    proc = _fresh_python(code)
    assert proc.returncode == 0, proc.stderr


def test_production_settings_pass_check_deploy():
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "x" * 20 + "a-long-random-production-secret-key-1234567890",
            "DJANGO_ALLOWED_HOSTS": "leaderboard.example.org",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_production_settings_refuse_missing_secret_key():
    proc = _fresh_python(
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; django.setup()",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="",
    )
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in proc.stderr


@pytest.mark.django_db
def test_database_is_the_configured_one():
    """Runs against whatever DATABASE_URL names: PostgreSQL in CI, SQLite by default."""
    from django.db import connection

    expected = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    print(f"database vendor: {connection.vendor}")


@pytest.mark.django_db
def test_celery_runs_eagerly_without_broker():
    from evaluation.tasks import health_check

    result = health_check.apply(args=["eager"])
    assert result.get()["token"] == "eager"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_celery_health_task_round_trips_through_real_worker(celery_worker):
    from evaluation.tasks import health_check

    result = health_check.delay("ping-123")
    payload = result.get(timeout=60)
    assert payload["ok"] is True
    assert payload["token"] == "ping-123"
    assert payload["db"] is True
    # The worker really is another process talking to the same database server.
    from django.db import connection

    assert payload["db_vendor"] == connection.vendor
    print(f"worker round trip ok via {os.environ['CELERY_BROKER_URL'].split('@')[-1]} on {payload['hostname']}")


@pytest.mark.django_db
def test_home_page_renders(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"VADI" in response.content


@pytest.mark.django_db
def test_api_health(client):
    response = client.get("/api/v1/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

"""A fresh database is usable: ``manage.py migrate`` creates the catalog, and the home page shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Renders the home page and the method list the way ``runserver`` would (production settings,
#: no test settings), and says whether rendering them imported torch.
RENDER = """
import json, sys, django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
client = Client()
home, methods = client.get("/"), client.get("/methods/")
staff = Client()
staff.force_login(get_user_model().objects.create_user("admin", is_staff=True))
print(json.dumps({
    "status": [home.status_code, methods.status_code],
    "home": home.content.decode(),
    "methods": methods.content.decode(),
    "methods_staff": staff.get("/methods/").content.decode(),
    "torch": "torch" in sys.modules,
}))
"""


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_migrate_on_an_empty_sqlite_database_creates_what_the_home_page_shows(tmp_path):
    from algorithms import get_algorithm_info, list_algorithms
    from evaluation.metrics import list_metrics
    from leaderboard.services.catalog import SUITE_INFO

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", VADI_VAR_DIR=str(tmp_path), VADI_CATALOG_ON_MIGRATE="1")
    assert not (tmp_path / "db.sqlite3").exists()

    migrate = _run([sys.executable, "manage.py", "migrate", "--noinput"], env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert (tmp_path / "db.sqlite3").is_file()
    assert f"Catalog: {len(SUITE_INFO)} suites" in migrate.stdout, migrate.stdout

    rendered = _run([sys.executable, "-c", RENDER], env)
    assert rendered.returncode == 0, rendered.stderr
    page = json.loads(rendered.stdout.strip().splitlines()[-1])
    assert page["status"] == [200, 200]
    home = page["home"]
    assert "The catalog is empty" not in home
    for metric in list_metrics():  # the four metrics, each with its plain-language explanation
        assert metric.display_name in home and metric.explanation in home, metric.key
    for suite in SUITE_INFO.values():  # every suite is offered
        assert f">{suite['name']}<" in home, suite["name"]
    for name in list_algorithms():  # one method per registered algorithm, public once it has a published result
        assert get_algorithm_info(name).display_name in page["methods_staff"], name
        assert get_algorithm_info(name).display_name not in page["methods"], name
    assert page["torch"] is False  # the web process read the rows; migrate did the registry work

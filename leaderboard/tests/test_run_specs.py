"""One run, one description: the CLI, a config file, the staff API, the admin and ``manage.py rebenchmark``
build the same ``RunSpec`` for the same request, and give the same message for the same mistake.
"""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from algorithms.__main__ import main as cli_main
from algorithms.runspec import ConfigError, RunSpec, display_path, load_run_config
from evaluation.tests.test_benchmarks_support import make_catalog, make_tiny_suite
from leaderboard.models import BenchmarkRun, Category, Method

KEYS = ["synthetic/grid", "synthetic/woven"]
CONFIG = f"""
models = [{{"algorithm": "random", "params": {{"input_size": 32}}, "epochs": 1, "batch_size": 4}}]
categories = {KEYS!r}
seeds = [3]
device = "cpu"
train_time_limit_s = 30
"""
BAD = CONFIG.replace('"epochs": 1', '"epoch": 1')


@pytest.fixture
def setup(db, settings, tmp_path, django_user_model):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "equal.py").write_text(CONFIG)
    (configs / "bad.py").write_text(BAD)
    settings.VADI_RUN_CONFIG_DIR = configs
    from leaderboard.services import method_sync_from_registry

    method_sync_from_registry()
    make_catalog(KEYS, suite_key="pair")
    admin = django_user_model.objects.create_superuser("root", password="x")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin).key}")
    return configs, admin, api


def _admin_post(client, admin, config: str):
    client.force_login(admin)
    data = {
        "methods": [Method.objects.get(key="random").pk],
        "categories": [c.pk for c in Category.objects.filter(key__in=KEYS)],
        "config": config,
        "device": "cpu",
    }
    return client.post(reverse("admin:leaderboard_benchmarkrun_add"), data)


def _latest_spec() -> RunSpec:
    return RunSpec.from_json(BenchmarkRun.objects.latest("pk").config["spec"])


def test_every_path_builds_the_same_run(setup, client, tmp_path, capsys):
    configs, admin, api = setup
    from_file = load_run_config(configs / "equal.py").specs[0]
    assert from_file.seeds == (3,) and from_file.categories == tuple(KEYS) and from_file.device == "cpu"

    root = tmp_path / "data"
    make_tiny_suite(root, ("woven", "grid"))
    code = cli_main(["run", "--config", str(configs / "equal.py"), "--out", str(tmp_path / "out"),
                     "--data-root", f"synthetic={root}"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    recorded = json.loads((tmp_path / "out" / "random" / KEYS[1] / "results.json").read_text())["spec"]
    from_cli = RunSpec.from_json(recorded)

    body = {"methods": ["random"], "config": "equal", "categories": KEYS, "device": "cpu"}
    response = api.post("/api/v1/staff/benchmark-runs/", body, format="json")
    assert response.status_code == 201, response.content
    from_api = _latest_spec()

    response = _admin_post(client, admin, "equal")
    assert response.status_code == 302, response.content
    from_admin = _latest_spec()

    call_command("rebenchmark", "--methods", "random", "--categories", ",".join(KEYS), "--config", "equal",
                 "--device", "cpu")  # fmt: skip
    from_command = _latest_spec()

    assert from_file == from_cli == from_api == from_admin == from_command
    assert len({s.fingerprint() for s in (from_file, from_cli, from_api, from_admin, from_command)}) == 1
    runs = BenchmarkRun.objects.all()
    assert len(runs) == 3 and all(r.config["config_name"] == "equal" for r in runs)


def test_a_bad_key_gives_the_same_message_on_every_path(setup, client, capsys):
    configs, admin, api = setup
    expected = (
        f"{display_path(configs / 'bad.py')}: models[0] (random): unknown key 'epoch' (did you mean 'epochs'?); "
        "known: algorithm, categories, batch_size, epochs, iterations, params, train_time_limit_s, evaluate_every, "
        "seeds, device, save_predictions, save_checkpoint, name"
    )

    with pytest.raises(ConfigError) as error:
        load_run_config(configs / "bad.py")
    messages = {"config file": str(error.value)}

    assert cli_main(["check", "--config", str(configs / "bad.py")]) == 2
    messages["cli check"] = capsys.readouterr().err.strip().removeprefix("error: ")
    assert cli_main(["run", "--config", str(configs / "bad.py")]) == 2
    messages["cli run"] = capsys.readouterr().err.strip().removeprefix("error: ")

    response = api.post("/api/v1/staff/benchmark-runs/", {"methods": ["random"], "config": "bad"}, format="json")
    assert response.status_code == 400
    messages["staff api"] = response.json()["error"]["message"]

    response = _admin_post(client, admin, "bad")
    assert response.status_code == 200
    messages["admin"] = " ".join(response.context["form"].non_field_errors())

    with pytest.raises(CommandError) as error:
        call_command("rebenchmark", "--methods", "random", "--config", "bad")
    messages["manage.py rebenchmark"] = str(error.value)

    assert messages == dict.fromkeys(messages, expected)
    assert not BenchmarkRun.objects.exists()


def test_the_web_process_builds_run_specs_without_torch():
    """Configs are read in-process (no child interpreter) and never pull in torch or a detector."""
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent(
        """
        import os, sys, django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        import leaderboard.admin, leaderboard.apis.staff
        from leaderboard.services.benchmark_runs import benchmark_config_load, benchmark_config_names
        for name in benchmark_config_names():
            config = benchmark_config_load(name, allow_paths=False)
            assert config.specs and all(spec.fingerprint() for spec in config.specs)
        heavy = sorted(m for m in sys.modules if m == "torch" or m.endswith(".detector"))
        assert not heavy, heavy
        print("ok")
        """
    )
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_admin_form_offers_configs_that_run_here_and_starts_from_the_default(setup, client, settings):
    configs, admin, _api = setup
    (configs / "pretrained.py").write_text(CONFIG.replace('"params": {"input_size": 32}', '"params": {}'))
    (configs / "synthetic_cpu.py").write_text(CONFIG.replace("{'input_size': 32}", "{}").replace(
        '"params": {"input_size": 32}', '"params": {"input_size": 32, "pretrained": False}'))  # fmt: skip
    client.force_login(admin)
    settings.DEBUG, settings.VADI_DEFAULT_RUN_CONFIG = True, ""  # the demo
    form = client.get(reverse("admin:leaderboard_benchmarkrun_add")).context["form"]
    choices = dict(form.fields["config"].choices)
    assert form.fields["config"].initial() == "synthetic_cpu"
    assert next(iter(choices)) == "synthetic_cpu" and "runs on any worker" in choices["synthetic_cpu"]
    assert "needs their weights" in choices["pretrained"]
    settings.DEBUG = False  # production: the publication's config unless VADI_DEFAULT_RUN_CONFIG says otherwise
    settings.VADI_DEFAULT_RUN_CONFIG = "equal"
    form = client.get(reverse("admin:leaderboard_benchmarkrun_add")).context["form"]
    assert form.fields["config"].initial() == "equal"


@pytest.mark.django_db(transaction=True)
def test_admin_form_with_eager_tasks_answers_first_and_trains_after(settings, tmp_path, django_user_model, client):
    """No broker (the demo): the form answers with the run's page at once; the jobs run in a background thread."""
    import threading
    import time

    from leaderboard.models import JobStatus

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "equal.py").write_text(CONFIG)
    settings.VADI_RUN_CONFIG_DIR = configs
    settings.VADI_ADMIN_BACKGROUND_DISPATCH = True
    from leaderboard.services import method_sync_from_registry

    method_sync_from_registry()
    make_catalog(KEYS, suite_key="pair")
    root = tmp_path / "data"
    make_tiny_suite(root, ("woven", "grid"))
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(root)}
    settings.VADI_RUNS_ROOT = tmp_path / "runs"
    admin = django_user_model.objects.create_superuser("root2", password="x")
    before = set(threading.enumerate())
    response = _admin_post(client, admin, "equal")
    run = BenchmarkRun.objects.latest("pk")
    assert response.status_code == 302 and response.url == f"/runs/{run.pk}/"
    workers = [t for t in threading.enumerate() if t not in before and t.name == "benchmark-dispatch"]
    assert len(workers) == 1
    workers[0].join(timeout=300)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not BenchmarkRun.objects.get(pk=run.pk).is_finished:
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, (run.status, run.error_message)

"""The API does what its OpenAPI schema says: Schemathesis against a live server, three roles.

A live server (pytest-django's ``live_server``, on the test database) holds a small world:
a suite of two synthetic categories with ground truth on disk, the registered methods, a
published re-benchmark run with results, a scored public submission and a private one. Then
Schemathesis' command line (``st run``, the same command as the manual check in the README,
reading the repository's ``schemathesis.toml``) tests every operation of
``/api/v1/schema/`` with a fixed seed and every check, once anonymously, once with a user's
token and once with a staff token; any failure fails the test with Schemathesis' report.
The hooks in ``contract_hooks.py`` make the examples and stateful phases upload a real bundle
and start a real (cheap) run, so the 201 answers are checked too (``CREATED``), and the stateful
phase follows the links from them (upload, then read the submission; start a run, then read it)
when its draws lead there.

Bounded for CI: few examples per operation (``MAX_EXAMPLES``). Most of the time is the coverage
phase (deterministic boundary and wrong-method cases, a few hundred requests): it runs on every
operation anonymously, and with a token only on the operations whose answers depend on who
calls (``ROLE_DEPENDENT``); the examples, fuzzing and stateful phases run on every operation
in every role.
"""

# The shared fixtures are imported; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

import pytest
from django.conf import settings as django_settings
from rest_framework.authtoken.models import Token

from evaluation.tests.bundle_corpus import write_valid
from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    SUITE_KEY,
    create_submission,
    honest_categories,
    make_catalog,
    spec_for,
    tiny_data_root,
    user,
)
from leaderboard.models import JobStatus, Visibility
from leaderboard.services import method_sync_from_registry
from leaderboard.services.benchmark_runs import benchmark_runs_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).with_name("st")
SEED = 0
MAX_EXAMPLES = 5
# Operations whose answers depend on the caller: uploads and the caller's own submissions, and
# what staff alone may see or do. (Methods and results follow from the submissions.)
ROLE_DEPENDENT = {
    "user": ["submissions_create", "submissions_validate", "submissions_list", "submissions_retrieve"],
    "staff": [
        "staff_benchmark_runs_list", "staff_benchmark_runs_create", "staff_benchmark_runs_retrieve",
        "benchmark_runs_list", "benchmark_runs_retrieve",
    ],
}  # fmt: skip
# The creates each role must have seen succeed (201, checked against the schema): the hooks' real
# upload and real run. Following their links is up to the stateful phase's draws; the links
# themselves are checked request by request in test_api_schema.py.
CREATED = {"user": "/api/v1/submissions/", "staff": "/api/v1/staff/benchmark-runs/"}


def created_statuses(report: Path, path: str) -> set[int]:
    """The statuses of the POSTs to ``path`` recorded in Schemathesis' NDJSON report."""
    statuses = set()
    for line in report.read_text().splitlines():
        ((kind, event),) = json.loads(line).items()
        if kind != "ScenarioFinished":
            continue
        for interaction in event.get("recorder", {}).get("interactions", {}).values():
            request, response = interaction.get("request", {}), interaction.get("response") or {}
            if request.get("method") == "POST" and request.get("uri", "").endswith(path):
                statuses.add(response.get("status_code"))
    return statuses


@pytest.fixture
def world(live_server, settings, tiny_data_root, tmp_path):
    """The live server's data; returns the tokens and the environment for the hooks."""
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tiny_data_root)}
    settings.VADI_SUBMISSIONS_PER_DAY = 10_000
    settings.VADI_SUBMISSIONS_CONCURRENT = 10_000
    settings.VADI_VALIDATE_RATE = "100000/hour"  # the dry run's own limit is tested in test_submissions_validate.py
    make_catalog(tiny_data_root)
    method_sync_from_registry()
    alice, root = user("alice"), user("root", is_staff=True)
    bundle = write_valid(
        tmp_path / "bundle.zip", spec_for(tiny_data_root, method="Contract net"), honest_categories(tiny_data_root)
    )
    scored = create_submission(alice, bundle, method="Contract net")
    private = create_submission(alice, bundle, method="Contract net", visibility=Visibility.PRIVATE)
    for submission in (scored, private):
        submission.refresh_from_db()
        assert submission.status == JobStatus.DONE, submission.error_message
    # A published re-benchmark with real results (the random baseline, through the workers' path,
    # eager here); it also imports what later runs started through the API need.
    run_request = {"methods": ["random"], "suites": [SUITE_KEY], "config": "tiny", "device": "cpu"}
    (run,) = benchmark_runs_create(**run_request)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE and run.is_published, run.error_message
    return {
        "tokens": {"user": Token.objects.create(user=alice).key, "staff": Token.objects.create(user=root).key},
        "env": {
            "VADI_CONTRACT_BUNDLE": str(bundle),
            "VADI_CONTRACT_SUITE": SUITE_KEY,
            "VADI_CONTRACT_METHOD": "Contract net",
            "VADI_CONTRACT_RUN": json.dumps(run_request),
        },
    }


def schemathesis_config(role: str, directory: Path) -> Path:
    """The repository's ``schemathesis.toml``, plus: no coverage phase where the role changes nothing."""
    text = (ROOT / "schemathesis.toml").read_text()
    text += "\n[cache]\nenabled = false  # the seed alone decides what is sent\n"
    if role in ROLE_DEPENDENT:
        text += (
            "\n[[operations]]\n"
            f"exclude-operation-id = {json.dumps(ROLE_DEPENDENT[role])}\n"
            "phases.coverage.enabled = false\n"
        )
    path = directory / "schemathesis.toml"
    path.write_text(text)
    return path


def schemathesis_run(
    url: str, *, token: str | None, config: Path, env: dict, report: Path
) -> subprocess.CompletedProcess:
    """``st run URL --checks all`` from the repository root with ``config``, seeded."""
    command = [
        str(ST), "--config-file", str(config), "run", f"{url}/api/v1/schema/", "--checks", "all", "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--request-timeout", "120",
        # Answers are timed against 60 s, not the default 10 s: a shared CI machine is slow, and an
        # upload or a run started here is scored or run in the request (eager tasks).
        "--max-response-time", "60",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]  # fmt: skip
    if token:
        command += ["--header", f"Authorization: Token {token}"]
    environment = {
        **os.environ,
        **env,
        "SCHEMATHESIS_HOOKS": "leaderboard.tests.contract_hooks",
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("role", ["anonymous", "user", "staff"])
def test_schemathesis_finds_no_failure(world, live_server, role, tmp_path):
    assert not django_settings.DEBUG
    report = tmp_path / "events.ndjson"
    config = schemathesis_config(role, tmp_path)
    result = schemathesis_run(
        live_server.url, token=world["tokens"].get(role), config=config, env=world["env"], report=report
    )
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-20000:]
    with urlopen(f"{live_server.url}/api/v1/schema/?format=json") as answer:
        paths = json.load(answer)["paths"]
    n_operations = sum(len(operations) for operations in paths.values())
    assert f"Tested: {n_operations}" in output, output[-5000:]
    if role in CREATED:
        statuses = created_statuses(report, CREATED[role])
        assert 201 in statuses, statuses

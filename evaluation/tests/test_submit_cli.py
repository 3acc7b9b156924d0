"""``python -m algorithms submit`` and ``bundle --check`` against a live test server, as a user runs them.

A live server (pytest-django's ``live_server``, eager tasks) holds the tiny two-category suite
with its ground truth on disk. Our own runner makes a run directory (the random baseline, with
saved predictions), ``python -m algorithms bundle`` turns it into a bundle, ``bundle --check``
checks it locally and on the server, and ``python -m algorithms submit`` uploads it, follows the
submission and prints the per-category results, each in a subprocess with the token in
``VADI_TOKEN``.
"""

# The shared fixtures are imported from test_submissions; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    NAMES,
    SUITE_KEY,
    make_catalog,
    tiny_data_root,
    user,
)
from leaderboard.models import JobStatus, Result, Submission

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, token: str | None, home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("VADI_TOKEN", None)
    if token is not None:
        env["VADI_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "algorithms", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def run_dir(tiny_data_root, tmp_path):
    """Our runner's output directory: the random baseline on both categories, predictions saved."""
    from algorithms.runner import run_category
    from algorithms.runspec import RunSpec

    roots = {"synthetic": str(tiny_data_root)}
    keys = [f"synthetic/{name}" for name in NAMES]
    spec = RunSpec.from_entry({"algorithm": "random", "categories": keys, "save_predictions": True,
                               "train_time_limit_s": 60, "device": "cpu"})  # fmt: skip
    for key in keys:
        result = run_category(spec, key, roots=roots, out_dir=tmp_path / "run" / "random" / key)
        assert result["status"] == "ok", result["error"]
    return tmp_path / "run"


@pytest.fixture
def server(live_server, settings, tiny_data_root):
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tiny_data_root)}
    settings.VADI_SUBMISSIONS_PER_DAY = 100
    settings.VADI_SUBMISSIONS_CONCURRENT = 100
    make_catalog(tiny_data_root)
    return live_server.url


def test_submit_from_our_run_directory_prints_the_results(server, run_dir, tmp_path):
    token = Token.objects.create(user=user("cli")).key
    bundle = tmp_path / "bundle.zip"
    # the tiny suite is the server's own (algorithms.data does not know it): --partial skips the local set check;
    # --server fetches its id tables, turning the runner's file names into the published (opaque) ids
    made = _cli("bundle", "--predictions", str(run_dir), "--method", "CLI random", "--suite", SUITE_KEY,
                "--out", str(bundle), "--partial", "--server", server, token=None, home=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o666 & ~_umask()  # readable by others, as the umask allows

    checked = _cli("bundle", "--check", str(bundle), "--server", server, token=token, home=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"local check (the ids published by {server}): no problems" in checked.stdout
    assert "server check" in checked.stdout and "valid: no problems" in checked.stdout
    assert not Submission.objects.exists()  # the dry runs wrote nothing

    submitted = _cli("submit", str(bundle), "--method", "CLI random", "--suite", SUITE_KEY, "--server", server,
                     token=token, home=tmp_path)  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    submission = Submission.objects.get()
    assert submission.status == JobStatus.DONE
    out = submitted.stdout
    assert f"submission {submission.pk} (cli-random, suite {SUITE_KEY}): done" in out
    for result in Result.objects.filter(submission=submission, is_primary_variant=True):
        line = next(line for line in out.splitlines() if line.startswith(result.category.key))
        assert f"{result.value:.4f}" in line, (line, result.metric, result.value)
    assert "mean" in out and "image_auroc" in out


def test_submit_reports_refusals_and_a_missing_token(server, run_dir, tmp_path):
    from algorithms.bundle import bundle_from_predictions

    token = Token.objects.create(user=user("cli")).key
    bundle = bundle_from_predictions(run_dir, tmp_path / "b.zip", method="CLI random", suite=SUITE_KEY, partial=True)
    no_token = _cli("submit", str(bundle), "--server", server, token=None, home=tmp_path)
    assert no_token.returncode == 1 and "no API token: set VADI_TOKEN" in no_token.stderr
    # the token file works instead of the variable
    (tmp_path / ".config" / "vadi").mkdir(parents=True)
    (tmp_path / ".config" / "vadi" / "token").write_text(token + "\n")
    refused = _cli("submit", str(bundle), "--suite", "nope", "--server", server, token=None, home=tmp_path)
    assert refused.returncode == 1
    assert "HTTP 400" in refused.stderr and "unknown suite 'nope'" in refused.stderr
    assert not Submission.objects.exists()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

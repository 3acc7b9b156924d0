"""The architecture is checked, not just drawn: import-linter's contracts (``pyproject.toml``).

``make lint`` runs ``lint-imports`` over the checkout; these tests show that the contracts hold
and that each one fails on a deliberate violation, written into a scratch copy of the packages.
Two rules that are about call sites rather than imports are read from the source here: the
Celery task names are spelled once (``leaderboard/tasknames.py``) and one helper enqueues
(``leaderboard.services.jobs.job_enqueue``).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("algorithms", "config", "evaluation", "leaderboard")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path, *contracts: str) -> subprocess.CompletedProcess:
    args = [str(LINT_IMPORTS), "--no-cache", *(part for c in contracts for part in ("--contract", c))]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def scratch_copy(tmp_path_factory) -> Path:
    """The packages' Python files and ``pyproject.toml``, copied once; each test adds one module."""
    tree = tmp_path_factory.mktemp("architecture")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tree / package,
            ignore=lambda folder, names: [
                n for n in names if (not n.endswith(".py") and not (Path(folder) / n).is_dir()) or n == "__pycache__"
            ],
        )
    shutil.copy2(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_hold_on_the_checkout():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_the_unchanged_copy_passes(scratch_copy):
    proc = _lint(scratch_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr


#: (scratch module, its source, the contract it breaks)
VIOLATIONS = [
    ("evaluation/metrics/_scratch.py", "from leaderboard.models import Result\n", "metrics-ground-floor"),
    ("evaluation/metrics/_scratch.py", "import torch\n", "metrics-ground-floor"),
    ("evaluation/metrics/_scratch.py", "from algorithms import runner\n", "layers"),
    ("algorithms/_scratch.py", "from django.db import models\n", "library-without-django"),
    ("algorithms/_scratch.py", "from evaluation.bundles import BundleReader\n", "layers"),
    # the old six-file cycle: the leaderboard importing the tasks to register them
    ("leaderboard/services/_scratch.py", "import evaluation.tasks\n", "layers"),
    ("evaluation/services/_scratch.py", "from leaderboard.models import Submission\n", "rows-written-by-leaderboard"),
    ("leaderboard/selectors/_scratch.py", "from leaderboard.services import results\n", "leaderboard-layers"),
    ("leaderboard/views/_scratch.py", "from leaderboard.apis import public\n", "leaderboard-layers"),
    ("leaderboard/apis/_scratch.py", "from leaderboard.views.submit import SubmissionForm\n", "leaderboard-layers"),
    ("leaderboard/views/_scratch.py", "def page():\n    import torch\n", "web-without-torch"),
    ("leaderboard/selectors/_scratch.py", "from algorithms.base import AnomalyDetector\n", "web-without-torch"),
]


@pytest.mark.parametrize(("path", "source", "contract"), VIOLATIONS, ids=[f"{v[2]}:{v[0]}" for v in VIOLATIONS])
def test_a_deliberate_violation_breaks_its_contract(scratch_copy, path, source, contract):
    module = scratch_copy / path
    module.write_text(source)
    try:
        proc = _lint(scratch_copy, contract)
    finally:
        module.unlink()
    assert proc.returncode != 0, proc.stdout
    assert "BROKEN" in proc.stdout and "_scratch" in proc.stdout, proc.stdout


#: (existing module of the copy, an import appended to it in a function, the contract it breaks, the import)
EDITS = [
    ("algorithms/base.py", "from algorithms import registry", "algorithm-api-knows-no-registry", "algorithms.registry"),
    ("algorithms/info.py", "from algorithms import runspec", "algorithm-api-knows-no-registry", "algorithms.runspec"),
    ("algorithms/runspec.py", "import torch", "metadata-without-torch", "torch"),
    ("algorithms/registry.py", "from algorithms.patchcore import detector", "metadata-without-torch",
     "algorithms.patchcore.detector"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "statement", "contract", "imported"), EDITS, ids=[f"{e[2]}:{e[0]}" for e in EDITS])
def test_an_import_added_to_a_module_breaks_its_contract(scratch_copy, path, statement, contract, imported):
    """Function-level imports count: the registry once reached the base class that way (a soft cycle)."""
    module = scratch_copy / path
    original = module.read_text()
    module.write_text(f"{original}\n\ndef _scratch():\n    {statement}\n")
    try:
        proc = _lint(scratch_copy, contract)
    finally:
        module.write_text(original)
    assert proc.returncode != 0, proc.stdout
    assert "BROKEN" in proc.stdout and imported in proc.stdout, proc.stdout


def test_a_cycle_between_sibling_modules_breaks_the_acyclic_contract(scratch_copy):
    first, second = scratch_copy / "algorithms" / "_scratch_a.py", scratch_copy / "algorithms" / "_scratch_b.py"
    first.write_text("from algorithms import _scratch_b\n")
    second.write_text("from algorithms import _scratch_a\n")
    try:
        proc = _lint(scratch_copy, "no-cycles")
    finally:
        first.unlink()
        second.unlink()
    assert proc.returncode != 0, proc.stdout
    assert "_scratch_a" in proc.stdout and "_scratch_b" in proc.stdout, proc.stdout


# Task names and the enqueue helper ------------------------------------------------------------

#: Methods that send a Celery task, and Celery's canvas functions (called by their imported name).
SENDING_METHODS = {"apply_async", "delay", "send_task"}
CANVAS_FUNCTIONS = {"signature", "group", "chord", "chain"}


def _sources() -> Iterator[tuple[str, ast.Module]]:
    """Every non-test module of the packages, parsed: ``(path relative to the root, tree)``."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "tests" not in relative.parts:
                yield relative.as_posix(), ast.parse(path.read_text(), filename=str(path))


def _task_names() -> set[str]:
    from leaderboard import tasknames

    return {value for key, value in vars(tasknames).items() if key.endswith("_TASK")}


def test_task_names_are_spelled_once():
    names = _task_names()
    spelled = defaultdict(set)
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names:
                spelled[node.value].add(path)
    assert dict(spelled) == {name: {"leaderboard/tasknames.py"} for name in names}


def test_the_workers_register_exactly_the_named_tasks():
    from config.celery import app

    app.loader.import_default_modules()
    assert {name for name in app.tasks if name.startswith("evaluation.")} == _task_names()


def test_one_helper_enqueues():
    senders = set()
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr in SENDING_METHODS) or (
                isinstance(func, ast.Name) and func.id in CANVAS_FUNCTIONS
            ):
                senders.add(path)
    assert senders == {"leaderboard/services/jobs.py"}

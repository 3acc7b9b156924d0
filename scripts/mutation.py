"""Mutation testing of one module against its own tests (mutmut 3), with the score the project reports.

Usage (``make mutation MODULE=evaluation/scoring.py``)::

    python scripts/mutation.py evaluation/scoring.py [--max-children 1] [--fresh]

The modules and the test files that own them are listed in ``pyproject.toml`` under
``[tool.vadi-mutation.modules]``; the mutmut options shared by every run under ``[tool.mutmut]``.
Each module gets its own work folder ``var/mutation/<module>/`` (the project's packages linked in,
a ``pyproject.toml`` holding the shared options plus ``only_mutate`` and the module's tests), so
runs of different modules never share mutmut's state and a rerun reuses the earlier verdicts
(``--fresh`` starts over; ``--survivors`` runs only the mutants not yet killed, after tests were
added: killed ones stay killed when tests are only added). Every function of the module is
mutated (no sampling); each mutant runs only the tests that reach its function.

The score is ``killed / (generated - equivalent)``: a mutant that times out counts as killed (the
tests noticed), and the mutants listed under ``[tool.vadi-mutation.equivalent]`` (name -> why no
test can tell them apart) are excluded. The tests run on SQLite with eager tasks and the
in-memory cache (``DATABASE_URL``, ``CELERY_BROKER_URL`` and ``CACHE_URL`` are unset), so
parallel mutants never share a database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What the tests import or read; linked into the work folder (mutmut copies them into ``mutants/``).
PROJECT_PARTS = ("algorithms", "config", "evaluation", "leaderboard", "tests", "templates", "conftest.py")


def _toml_value(value: object) -> str:
    return json.dumps(value)  # JSON strings, lists, numbers and booleans are valid TOML values


def _toml_table(name: str, table: dict) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _workdir(module: str, tests: list[str], project: dict, fresh: bool) -> Path:
    slug = module.rstrip("/").removesuffix(".py").replace("/", ".")
    work = ROOT / "var" / "mutation" / slug
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        link = work / part
        if not link.exists():
            link.symlink_to(ROOT / part)
    pattern = module if module.endswith(".py") else module.rstrip("/") + "/*"
    mutmut = dict(project["tool"]["mutmut"])
    mutmut["only_mutate"] = [pattern]
    mutmut["pytest_add_cli_args_test_selection"] = tests
    config = _toml_table("tool.pytest.ini_options", project["tool"]["pytest"]["ini_options"])
    config += "\n" + _toml_table("tool.mutmut", mutmut)
    (work / "pyproject.toml").write_text(config)
    return work


def _sync_tests(work: Path, tests: list[str]) -> None:
    """Copy the module's tests (and the JSON data beside them) into ``mutants/`` again (mutmut copies a
    file only once)."""
    for test in tests:
        if test.startswith("-"):
            continue  # a pytest option (e.g. --deselect=...), not a path
        test = test.split("::")[0]
        source, target = ROOT / test, work / "mutants" / test
        if not target.parent.exists():
            continue  # the first run copies everything
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
            for data in source.parent.glob("*.json"):  # the tests' data files (expected messages)
                shutil.copy2(data, target.parent / data.name)


def _statuses(work: Path, mutmut: str, env: dict) -> dict[str, str]:
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env, check=True,
                         capture_output=True, text=True).stdout
    statuses = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="a key of [tool.vadi-mutation.modules], e.g. evaluation/scoring.py")
    parser.add_argument("--max-children", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--fresh", action="store_true", help="forget the verdicts of earlier runs")
    parser.add_argument("--report-only", action="store_true", help="print the score of the last run, run nothing")
    parser.add_argument("--timeout-multiplier", type=float,
                        help="override [tool.mutmut] timeout_multiplier; mutmut then runs the timed-out mutants again")
    parser.add_argument("--survivors", action="store_true",
                        help="run again only the mutants that the last run did not kill (after adding tests)")
    args = parser.parse_args(argv)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    settings = project["tool"]["vadi-mutation"]
    modules = settings["modules"]
    if args.module not in modules:
        parser.error(f"unknown module {args.module!r}; one of: {', '.join(modules)}")
    if args.timeout_multiplier:
        project["tool"]["mutmut"]["timeout_multiplier"] = args.timeout_multiplier
    work = _workdir(args.module, modules[args.module], project, args.fresh)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL")}
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    if not args.report_only:
        _sync_tests(work, modules[args.module])
        names = []
        if args.survivors and (work / "mutants").exists():
            names = [name for name, status in _statuses(work, mutmut, env).items()
                     if status not in ("killed", "timeout", "not checked")]
        if not args.survivors or names:
            subprocess.run([mutmut, "run", "--max-children", str(args.max_children), *names], cwd=work, env=env,
                           check=True)

    statuses = _statuses(work, mutmut, env)
    # a listed mutant that the tests kill after all is simply killed (one that times out stays listed)
    equivalent = {name for name in settings.get("equivalent", {}) if statuses.get(name, "killed") != "killed"}
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    detected = sum(status in ("killed", "timeout") and name not in equivalent for name, status in statuses.items())
    considered = len(statuses) - len(equivalent) - counts.get("not checked", 0)
    missed = sorted(name for name, status in statuses.items()
                    if status not in ("killed", "timeout", "not checked") and name not in equivalent)
    print(f"module {args.module}: tests {' '.join(modules[args.module])}")
    print(f"generated {len(statuses)}, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f", equivalent (excluded) {len(equivalent)}")
    if considered:
        print(f"score {detected}/{considered} = {100.0 * detected / considered:.1f}%")
        strict = sum(status == "killed" and name not in equivalent for name, status in statuses.items())
        # mutmut also stops a mutant at timeout_multiplier x its tests' wall time: on a loaded machine a
        # surviving mutant can be stopped so; --timeout-multiplier N reruns the timed-out mutants
        print(f"killed by a failing test: {strict}/{considered} = {100.0 * strict / considered:.1f}%")
    unchecked = counts.get("not checked", 0)
    if unchecked:  # an interrupted run: the score of what ran, per file
        print(f"{unchecked} mutants not run yet (run again to continue); per file, of the mutants run:")
        per_file: dict[str, list[int]] = {}
        for name, status in statuses.items():
            if status != "not checked" and name not in equivalent:
                tally = per_file.setdefault(name.split(".x")[0], [0, 0])
                tally[0] += status in ("killed", "timeout")
                tally[1] += 1
        for file, (hit, total) in sorted(per_file.items()):
            print(f"  {file}: {hit}/{total} = {100.0 * hit / max(total, 1):.1f}%")
    for name in missed:
        print(f"  not killed: {name} ({statuses[name]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

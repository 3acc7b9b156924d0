"""Re-benchmark methods on suites or categories through the Celery workers (provenance ``reproduced``).

    manage.py rebenchmark --methods patchcore,fastflow --suites synthetic \
        [--categories synthetic/woven,...] [--config algorithms/configs/synthetic_cpu.py] [--wait]

Without a broker (the embedded default) the jobs run eagerly in this process.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from leaderboard.management.commands._progress import job_progress_bar
from leaderboard.models import BenchmarkRun, JobStatus
from leaderboard.selectors import catalog
from leaderboard.selectors.jobs import benchmark_run_list
from leaderboard.selectors.visibility import SYSTEM
from leaderboard.services.benchmark_runs import BenchmarkRequestError, benchmark_runs_create


def _split(values: list[str] | None) -> list[str]:
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def runs_wait(
    runs: list[BenchmarkRun], *, write, poll_s: float = 2.0, timeout_s: float | None = None
) -> list[BenchmarkRun]:
    """Poll until every run is finished, writing each change of progress; returns the fresh rows."""
    ids = [run.pk for run in runs]
    seen: dict[int, str] = {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        fresh = list(benchmark_run_list(viewer=SYSTEM, pks=ids).order_by("pk"))
        for run in fresh:
            line = f"run {run.pk} {run.method.key}: {run.status} {run.progress:4.0%} {run.progress_message}"
            if seen.get(run.pk) != line:
                seen[run.pk] = line
                write(line)
        if all(run.is_finished for run in fresh):
            return fresh
        if deadline is not None and time.monotonic() > deadline:
            raise CommandError(f"runs {ids} still unfinished after {timeout_s:.0f} s")
        time.sleep(poll_s)


def runs_summary(runs: list[BenchmarkRun], *, write) -> bool:
    """Write one line per run (and per failed category); ``True`` when every run succeeded completely."""
    ok = True
    for run in runs:
        write(f"run {run.pk} {run.method.key}: {run.status}, published={run.is_published} {run.progress_message}")
        if run.error_message:
            write(f"  {run.error_message}")
        ok = ok and run.status == JobStatus.DONE and not run.error_message
    return ok


def _seeds(text: str) -> list[int] | None:
    if not text.strip():
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--seeds must be integers separated by commas, got {text!r}") from None


class Command(BaseCommand):
    help = "Re-benchmark registered methods on suites/categories with a config's budgets, via Celery."

    def add_arguments(self, parser):
        parser.add_argument("--methods", action="append", help="method keys, comma-separated (or --all)")
        parser.add_argument("--all", action="store_true", help="every method that has a registered algorithm")
        parser.add_argument("--suites", action="append", help="suite keys, comma-separated (e.g. synthetic, vadi)")
        parser.add_argument("--categories", action="append", help="category keys, e.g. synthetic/woven")
        parser.add_argument("--config", default=None, help="config name or path (default: algorithms/configs/paper.py)")
        parser.add_argument("--device", default="auto", help="auto (CUDA when the worker has it), cpu or cuda:N")
        parser.add_argument(
            "--seeds", default="", help="seeds, comma-separated (e.g. 0,1,2; default: the config's); values are means"
        )
        parser.add_argument("--skip-complete", action="store_true", help="skip methods with a complete run already")
        parser.add_argument("--wait", action="store_true", help="poll and print progress until the runs finish")
        parser.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many s")

    def handle(self, *args, **options):
        methods = _split(options["methods"])
        if options["all"]:
            methods += [method.key for method in catalog.method_list(viewer=SYSTEM, reproducible=True)]
        if not methods:
            raise CommandError("give --methods KEY[,KEY...] or --all")
        try:
            with job_progress_bar():  # without a broker the jobs train here, eagerly: show them on a terminal
                runs = benchmark_runs_create(
                    methods=methods,
                    suites=_split(options["suites"]),
                    categories=_split(options["categories"]),
                    config=options["config"],
                    device=options["device"],
                    seeds=_seeds(options["seeds"]),
                    skip_complete=options["skip_complete"],
                )
        except BenchmarkRequestError as exc:
            raise CommandError(str(exc)) from exc
        for run in runs:
            jobs = run.jobs.count()
            self.stdout.write(
                f"run {run.pk}: {run.method.key} on {jobs} categories, config {run.config['config_name']}"
            )
        if options["wait"]:
            with job_progress_bar(run_ids=[r.pk for r in runs]):  # on a terminal: "k of N jobs", time estimate
                runs = runs_wait(runs, write=self.stdout.write, timeout_s=options["timeout"])
        else:
            runs = list(benchmark_run_list(viewer=SYSTEM, pks=[r.pk for r in runs]))
        if not runs_summary(runs, write=self.stdout.write) and all(r.is_finished for r in runs):
            self.stderr.write("some categories failed; see the messages above")

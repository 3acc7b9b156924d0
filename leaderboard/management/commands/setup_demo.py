"""Prepare the demo leaderboard: catalog, methods, the synthetic and blind suites and real reproduced numbers.

    manage.py setup_demo [--config synthetic_cpu] [--force] [--no-blind]

The blind suite (``services.blind``) is generated small for the demo (its four categories at the
demo's image size, ``--blind-n-train`` / ``--blind-n-test-good`` / ``--blind-n-test-defect``
images) with the secret seed ``VADI_BLIND_SEED``, and every method is benchmarked on it too, so
the Blind board starts with the library's methods.

Idempotent: the synthetic suite is generated only when missing, and a method that already has a
complete published run of the same config on the suite is not run again (``--force`` redoes it).
The re-benchmark goes through the same path as an admin's (``benchmark_runs_create`` -> Celery
tasks -> ``results_publish``): on the workers when a broker is configured (this command then
waits for them); with no broker, in ``--processes`` local processes (default one per core, each
one torch thread: ``services.local_pool``), as a worker with that concurrency would
(``--processes 1``: in this process, one job after another).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from leaderboard.management.commands._progress import job_progress_bar
from leaderboard.management.commands.rebenchmark import runs_summary, runs_wait
from leaderboard.services import catalog_sync, method_sync_from_registry
from leaderboard.services.benchmark_runs import (
    BenchmarkRequestError,
    benchmark_config_load,
    benchmark_runs_create,
)
from leaderboard.services.blind import blind_suite_generate
from leaderboard.services.jobs import tasks_run_eagerly
from leaderboard.services.local_pool import benchmark_jobs_held, benchmark_jobs_run_locally, local_processes_default

MARKER = ".vadi-suite.json"


class Command(BaseCommand):
    help = "Prepare the demo: sync the catalog and methods, generate the synthetic suite, benchmark every algorithm."

    def add_arguments(self, parser):
        parser.add_argument("--config", default="synthetic_cpu", help="config name or path (default synthetic_cpu)")
        parser.add_argument("--force", action="store_true", help="re-run even when a complete published run exists")
        parser.add_argument(
            "--methods", default="", help="method keys, comma-separated (default: every one the config has)"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the generated suite")
        parser.add_argument("--image-size", type=int, default=128)
        parser.add_argument("--n-train", type=int, default=100)
        parser.add_argument("--n-test-good", type=int, default=25)
        parser.add_argument("--n-test-defect", type=int, default=35)
        parser.add_argument("--device", default="cpu", help="cpu (default), auto or cuda:N")
        parser.add_argument("--no-blind", action="store_true", help="skip the blind suite")
        parser.add_argument("--blind-n-train", type=int, default=30)
        parser.add_argument("--blind-n-test-good", type=int, default=8)
        parser.add_argument("--blind-n-test-defect", type=int, default=12)
        parser.add_argument(
            "--processes", type=int, default=0,
            help="local processes training the jobs when there is no broker (default 0: one per core, up to 8)",
        )  # fmt: skip

    def _log(self, message: str) -> None:
        self.stdout.write(f"[setup_demo {time.monotonic() - self._t0:6.1f}s] {message}")
        self.stdout.flush()

    def _ensure_suite(self, options) -> None:
        from algorithms.data import SYNTHETIC_CATEGORIES, generate_suite

        root = Path(settings.DATASET_ROOTS["synthetic"])
        sizes = {
            "seed": options["seed"],
            "image_size": options["image_size"],
            "n_train": options["n_train"],
            "n_test_good": options["n_test_good"],
            "n_test_defect": options["n_test_defect"],
        }
        present = all(
            (root / name / "train").is_dir() and (root / name / "test").is_dir() for name in SYNTHETIC_CATEGORIES
        )
        if present:
            self._log(f"synthetic suite present in {root}")
            return
        self._log(f"generating the synthetic suite ({len(SYNTHETIC_CATEGORIES)} categories) in {root}: {sizes}")
        root.mkdir(parents=True, exist_ok=True)
        generate_suite(root, **sizes)
        (root / MARKER).write_text(json.dumps(sizes, indent=2))

    def handle(self, *args, **options):
        self._t0 = time.monotonic()
        try:
            config = benchmark_config_load(options["config"])
        except BenchmarkRequestError as exc:
            raise CommandError(str(exc)) from exc
        self._ensure_suite(options)
        catalog_sync()
        suites = ["synthetic"]
        if not options["no_blind"]:
            blind_suite_generate(
                image_size=options["image_size"],
                n_train=options["blind_n_train"],
                n_test_good=options["blind_n_test_good"],
                n_test_defect=options["blind_n_test_defect"],
            )
            suites.append("blind")
            self._log("blind suite present (generated with the secret seed)")
        methods = method_sync_from_registry()
        self._log(f"catalog and {len(methods)} methods synced")

        configured = {spec.algorithm for spec in config.specs}
        wanted = [k.strip() for k in options["methods"].split(",") if k.strip()]
        chosen = [m for m in methods if (m.key in wanted if wanted else m.algorithm_key in configured)]
        skipped = sorted(m.key for m in methods if m.algorithm_key not in configured)
        if skipped and not wanted:
            self._log(f"config {config.name!r} has no entry for {', '.join(skipped)}: not benchmarked")
        if not chosen:
            raise CommandError(f"no method to benchmark with config {config.name!r}")
        if options["processes"] < 0:
            raise CommandError(f"--processes must be 0 (one per core) or more, got {options['processes']}")
        processes = options["processes"] or local_processes_default()
        local = tasks_run_eagerly()  # no broker: this command runs the jobs (services.local_pool)
        runs = []
        with job_progress_bar():  # "k of N jobs" and a time estimate on a terminal, eager tasks too
            for suite in suites:  # one run per method and suite, so that each run page links to its suite
                try:
                    runs += benchmark_runs_create(
                        methods=chosen,
                        suites=[suite],
                        config=config,
                        device=options["device"],
                        skip_complete=not options["force"],
                        dispatch=not local,
                    )
                except BenchmarkRequestError as exc:
                    raise CommandError(str(exc)) from exc
            if local:
                job_ids = benchmark_jobs_held(run_ids=[run.pk for run in runs])
                threads = max(1, local_processes_default() // processes)
                self._log(f"{len(job_ids)} jobs in {processes} local processes ({threads} torch thread(s) each)")
                outcomes = benchmark_jobs_run_locally(job_ids, processes=processes, threads=threads)
                self._log("jobs: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))
        self._log(f"runs: {', '.join(f'{r.pk} ({r.method.key})' for r in runs)}")
        runs = runs_wait(runs, write=self._log)
        runs_summary(runs, write=self._log)
        self._log(
            f"done in {time.monotonic() - self._t0:.1f} s; the leaderboard shows the synthetic suite"
            + (" and the Blind board (/blind/)" if "blind" in suites else "")
        )

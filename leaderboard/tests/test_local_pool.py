"""``services.local_pool``: the demo's benchmark jobs in spawned local processes, numbers as in one process."""

from __future__ import annotations

import pytest
from django.db import connection

from leaderboard.models import BenchmarkJob, BenchmarkRun, JobStatus, Result
from leaderboard.services import catalog_sync, method_sync_from_registry
from leaderboard.services.benchmark_runs import benchmark_runs_create
from leaderboard.services.local_pool import (
    LOCAL_MESSAGE,
    _fail_abandoned,
    benchmark_jobs_held,
    benchmark_jobs_run_locally,
    local_processes_default,
    settings_snapshot,
)

CATEGORIES = ["synthetic/woven", "synthetic/screw", "synthetic/pill"]


def test_processes_default_is_one_per_core_between_1_and_8():
    assert [local_processes_default(n) for n in (1, 2, 3, 16)] == [1, 2, 3, 8]
    assert local_processes_default(0) == 1
    assert 1 <= local_processes_default() <= 8


@pytest.mark.django_db
@pytest.mark.parametrize("processes, threads", [(0, 1), (-1, 1), (True, 1), (2, 0)])
def test_bad_counts_are_refused_before_anything_changes(processes, threads):
    with pytest.raises(ValueError, match=r"processes|threads"):
        benchmark_jobs_run_locally([1], processes=processes, threads=threads)


@pytest.fixture
def suite_root(settings, tmp_path):
    from algorithms.data import generate_suite

    root = tmp_path / "synthetic"
    generate_suite(root, seed=0, categories=[c.split("/")[1] for c in CATEGORIES], workers=1,
                   image_size=64, n_train=4, n_test_good=3, n_test_defect=3)  # fmt: skip
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(root)}
    settings.VAR_DIR = tmp_path / "var"  # the spawned processes must see these overrides too
    catalog_sync(suites=["synthetic"])
    method_sync_from_registry()
    return root


def _values(run: BenchmarkRun) -> dict[tuple[str, str, str], float]:
    rows = Result.objects.filter(benchmark_run=run).values_list("category__key", "metric", "variant", "value")
    return {(c, m, v): value for c, m, v, value in rows}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_processes_store_exactly_what_one_process_stores(suite_root):
    def make():
        (run,) = benchmark_runs_create(methods=["patchcore"], categories=CATEGORIES, config="tiny",
                                       device="cpu", dispatch=False)  # fmt: skip
        return run

    # One after the other: with no broker, a claim dispatches (runs) every other held job in turn.
    serial = make()
    serial_ids = benchmark_jobs_held(run_ids=[serial.pk])
    assert len(serial_ids) == len(CATEGORIES)
    assert BenchmarkJob.objects.filter(pk__in=serial_ids, dispatched_at__isnull=True).count() == len(CATEGORIES)
    assert benchmark_jobs_run_locally(serial_ids, processes=1) == {"done": len(CATEGORIES)}

    parallel = make()
    parallel_ids = benchmark_jobs_held(run_ids=[parallel.pk])
    seen = []
    outcomes = benchmark_jobs_run_locally(parallel_ids, processes=2, on_done=lambda pk, o: seen.append((pk, o)))
    assert outcomes == {"done": len(CATEGORIES)}
    assert sorted(seen) == [(pk, "done") for pk in parallel_ids]

    for run in (serial, parallel):
        run.refresh_from_db()
        assert run.status == JobStatus.DONE and run.is_published, run.error_message
        assert all(job.celery_task_id.startswith("local-") for job in run.jobs.all())
    assert _values(parallel) == _values(serial) and len(_values(serial)) >= 3 * len(CATEGORIES)
    # Taken jobs are no longer held: a second call runs nothing.
    assert benchmark_jobs_held(run_ids=[serial.pk, parallel.pk]) == []
    assert benchmark_jobs_run_locally(parallel_ids, processes=2) == {}


@pytest.mark.django_db
def test_settings_snapshot_carries_overrides_and_the_database_in_use(settings, tmp_path):
    settings.DATASET_ROOTS = {"synthetic": str(tmp_path)}
    snapshot = settings_snapshot()
    assert snapshot["DATASET_ROOTS"] == {"synthetic": str(tmp_path)}
    assert snapshot["DATABASES"]["default"]["NAME"] == connection.settings_dict["NAME"]


@pytest.mark.django_db
def test_an_abandoned_job_fails_with_the_reason_and_ends_its_run(suite_root):
    (run,) = benchmark_runs_create(methods=["random"], categories=CATEGORIES[:1], config="tiny", dispatch=False)
    (pk,) = benchmark_jobs_held(run_ids=[run.pk])
    BenchmarkJob.objects.filter(pk=pk).update(progress_message=LOCAL_MESSAGE)
    _fail_abandoned(pk, "local-test", "BrokenProcessPool: a child process terminated abruptly")
    job = BenchmarkJob.objects.get(pk=pk)
    assert job.status == JobStatus.FAILED and "local worker process" in job.error_message
    assert "BrokenProcessPool" in job.error_detail
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and run.is_finished

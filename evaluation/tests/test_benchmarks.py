"""Re-benchmarks through the task path (Celery eager here; see test_benchmarks_worker.py for real workers).

Runs on SQLite and on PostgreSQL (``DATABASE_URL``); the numbers recorded must be the runner's.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from algorithms.runspec import RunSpec
from evaluation.tests.test_benchmarks_support import make_catalog, make_tiny_suite
from leaderboard.models import BenchmarkJob, BenchmarkRun, JobStatus, Method, Provenance, Result
from leaderboard.services.benchmark_runs import (
    BenchmarkRequestError,
    benchmark_config_load,
    benchmark_run_repeat,
    benchmark_runs_create,
    run_spec_build,
)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    make_tiny_suite(root, ("woven", "grid"))
    return root


@pytest.fixture
def catalog(db, settings, tiny_root):
    from leaderboard.services import method_sync_from_registry

    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tiny_root)}
    method_sync_from_registry()
    return make_catalog(["synthetic/grid", "synthetic/woven"])


def _results_as_output(run: BenchmarkRun, category_key: str) -> dict[str, dict[str, float]]:
    rows = Result.objects.filter(benchmark_run=run, category__key=category_key)
    recorded: dict[str, dict[str, float]] = {}
    for row in rows:
        recorded.setdefault(row.variant, {})[row.metric] = row.value
    return recorded


def test_rebenchmark_records_and_publishes_the_runners_numbers(catalog, tiny_root, django_capture_on_commit_callbacks):
    from algorithms.runner import run_category

    with django_capture_on_commit_callbacks(execute=True):
        (run,) = benchmark_runs_create(methods=["random"], suites=["tiny"], config="tiny", device="cpu")
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, run.error_message
    assert run.is_published and run.progress == 1.0 and run.error_message == ""
    assert run.config["spec"]["algorithm"] == "random" and run.config["config_name"] == "tiny"
    spec = RunSpec.from_json(run.config["spec"])
    assert spec.categories == ("synthetic/grid", "synthetic/woven") and spec.device == "cpu"
    assert run.config["fingerprint"] == spec.fingerprint()
    assert run.environment.get("torch") and run.finished_at is not None
    jobs = list(run.jobs.select_related("category"))
    assert [j.category.key for j in jobs] == ["synthetic/grid", "synthetic/woven"]
    for job in jobs:
        assert job.status == JobStatus.DONE and job.attempts == 1
        output = job.output
        assert output["schema"] == "vadi-run/1" and output["status"] == "ok"
        assert _results_as_output(run, job.category.key) == output["metrics"]
        # The same run in this process gives the same numbers: the worker recorded the runner's JSON.
        again = run_category(spec, job.category.key, roots={"synthetic": tiny_root})
        assert again["metrics"] == output["metrics"]
    results = Result.objects.filter(benchmark_run=run)
    assert results.count() == sum(len(v) for j in jobs for v in j.output["metrics"].values())
    assert all(r.provenance == Provenance.REPRODUCED and r.is_current for r in results)
    primary = {j.output["primary_variant"] for j in jobs}
    assert {r.variant for r in results if r.is_primary_variant} == primary


def test_a_second_run_supersedes_the_first_and_keeps_it_as_history(catalog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        (first,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    with django_capture_on_commit_callbacks(execute=True):
        (second,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    assert first.pk != second.pk
    assert Result.objects.filter(benchmark_run=first, is_current=True).count() == 0
    assert Result.objects.filter(benchmark_run=first).count() == Result.objects.filter(benchmark_run=second).count()
    assert Result.objects.filter(benchmark_run=second, is_current=False).count() == 0


def test_a_failing_category_fails_its_job_and_the_run_names_it(catalog, django_capture_on_commit_callbacks):
    make_catalog(["synthetic/grid", "synthetic/pill"], suite_key="broken")  # pill was never generated
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = benchmark_runs_create(methods=["random"], suites=["broken"], config="tiny")
    run.refresh_from_db()
    pill = run.jobs.get(category__key="synthetic/pill")
    assert pill.status == JobStatus.FAILED
    assert "pill" in pill.error_message  # the runner's own message, naming what is missing
    assert run.status == JobStatus.DONE and run.is_published
    assert "1 of 2 categories failed" in run.error_message and "synthetic/pill" in run.error_message
    assert not Result.objects.filter(benchmark_run=run, category__key="synthetic/pill").exists()
    assert Result.objects.filter(benchmark_run=run, category__key="synthetic/grid", is_current=True).exists()


def test_a_run_whose_every_category_fails_is_failed_and_publishes_nothing(db, settings, tmp_path):
    from leaderboard.services import method_sync_from_registry

    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tmp_path / "empty")}
    method_sync_from_registry()
    make_catalog(["synthetic/screw"], suite_key="nothing")
    from evaluation.tasks import run_benchmark_job

    # Without capturing on-commit callbacks the jobs are created but not yet enqueued: run one by hand.
    (run,) = benchmark_runs_create(methods=["random"], suites=["nothing"], config="tiny")
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED and run.progress_message == "0/1 categories finished; queued"

    run_benchmark_job.apply(args=[run.jobs.get().pk])
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and not run.is_published
    assert run.error_message.startswith("every category failed: synthetic/screw")
    assert not Result.objects.filter(benchmark_run=run).exists()


def test_redelivered_and_duplicate_tasks_write_results_once(catalog, django_capture_on_commit_callbacks):
    from evaluation.tasks import run_benchmark_job
    from leaderboard.services.benchmark_jobs import benchmark_job_claim

    with django_capture_on_commit_callbacks(execute=True):
        (run,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    job = run.jobs.get()
    before = list(Result.objects.filter(benchmark_run=run).order_by("pk").values_list("pk", "value"))
    # The broker redelivers the finished job's task: nothing happens.
    assert run_benchmark_job.apply(args=[job.pk]).get() == "skipped"
    assert list(Result.objects.filter(benchmark_run=run).order_by("pk").values_list("pk", "value")) == before

    # A running job with a fresh heartbeat belongs to its task: a second task cannot claim it.
    BenchmarkJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, celery_task_id="a", attempts=1,
                                                  heartbeat_at=timezone.now())  # fmt: skip
    assert benchmark_job_claim(job_id=job.pk, task_id="b") is None
    # Its worker died (stale heartbeat): the redelivered task may take it over, once.
    BenchmarkJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    BenchmarkRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING)
    claimed = benchmark_job_claim(job_id=job.pk, task_id="b")
    assert claimed is not None and claimed.attempts == 2 and claimed.celery_task_id == "b"
    assert benchmark_job_claim(job_id=job.pk, task_id="c") is None
    # ...unless the attempts are used up: then only the sweeper may decide (it fails the job).
    BenchmarkJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert benchmark_job_claim(job_id=job.pk, task_id="d") is None


def flaky_run_category(spec, category, **kwargs):
    """A runner whose first call hits a database outage (a transient error), then runs for real."""
    from algorithms.runner import run_category

    flaky_run_category.calls += 1
    if flaky_run_category.calls == 1:
        raise OperationalError("server closed the connection unexpectedly")
    return run_category(spec, category, **kwargs)


def failing_run_category(spec, category, **kwargs):
    raise TypeError("unexpected keyword argument 'bogus'")


def test_transient_errors_are_retried_and_other_errors_fail_the_job(catalog, settings,
                                                                   django_capture_on_commit_callbacks):  # fmt: skip
    flaky_run_category.calls = 0
    settings.VADI_BENCHMARK_RUNNER = f"{__name__}.flaky_run_category"
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    job = run.jobs.get()
    assert flaky_run_category.calls == 2
    assert job.status == JobStatus.DONE and job.attempts == 2

    settings.VADI_BENCHMARK_RUNNER = f"{__name__}.failing_run_category"
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    job = run.jobs.get()
    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert job.error_message == "unexpected keyword argument 'bogus'"  # the class name is for staff only
    assert "TypeError: unexpected keyword argument 'bogus'" in job.error_detail


def test_bad_requests_are_refused_before_anything_is_written(catalog):
    cases = [
        (dict(methods=["nope"], suites=["tiny"], config="tiny"), "unknown method(s): nope"),
        (dict(methods=["random"], suites=["nosuch"], config="tiny"), "unknown suite(s) or category key(s): nosuch"),
        (dict(methods=["random"], suites=["tiny"], config="nosuch"), "unknown config 'nosuch'"),
        (dict(methods=["random"], suites=["tiny"], config="tiny", device="gpu"),
         "'device' must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        (dict(methods=[], suites=["tiny"], config="tiny"), "choose at least one method"),
    ]
    Method.objects.create(key="external", name="External")
    cases.append((dict(methods=["external"], suites=["tiny"], config="tiny"), "have no registered algorithm"))
    for kwargs, message in cases:
        with pytest.raises(BenchmarkRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
            benchmark_runs_create(**kwargs)
    assert not BenchmarkRun.objects.exists() and not BenchmarkJob.objects.exists()


def test_config_files_load_as_run_specs_and_fail_clearly(tmp_path):
    config = benchmark_config_load("synthetic_cpu")
    assert config.name == "synthetic_cpu" and config.source == "algorithms/configs/synthetic_cpu.py"
    spec = config.spec_for("random")
    assert spec.epochs >= 1 and spec.train_time_limit_s > 0 and len(spec.categories) == 9
    bad = tmp_path / "bad.py"
    bad.write_text("models = [{'algorithm': 'random', 'epoch': 1}]\ncategories = ['synthetic']\n")
    with pytest.raises(BenchmarkRequestError, match=r"bad.py: models\[0\] \(random\): unknown key 'epoch' \(did you"):
        benchmark_config_load(bad)
    with pytest.raises(BenchmarkRequestError, match=r"unknown config '.*bad.py'; available: paper, synthetic_cpu"):
        benchmark_config_load(str(bad), allow_paths=False)
    two_seeds = tmp_path / "seeds.py"
    two_seeds.write_text("models = [{'algorithm': 'random'}]\ncategories = ['synthetic/woven']\nseeds = [0, 1]\n")
    spec = run_spec_build(benchmark_config_load(two_seeds), "random", categories=["synthetic/woven"], device="cpu")
    assert spec.seeds == (0, 1)  # several seeds are run (their mean is recorded)
    with pytest.raises(BenchmarkRequestError, match=r"'seeds' repeats a seed: \[3, 3\]"):
        run_spec_build(config, "random", categories=["synthetic/woven"], device="cpu", seeds=[3, 3])


def test_a_run_of_several_seeds_records_the_mean_and_every_seeds_value(
    catalog, tiny_root, django_capture_on_commit_callbacks
):
    import numpy as np

    from algorithms.runner import run_category

    with django_capture_on_commit_callbacks(execute=True):
        (run,) = benchmark_runs_create(
            methods=["fastflow"], categories=["synthetic/woven"], config="tiny", device="cpu", seeds=[0, 1]
        )
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, run.error_message
    spec = RunSpec.from_json(run.config["spec"])
    assert spec.seeds == (0, 1)
    per_seed = [run_category(spec, "synthetic/woven", seed=s, roots={"synthetic": tiny_root}) for s in spec.seeds]
    variant = per_seed[0]["primary_variant"]
    for row in Result.objects.filter(benchmark_run=run, variant=variant):
        values = [p["metrics"][variant][row.metric] for p in per_seed]
        assert row.extra["seeds"] == [0, 1] and row.extra["seed_values"] == values
        assert row.value == pytest.approx(float(np.mean(values)), abs=1e-12)
    assert len({p["metrics"][variant]["pixel_auroc"] for p in per_seed}) == 2  # the seeds differ


def test_a_repeat_runs_the_recorded_spec(catalog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        (first,) = benchmark_runs_create(methods=["random"], categories=["synthetic/woven"], config="tiny")
    with django_capture_on_commit_callbacks(execute=True):
        again = benchmark_run_repeat(run=first)
    again.refresh_from_db()
    assert again.pk != first.pk and again.config == first.config and again.status == JobStatus.DONE
    BenchmarkRun.objects.filter(pk=first.pk).update(config={"config_name": "tiny", "algorithm": "random"})
    first.refresh_from_db()
    with pytest.raises(BenchmarkRequestError, match=rf"run {first.pk} cannot be repeated as it was recorded"):
        benchmark_run_repeat(run=first)


@pytest.mark.django_db(transaction=True)
def test_rebenchmark_command_runs_and_reports(catalog, capsys):
    call_command(
        "rebenchmark", "--methods", "random", "--suites", "tiny", "--config", "tiny", "--wait", "--timeout", "120"
    )
    out = capsys.readouterr().out
    run = BenchmarkRun.objects.get()
    assert f"run {run.pk}: random on 2 categories, config tiny" in out
    assert f"run {run.pk} random: done, published=True 2/2 categories done" in out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="give --methods"):
        call_command("rebenchmark", "--suites", "tiny")


def test_staff_api_starts_runs_for_admins_only(catalog, django_user_model, django_capture_on_commit_callbacks):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    url = "/api/v1/staff/benchmark-runs/"
    body = {"methods": ["random"], "suites": ["tiny"], "config": "tiny"}
    api = APIClient()
    assert api.post(url, body, format="json").status_code == 401
    user = django_user_model.objects.create_user("bob", password="x")
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert api.post(url, body, format="json").status_code == 403
    admin = django_user_model.objects.create_user("root", password="x", is_staff=True)
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin).key}")
    bad = api.post(url, {**body, "config": "../../etc/passwd"}, format="json")  # not a config name at all
    assert bad.status_code == 400 and bad.json()["error"]["details"]["config"] == [
        "Enter a config name: lower-case letters, digits and underscores."
    ], bad.json()
    unknown = api.post(url, {**body, "config": "no_such_config"}, format="json")  # well-formed, not shipped
    assert unknown.status_code == 400 and "unknown config" in str(unknown.json()), unknown.json()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url, body, format="json")
    assert response.status_code == 201, response.content
    (created,) = response.json()
    assert created["method"] == "random" and [j["category"] for j in created["jobs"]] == ["synthetic/grid",
                                                                                         "synthetic/woven"]  # fmt: skip
    detail = api.get(f"{url}{created['id']}/").json()
    assert detail["status"] == "done" and detail["is_published"] and detail["progress"] == 1.0
    assert BenchmarkRun.objects.get(pk=created["id"]).requested_by == admin

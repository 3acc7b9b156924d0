"""The demo path: ``setup_demo`` benchmarks real algorithms via the re-benchmark path; the home page shows them."""

from __future__ import annotations

import statistics

import pytest
from django.core.management import call_command

from leaderboard.models import BenchmarkRun, JobStatus, Provenance, Result

DEMO_ARGS = ["--config", "tiny", "--methods", "random,patchcore", "--image-size", "64", "--n-train", "4",
             "--n-test-good", "2", "--n-test-defect", "2",
             "--blind-n-train", "4", "--blind-n-test-good", "2", "--blind-n-test-defect", "3"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_setup_demo_publishes_reproduced_numbers_and_is_idempotent(settings, tmp_path, client, capsys):
    from algorithms.data import BLIND_CATEGORIES, SYNTHETIC_CATEGORIES

    root = tmp_path / "synthetic"
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(root), "blind": str(tmp_path / "blind")}
    settings.VAR_DIR = tmp_path / "var"
    call_command("setup_demo", *DEMO_ARGS)
    out = capsys.readouterr().out
    assert "generating the synthetic suite" in out and "done in" in out and "Blind board" in out
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SYNTHETIC_CATEGORIES)

    # The library's methods on the blind suite too (the same re-benchmark path, its own runs).
    blind_runs = list(BenchmarkRun.objects.filter(suite__key="blind").select_related("method").order_by("method__key"))
    assert [r.method.key for r in blind_runs] == ["patchcore", "random"]
    for run in blind_runs:
        assert run.status == JobStatus.DONE and run.is_published, run.error_message
        assert run.jobs.filter(status=JobStatus.DONE).count() == len(BLIND_CATEGORIES)
    blind_page = client.get("/blind/").content.decode()
    assert all(run.method.name in blind_page for run in blind_runs)
    # No PL explanation (anomaly by anomaly, per defect type) is kept for the blind suite.
    from leaderboard.models import BenchmarkJob, Localisation

    assert not Localisation.objects.filter(result__category__dataset__key="blind").exists()
    assert not any("localisation" in job.output for job in BenchmarkJob.objects.filter(run__in=blind_runs))

    runs = list(BenchmarkRun.objects.filter(suite__key="synthetic").select_related("method").order_by("method__key"))
    assert [r.method.key for r in runs] == ["patchcore", "random"]
    for run in runs:
        assert run.status == JobStatus.DONE and run.is_published and not run.error_message, run.error_message
        assert run.jobs.filter(status=JobStatus.DONE).count() == len(SYNTHETIC_CATEGORIES)
        assert run.config["config_name"] == "tiny" and run.suite.key == "synthetic"

    response = client.get("/?suite=synthetic")
    assert response.status_code == 200
    page = response.content.decode()
    for run in runs:
        assert run.method.name in page
        pl = [
            r.value
            for r in Result.objects.filter(benchmark_run=run, metric="pl", is_primary_variant=True, is_current=True)
            if r.provenance == Provenance.REPRODUCED
        ]
        assert len(pl) == len(SYNTHETIC_CATEGORIES)
        assert f"{statistics.fmean(pl):.3f}" in page  # the reproduced mean PL is on the page

    # Running it again does nothing new: same runs, same results.
    before = Result.objects.count()
    call_command("setup_demo", *DEMO_ARGS)
    assert "synthetic suite present" in capsys.readouterr().out
    assert BenchmarkRun.objects.count() == 4 and Result.objects.count() == before
    # --force redoes the work as new runs; the old ones stay as history.
    call_command("setup_demo", *DEMO_ARGS, "--methods", "random", "--force")
    assert BenchmarkRun.objects.count() == 6
    assert Result.objects.filter(benchmark_run=runs[1], is_current=True).count() == 0

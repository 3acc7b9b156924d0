"""A benchmark job runs on its worker's device (VADI_DEVICE) and stops cleanly at its time limit."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from evaluation.services.benchmarks import benchmark_job_execute
from evaluation.tests.test_benchmarks_support import make_catalog
from leaderboard.models import BenchmarkJob, JobStatus
from leaderboard.services.benchmark_runs import benchmark_runs_create


@pytest.fixture
def job(db, django_capture_on_commit_callbacks):
    """A queued job of the random baseline (never sent: the enqueue is captured, not run)."""
    from leaderboard.services import method_sync_from_registry

    method_sync_from_registry()
    make_catalog(["synthetic/woven"])

    def create(device: str) -> BenchmarkJob:
        with django_capture_on_commit_callbacks(execute=False):
            (run,) = benchmark_runs_create(methods=["random"], suites=["tiny"], config="tiny", device=device)
        return run.jobs.get()

    return create


class Recorder:
    """A runner that records the device it was given, then fails the job (nothing to record)."""

    def __init__(self) -> None:
        self.devices: list[str] = []

    def __call__(self, spec, category, **kwargs) -> dict:
        self.devices.append(spec.device)
        return {"schema": "vadi-run/1", "status": "failed", "error": "recorded", "category": category}


def test_auto_means_the_workers_device_from_the_environment(job, settings):
    settings.VADI_DEVICE = "cuda:7"
    runner = Recorder()
    benchmark_job_execute(job_id=job("auto").pk, task_id="t1", runner=runner)
    benchmark_job_execute(job_id=job("cpu").pk, task_id="t2", runner=runner)  # an explicit device is kept
    assert runner.devices == ["cuda:7", "cpu"]


def test_without_vadi_device_auto_is_cuda_0_when_visible_else_cpu(job, settings):
    import torch

    settings.VADI_DEVICE = ""
    runner = Recorder()
    benchmark_job_execute(job_id=job("auto").pk, task_id="t1", runner=runner)
    assert runner.devices == ["cuda:0" if torch.cuda.is_available() else "cpu"]


def test_a_job_stopped_at_the_soft_time_limit_fails_saying_so(job, settings):
    settings.VADI_BENCHMARK_SOFT_TIME_LIMIT_S = 10800

    def too_slow(spec, category, **kwargs):
        raise SoftTimeLimitExceeded()

    queued = job("cpu")
    assert benchmark_job_execute(job_id=queued.pk, task_id="t1", runner=too_slow) == "failed"
    queued.refresh_from_db()
    assert queued.status == JobStatus.FAILED
    assert queued.error_message == (
        "stopped: the job ran longer than the benchmark time limit (10800 s); a shorter training budget "
        "(train_time_limit_s) or a higher limit lets it finish"
    )
    assert "VADI_BENCHMARK_SOFT_TIME_LIMIT_S=10800" in queued.error_detail  # staff only
    queued.run.refresh_from_db()
    assert queued.run.status == JobStatus.FAILED and "benchmark time limit" in queued.run.error_message

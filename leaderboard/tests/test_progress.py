"""The command-line progress bar over re-benchmark jobs (setup_demo, rebenchmark --wait)."""

from __future__ import annotations

import io
import time

import pytest

from leaderboard.management.commands._progress import job_progress_bar
from leaderboard.models import BenchmarkJob, JobStatus
from leaderboard.selectors.jobs import benchmark_job_progress

from .factories import BenchmarkRunFactory


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _jobs(catalog, statuses):
    run = BenchmarkRunFactory(status=JobStatus.RUNNING, progress=0.0)
    categories = catalog["categories"]["mvtec"] + catalog["categories"]["visa"]
    for category, status in zip(categories, statuses, strict=False):
        BenchmarkJob.objects.create(run=run, category=category, status=status, progress_message="epoch 1/2")
    return run


@pytest.mark.django_db
def test_job_progress_counts_finished_jobs_and_names_the_running_one(catalog):
    run = _jobs(catalog, [JobStatus.DONE, JobStatus.FAILED, JobStatus.RUNNING, JobStatus.QUEUED])
    finished, total, message = benchmark_job_progress(run_ids=[run.pk])
    assert (finished, total) == (2, 4)
    assert message.startswith(run.method.key) and message.endswith("epoch 1/2")
    assert benchmark_job_progress(run_ids=[run.pk + 1]) == (0, 0, "")


@pytest.mark.django_db(transaction=True)  # the bar polls from its own thread and connection
def test_progress_bar_draws_k_of_n_on_a_terminal_and_nothing_elsewhere(catalog):
    run = _jobs(catalog, [JobStatus.DONE, JobStatus.RUNNING, JobStatus.QUEUED])
    terminal = Terminal()
    with job_progress_bar(run_ids=[run.pk], poll_s=0.05, stream=terminal):
        time.sleep(0.5)
        BenchmarkJob.objects.filter(run=run).update(status=JobStatus.DONE)
        time.sleep(0.5)
    drawn = terminal.getvalue()
    assert "1/3" in drawn and "3/3" in drawn and "job" in drawn
    log = io.StringIO()  # not a terminal: quiet
    with job_progress_bar(run_ids=[run.pk], poll_s=0.05, stream=log):
        time.sleep(0.2)
    assert log.getvalue() == ""

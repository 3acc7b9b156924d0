"""Queues by kind of work: the routes, the time limits and the visibility timeout the settings build.

The behaviour on real workers (an upload scored while a re-benchmark holds the benchmark queue) is
``evaluation/tests/test_queues_worker.py``; the fair dispatch is ``leaderboard/tests/test_dispatch.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from config.queues import BENCHMARKS, HOUSEKEEPING, KINDS, SCORING, WORK_OF_TASK, Work, queue_setting, task_routes
from leaderboard import tasknames

ROOT = Path(__file__).resolve().parent.parent


def _settings_in_a_fresh_process(**env: str) -> dict:
    """The Celery configuration that ``config.settings`` builds under ``env`` (a fresh interpreter)."""
    code = (
        "import json, django, os\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'\n"
        "django.setup()\n"
        "from django.conf import settings as s\n"
        "from config.celery import app\n"
        "app.loader.import_default_modules()\n"
        "tasks = {n: [t.soft_time_limit, t.time_limit] for n, t in app.tasks.items() if n.startswith('evaluation.')}\n"
        "print(json.dumps({'routes': s.CELERY_TASK_ROUTES, 'default': s.CELERY_TASK_DEFAULT_QUEUE,\n"
        "  'visibility': s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], 'tasks': tasks}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VADI_QUEUE_", "VADI_BENCHMARK_"))}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_task_has_a_kind_of_work_and_every_kind_a_task():
    from config.celery import app

    app.loader.import_default_modules()
    registered = {name for name in app.tasks if name.startswith("evaluation.")}
    assert set(WORK_OF_TASK) == registered
    assert set(WORK_OF_TASK.values()) == set(KINDS)
    assert WORK_OF_TASK[tasknames.SCORE_SUBMISSION_TASK] == SCORING
    assert WORK_OF_TASK[tasknames.RUN_BENCHMARK_JOB_TASK] == BENCHMARKS
    assert WORK_OF_TASK[tasknames.SWEEP_STALE_JOBS_TASK] == HOUSEKEEPING


def test_the_settings_route_each_task_to_its_kinds_queue_with_its_kinds_time_limits():
    built = _settings_in_a_fresh_process()
    assert built["routes"] == {
        tasknames.SCORE_SUBMISSION_TASK: {"queue": "scoring"},
        tasknames.HEALTH_CHECK_TASK: {"queue": "scoring"},
        tasknames.RUN_BENCHMARK_JOB_TASK: {"queue": "benchmarks"},
        tasknames.SWEEP_STALE_JOBS_TASK: {"queue": "housekeeping"},
    }
    assert built["default"] == "scoring"
    # What a worker enforces: the task objects carry their kind's limits (CELERY_TASK_ANNOTATIONS).
    assert built["tasks"] == {
        tasknames.SCORE_SUBMISSION_TASK: [30 * 60, 35 * 60],
        tasknames.HEALTH_CHECK_TASK: [30 * 60, 35 * 60],
        tasknames.RUN_BENCHMARK_JOB_TASK: [3 * 3600, 3 * 3600 + 600],
        tasknames.SWEEP_STALE_JOBS_TASK: [120, 180],
    }


def test_queue_names_and_limits_come_from_the_environment():
    built = _settings_in_a_fresh_process(
        VADI_QUEUE_BENCHMARKS="gpu-a100", VADI_BENCHMARK_SOFT_TIME_LIMIT_S="36000", VADI_BENCHMARK_TIME_LIMIT_S="37000"
    )
    assert built["routes"][tasknames.RUN_BENCHMARK_JOB_TASK] == {"queue": "gpu-a100"}
    assert built["tasks"][tasknames.RUN_BENCHMARK_JOB_TASK] == [36000, 37000]
    # Redis must not redeliver a task that is still running: above the longest hard limit + retry wait.
    assert built["visibility"] >= 37000 + 300


def test_the_visibility_timeout_outlasts_every_task_and_its_retry_countdown():
    from evaluation.tasks.jobs import MAX_COUNTDOWN_S

    longest = max(work.time_limit_s for work in settings.VADI_WORK.values())
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] >= longest + MAX_COUNTDOWN_S


def test_the_sweeper_runs_on_the_housekeeping_queue_and_a_late_sweep_is_dropped():
    (entry,) = settings.CELERY_BEAT_SCHEDULE.values()
    assert settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": settings.VADI_WORK[HOUSEKEEPING].queue}
    assert entry["options"]["expires"] == entry["schedule"] == float(settings.VADI_SWEEP_INTERVAL_S)


@pytest.mark.parametrize(
    ("work", "message"),
    [
        (lambda: Work(queue="", soft_time_limit_s=1, time_limit_s=2), "a queue name must not be empty"),
        (lambda: Work(queue="q", soft_time_limit_s=60, time_limit_s=60), r"0 < soft time limit \(60 s\) < hard"),
        (lambda: task_routes({SCORING: "a", BENCHMARKS: "b"}), "no queue named for: housekeeping"),
        (lambda: queue_setting("gpu"), "unknown kind of work 'gpu'"),
    ],
)
def test_bad_queue_configuration_is_refused_with_a_clear_message(work, message):
    with pytest.raises(ValueError, match=message):
        work()


def test_a_soft_limit_above_the_hard_limit_stops_the_settings_with_the_reason():
    code = "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup()"
    env = {**os.environ, "VADI_SCORING_SOFT_TIME_LIMIT_S": "600", "VADI_SCORING_TIME_LIMIT_S": "300"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "queue 'scoring': need 0 < soft time limit (600 s) < hard time limit (300 s)" in proc.stderr

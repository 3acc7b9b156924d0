"""No upload is lost, and crafted archives cannot beat the quota: a real worker on a Redis of the test's own.

The module starts its own ``redis-server`` on a free port (never the machine's, which other
sessions use) and a real Celery worker on it. The broker is stopped while a bundle is uploaded,
and started again; a message is lost on purpose (sent to a queue no worker reads). Runs when
``CELERY_BROKER_URL`` is set (CI sets it) on a database a worker process can share.
"""

# The shared fixtures are imported from test_submissions; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from evaluation.tests.bundle_corpus import bad_bundle, good_bundle, write_valid
from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    SUITE_KEY,
    expected_values,
    honest_categories,
    results_of,
    spec_for,
    tiny_data_root,
    tiny_suite,
    user,
)
from leaderboard.models import JobStatus, Result, Submission
from leaderboard.services.sweeper import jobs_sweep
from tests.workers import (
    RedisServer,
    WorkerProcess,
    app_on_broker,
    app_on_queue,
    require_broker,
    require_worker_database,
)

API = "/api/v1/submissions/"
pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def own_broker_worker(django_db_setup, django_db_blocker, tiny_data_root, tmp_path_factory):
    """A Redis of this module's own, and a real worker on it whose dataset root is the generated ground truth."""
    require_broker()
    from config.celery import app

    with django_db_blocker.unblock():
        db_url = require_worker_database()
    redis = RedisServer(tmp_path_factory.mktemp("own-redis"))
    queue = f"vadi-uploads-{os.getpid()}"
    media = tmp_path_factory.mktemp("uploads-media")
    worker = WorkerProcess(
        name=queue,
        queue=queue,
        db_url=db_url,
        broker=redis.url,
        log_path=tmp_path_factory.mktemp("uploads-worker") / "worker.log",
        env={"VADI_SYNTHETIC_ROOT": str(tiny_data_root), "DJANGO_MEDIA_ROOT": str(media)},
    )
    try:
        with app_on_broker(app, redis.url), app_on_queue(app, queue=queue, broker=redis.url):
            worker.wait_ready(app)
        yield SimpleNamespace(app=app, redis=redis, worker=worker, queue=queue, media=media)
    finally:
        worker.stop()
        redis.stop()


@pytest.fixture
def on_own_broker(own_broker_worker, settings):
    """The Celery app sends to the module's worker through the module's Redis, for this test only."""
    settings.MEDIA_ROOT = own_broker_worker.media  # where the worker reads archives
    env = own_broker_worker
    with app_on_broker(env.app, env.redis.url), app_on_queue(env.app, queue=env.queue, broker=env.redis.url):
        yield env
    if not env.redis.is_up():
        env.redis.start()


def _wait_finished(pk: int, *, timeout: float = 120.0) -> Submission:
    deadline = time.monotonic() + timeout
    while True:
        submission = Submission.objects.get(pk=pk)
        if submission.is_finished:
            return submission
        if time.monotonic() > deadline:
            raise AssertionError(f"submission {pk} still {submission.status} after {timeout:.0f} s")
        time.sleep(0.2)


def _post(client: APIClient, path, **fields):
    upload = SimpleUploadedFile("bundle.zip", path.read_bytes(), content_type="application/zip")
    return client.post(API, {**fields, "archive": upload}, format="multipart")


@pytest.mark.django_db(transaction=True)
def test_an_upload_while_the_broker_is_down_is_accepted_kept_and_scored_once_when_it_returns(
    on_own_broker, tiny_suite, tiny_data_root, tmp_path, settings
):
    categories = honest_categories(tiny_data_root, seed=21)
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), categories)
    client = APIClient()
    client.force_authenticate(user())
    on_own_broker.redis.stop()
    started = time.monotonic()
    response = _post(client, path, suite=SUITE_KEY)
    waited = time.monotonic() - started
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["progress_message"] == "accepted, waiting for a worker"
    assert waited < 10, f"the upload waited {waited:.1f} s for the broker"  # not the ~20 s of reconnect loops
    submission = Submission.objects.get(pk=body["id"])
    assert submission.dispatched_at is None and submission.archive.name  # kept, marked as not sent
    assert not jobs_sweep().dispatched  # still down: nothing sent, nothing lost
    assert Submission.objects.get(pk=submission.pk).dispatched_at is None

    on_own_broker.redis.start()  # the broker returns (empty: nothing was queued while it was away)
    # The worker reconnects and sends what waits (evaluation.tasks.connect); no sweep needed.
    done = _wait_finished(submission.pk)
    assert "sent the waiting submissions" in on_own_broker.worker.log()
    assert done.status == JobStatus.DONE, f"{done.error_message}\n{on_own_broker.worker.log()[-3000:]}"
    assert done.attempts == 1 and results_of(done) == expected_values(tiny_data_root, categories)
    first = sorted(Result.objects.filter(submission=done).values_list("pk", "value"))
    assert len(first) == 8
    # Retried as often as one likes: every duplicate finds it done; one result set.
    from leaderboard.services.jobs import job_publish

    for n in range(3):
        assert job_publish("evaluation.score_submission", done.pk, task_id=f"duplicate-{done.pk}-{n}")
    assert not jobs_sweep().dispatched
    deadline = time.monotonic() + 60
    while on_own_broker.worker.log().count(f"duplicate-{done.pk}-") < 6 and time.monotonic() < deadline:
        time.sleep(0.2)  # each duplicate is received and succeeds ("skipped")
    assert sorted(Result.objects.filter(submission=done).values_list("pk", "value")) == first
    assert Submission.objects.get(pk=done.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_lost_queued_message_is_sent_again_by_the_sweeper(on_own_broker, tiny_suite, tiny_data_root, tmp_path,
                                                            settings):  # fmt: skip
    settings.VADI_SCORING_RESEND_AFTER_S = 1
    categories = honest_categories(tiny_data_root, seed=22)
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), categories)
    client = APIClient()
    client.force_authenticate(user())
    env = on_own_broker
    # The message goes where no worker reads: as good as lost (a flushed broker, a dropped message).
    with app_on_queue(env.app, queue=f"{env.queue}-nowhere", broker=env.redis.url):
        response = _post(client, path, suite=SUITE_KEY)
    assert response.status_code == 201
    submission = Submission.objects.get(pk=response.json()["id"])
    assert submission.dispatched_at is not None  # it was sent...
    time.sleep(1.5)
    assert Submission.objects.get(pk=submission.pk).status == JobStatus.QUEUED  # ...and never picked up
    report = jobs_sweep()
    assert report.resent == [f"submission {submission.pk}"], report
    done = _wait_finished(submission.pk)
    assert done.status == JobStatus.DONE, f"{done.error_message}\n{env.worker.log()[-3000:]}"
    assert done.attempts == 1 and done.celery_task_id != submission.celery_task_id  # sent again, fresh task id
    assert results_of(done) == expected_values(tiny_data_root, categories)
    assert Result.objects.filter(submission=done).count() == 8


@pytest.mark.django_db(transaction=True)
def test_the_quota_holds_against_crafted_archives_scored_by_the_worker(on_own_broker, tiny_suite, tiny_data_root,
                                                                       tmp_path, settings):  # fmt: skip
    """Archives that pass the request's checks and fail (or pass) on the worker: never more than the limit."""
    settings.VADI_SUBMISSIONS_PER_DAY = 2
    spec = spec_for(tiny_data_root)
    refused = [  # refused in the request: they never reach the worker nor the quota
        bad_bundle(name).build(tmp_path / f"{name}.zip", spec)
        for name in ("manifest_deep_nesting", "nul_in_name", "nul_in_local_name_only", "manifest_wrong_suite")
    ]
    archives = [
        *refused,
        bad_bundle("nan_in_maps").build(tmp_path / "nan.zip", spec),
        *refused,
        bad_bundle("pickled_object_array").build(tmp_path / "pickle.zip", spec),
        good_bundle("float32_extremes").build(tmp_path / "extremes.zip", spec),
        bad_bundle("nan_in_maps").build(tmp_path / "nan2.zip", spec),
    ]
    owner = user()
    client = APIClient()
    client.force_authenticate(owner)
    codes = []
    for path in archives:
        response = _post(client, path, suite=SUITE_KEY)
        codes.append(response.status_code)
        if response.status_code == 201:
            _wait_finished(response.json()["id"])
    assert codes == [400] * 4 + [201] + [400] * 4 + [201, 429, 429], codes
    failed = Submission.objects.filter(owner=owner)
    assert failed.count() == 2 and all(s.status == JobStatus.FAILED and not s.quota_exempt for s in failed)
    assert all(s.archive.name == "" for s in failed)
    assert not [p for s in failed for p in on_own_broker.media.rglob(f"*{s.uuid}*")]  # every failed archive deleted

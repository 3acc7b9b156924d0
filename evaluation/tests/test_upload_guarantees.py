"""The upload's guarantees, through the upload API and the form (tasks eager, in-process).

* Cheap checks in the request: a hostile or mismatched archive is a 400 naming what to change,
  and writes nothing (no submission, no method, no file).
* The quota: a failure caused by the upload's content counts, whichever way it fails; only our
  infrastructure's failures are exempt.
* A failed submission leaves nothing behind: its archive is deleted, and the method it created
  is not shown to anyone else (pages, API, exports).
* Nothing a non-staff user reads names a server path, a setting, a traceback or an exception class.

The same with a real worker, the broker down and a lost message: ``test_upload_guarantees_worker.py``.
"""

# The shared fixtures are imported from test_submissions; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from evaluation.tests.bundle_corpus import BAD_BUNDLES, bad_bundle, good_bundle, write_valid
from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    LIMIT_SETTINGS,
    SUITE_KEY,
    honest_categories,
    spec_for,
    tiny_data_root,
    tiny_suite,
    user,
)
from leaderboard.failures import is_public
from leaderboard.models import JobStatus, Method, Result, Submission, Suite

API = "/api/v1/submissions/"
#: What a message for a non-staff reader never holds (besides paths, checked by ``is_public``).
INTERNAL = re.compile(r"Traceback|File \"|[A-Z][a-z]+(?:Error|Exception|Exceeded)\b|\bVADI_[A-Z_]+|DJANGO_|/tmp/|/srv/")


def _upload(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile("bundle.zip", path.read_bytes(), content_type="application/zip")


def _client(owner) -> APIClient:
    client = APIClient()
    client.force_authenticate(owner)
    return client


def _post(client: APIClient, path: Path, capture, **fields):
    with capture(execute=True):
        return client.post(API, {**fields, "archive": _upload(path)}, format="multipart")


def _files(settings) -> list[Path]:
    return sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())


def _assert_public(text: str) -> None:
    assert is_public(text, own_input=True), text
    assert not INTERNAL.search(text), text


#: Every corpus case the server's settings can express; the upload API meets each one.
API_CASES = [case for case in BAD_BUNDLES if set(case.limits) <= set(LIMIT_SETTINGS)]


@pytest.mark.parametrize("case", API_CASES, ids=[case.name for case in API_CASES])
def test_every_hostile_upload_is_refused_or_fails_counted_and_leaves_nothing(
    case, tiny_suite, tiny_data_root, tmp_path, settings, django_capture_on_commit_callbacks
):
    for limit, value in case.limits.items():
        setattr(settings, LIMIT_SETTINGS[limit], value)
    owner = user()
    methods_before = set(Method.objects.values_list("pk", flat=True))
    path = case.build(tmp_path / f"{case.name}.zip", spec_for(tiny_data_root))
    response = _post(_client(owner), path, django_capture_on_commit_callbacks, suite=SUITE_KEY)
    body = response.content.decode()
    _assert_public(body)
    if response.status_code in (400, 413):  # refused in the request: nothing written
        message = response.json()["error"]["message"]
        known = ("Invalid bundle: ", "must be a zip archive", "file is empty", "larger than the limit")
        assert re.search(case.message, message) or any(words in message for words in known), message
        assert not Submission.objects.exists()
        assert set(Method.objects.values_list("pk", flat=True)) == methods_before
        assert _files(settings) == []
        return
    assert response.status_code == 201, body
    submission = Submission.objects.get()
    assert submission.status == JobStatus.FAILED
    assert submission.error_message.startswith("Invalid bundle: ")
    assert re.search(case.message, submission.error_message), submission.error_message
    _assert_public(submission.error_message)
    assert not submission.quota_exempt  # the upload's own fault: it counts
    assert not Result.objects.filter(submission=submission).exists()
    assert submission.archive.name == "" and _files(settings) == []  # the archive is deleted


#: Cases the request refuses, and what its 400 says (the worker's wording where the request has its own).
REQUEST_REFUSALS = {
    "manifest_deep_nesting": None,
    "nul_in_name": None,
    "nul_in_local_name_only": None,
    "manifest_wrong_suite": r"suite: Invalid bundle: manifest\.json: the manifest says suite 'other' but the form says "
    r"'tinysub': choose suite 'other', or upload a bundle made for suite 'tinysub'",
    "not_a_zip": r"archive: the bundle must be a zip archive",
}


@pytest.mark.parametrize("name", sorted(REQUEST_REFUSALS))
def test_structural_problems_are_refused_in_the_request(name, tiny_suite, tiny_data_root, tmp_path, settings,
                                                       django_capture_on_commit_callbacks):  # fmt: skip
    case = bad_bundle(name)
    path = case.build(tmp_path / f"{name}.zip", spec_for(tiny_data_root))
    response = _post(_client(user()), path, django_capture_on_commit_callbacks, suite=SUITE_KEY)
    assert response.status_code == 400, response.content
    expected = REQUEST_REFUSALS[name] or case.message
    assert re.search(expected, response.json()["error"]["message"]), response.json()
    assert not Submission.objects.exists() and _files(settings) == []


def _other_suite(tiny_data_root) -> Suite:
    """A second suite on the same categories: a bundle made for it is not one for ``SUITE_KEY``."""
    suite, _ = Suite.objects.get_or_create(key="othersuite", defaults={"name": "Other suite"})
    suite.categories.set(Suite.objects.get(key=SUITE_KEY).categories.all())
    return suite


def test_wrong_suite_is_a_400_that_says_what_to_change_and_an_empty_suite_comes_from_the_manifest(
    tiny_suite, tiny_data_root, tmp_path, settings, django_capture_on_commit_callbacks
):
    _other_suite(tiny_data_root)
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), honest_categories(tiny_data_root, seed=2))
    client = _client(user())
    response = _post(client, path, django_capture_on_commit_callbacks, suite="othersuite", method="Corpus method")
    assert response.status_code == 400
    (message,) = response.json()["error"]["details"]["suite"]
    assert message == (
        f"Invalid bundle: manifest.json: the manifest says suite '{SUITE_KEY}' but the form says 'othersuite': "
        f"choose suite '{SUITE_KEY}', or upload a bundle made for suite 'othersuite'"
    )
    assert not Submission.objects.exists() and not Method.objects.filter(name="Corpus method").exists()
    # no suite and no method: both are the manifest's, and the bundle is scored
    response = _post(client, path, django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.content
    submission = Submission.objects.get()
    assert submission.suite.key == SUITE_KEY and submission.method.name == "Corpus method"
    assert submission.status == JobStatus.DONE, submission.error_message


def test_the_form_defaults_to_the_manifests_suite_and_shows_a_mismatch_on_the_page(
    tiny_suite, tiny_data_root, tmp_path, settings, django_capture_on_commit_callbacks
):
    _other_suite(tiny_data_root)
    owner = user()
    client = Client()
    client.force_login(owner)
    page = client.get("/submit/")
    assert page.status_code == 200
    selected = re.search(r'<select name="suite"[^>]*>.*?</select>', page.content.decode(), re.S).group(0)
    assert re.search(r'<option value="" selected>', selected), selected  # the default: the manifest's suite
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), honest_categories(tiny_data_root, seed=4))
    response = client.post("/submit/", {"suite": "othersuite", "visibility": "public", "archive": _upload(path)})
    assert response.status_code == 400
    text = response.content.decode()
    assert "the manifest says suite &#x27;tinysub&#x27; but the form says &#x27;othersuite&#x27;" in text
    assert "choose suite &#x27;tinysub&#x27;" in text and not Submission.objects.exists()
    # The form's defaults (suite and method empty) score the bundle, whatever suite it was made for.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/submit/", {"suite": "", "method": "", "visibility": "public", "archive": _upload(path)}
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    submission = Submission.objects.get()
    assert submission.status == JobStatus.DONE, submission.error_message
    assert "Server error" not in submission.progress_message + submission.error_message


def test_crafted_uploads_never_exceed_the_daily_quota(tiny_suite, tiny_data_root, tmp_path, settings, monkeypatch,
                                                      django_capture_on_commit_callbacks):  # fmt: skip
    """Each kind of crafted archive, uploaded again and again: at most the daily limit is ever accepted."""
    settings.VADI_SUBMISSIONS_PER_DAY = 3
    owner = user()
    client = _client(owner)
    spec = spec_for(tiny_data_root)
    archives = {
        name: bad_bundle(name).build(tmp_path / f"{name}.zip", spec)
        for name in (
            "manifest_deep_nesting",
            "nul_in_name",
            "manifest_wrong_suite",
            "nan_in_maps",
            "pickled_object_array",
        )
    }
    archives["float32_extremes"] = good_bundle("float32_extremes").build(tmp_path / "extremes.zip", spec)
    codes = {}
    for round_ in range(2):
        for name, path in archives.items():
            codes[name, round_] = _post(client, path, django_capture_on_commit_callbacks, suite=SUITE_KEY).status_code
    accepted = [key for key, code in codes.items() if code == 201]
    assert len(accepted) == 3, codes
    assert {code for code in codes.values()} <= {201, 400, 429}
    assert Submission.objects.filter(owner=owner).count() == 3
    # The structural ones were refused in the request without using the quota; the content ones failed and counted.
    assert all(codes[name, r] == 400 for name in ("manifest_deep_nesting", "nul_in_name", "manifest_wrong_suite")
               for r in range(2))  # fmt: skip
    counted = Submission.objects.filter(owner=owner, quota_exempt=False)
    assert counted.count() == 3 and counted.filter(status=JobStatus.FAILED).count() >= 2


def test_a_crash_the_validator_did_not_name_counts_and_shows_no_internals(
    tiny_suite, tiny_data_root, tmp_path, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """A content failure that escapes the validator (here: the scorer raising) is not a free attempt."""
    import evaluation.scoring

    settings.VADI_SUBMISSIONS_PER_DAY = 1

    def crash(*args, **kwargs):
        raise RecursionError(f"maximum recursion depth exceeded in {settings.MEDIA_ROOT}/x (VADI_SECRET_ROOT)")

    monkeypatch.setattr(evaluation.scoring, "score_bundle", crash)
    owner = user()
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root))
    response = _post(_client(owner), path, django_capture_on_commit_callbacks, suite=SUITE_KEY)
    assert response.status_code == 201
    submission = Submission.objects.get()
    assert submission.status == JobStatus.FAILED and not submission.quota_exempt
    assert submission.error_message.startswith("Scoring failed:")
    assert "counts against your daily quota" in submission.error_message
    _assert_public(submission.error_message)
    assert "RecursionError" in submission.error_detail  # staff read the detail in the admin
    assert submission.archive.name == "" and _files(settings) == []
    response = _post(_client(owner), path, django_capture_on_commit_callbacks, suite=SUITE_KEY)
    assert response.status_code == 429 and "failed submissions count too" in response.json()["error"]["message"]
    # The owner's pages show the public message only.
    client = Client()
    client.force_login(owner)
    for url in (
        f"/submissions/{submission.pk}/",
        f"/submissions/{submission.pk}/status.json",
        f"/api/v1/submissions/{submission.pk}/",
    ):
        text = client.get(url).content.decode()
        assert "Scoring failed" in text and "RecursionError" not in text and "VADI_SECRET_ROOT" not in text, url
        assert str(settings.MEDIA_ROOT) not in text


def test_our_own_failures_are_exempt_and_delete_the_archive(tiny_suite, tiny_data_root, tmp_path, settings,
                                                            django_capture_on_commit_callbacks):  # fmt: skip
    """Temporary errors that outlast their retries, and a missing ground truth: not counted; nothing left."""
    from evaluation.tests.test_submissions import stored_submission
    from leaderboard.services.jobs import job_give_up
    from leaderboard.services.submissions import (
        SUBMISSION_JOBS,
        QuotaExceeded,
        submission_claim,
        submission_quota_check,
    )

    settings.VADI_SUBMISSIONS_PER_DAY = 1
    owner = user()
    submission = stored_submission(owner, write_valid(tmp_path / "b.zip", spec_for(tiny_data_root)))
    assert _files(settings)
    assert submission_claim(submission_id=submission.pk, task_id="task-0") is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert job_give_up(SUBMISSION_JOBS.lease(submission.pk, "task-0"), reason="OperationalError: server closed")
    submission.refresh_from_db()
    assert submission.status == JobStatus.FAILED and submission.quota_exempt
    assert "does not count against your quota" in submission.error_message
    _assert_public(submission.error_message)
    assert submission.archive.name == "" and _files(settings) == []
    submission_quota_check(owner=owner)  # not counted
    stored_submission(owner, write_valid(tmp_path / "c.zip", spec_for(tiny_data_root)))  # queued: counts
    with pytest.raises(QuotaExceeded):
        submission_quota_check(owner=owner)


def test_the_method_of_a_failed_upload_is_shown_to_nobody_else(tiny_suite, tiny_data_root, tmp_path, settings,
                                                               django_capture_on_commit_callbacks):  # fmt: skip
    owner = user()
    path = bad_bundle("nan_in_maps").build(tmp_path / "b.zip", spec_for(tiny_data_root, method="Zq Hidden Net"))
    response = _post(_client(owner), path, django_capture_on_commit_callbacks, suite=SUITE_KEY)
    assert response.status_code == 201
    submission = Submission.objects.get()
    assert submission.status == JobStatus.FAILED
    method = submission.method
    assert method.name == "Zq Hidden Net"
    urls = [
        "/", f"/?suite={SUITE_KEY}", f"/?suite={SUITE_KEY}&format=csv", f"/?suite={SUITE_KEY}&format=json",
        "/methods/", "/methods/?format=csv", "/methods/?format=json", f"/suites/{SUITE_KEY}/categories/",
        f"/suites/{SUITE_KEY}/categories/?format=csv", "/categories/synthetic/woven/", "/api/v1/methods/",
        "/api/v1/results/", "/api/v1/submissions/", f"/api/v1/leaderboard/{SUITE_KEY}/",
    ]  # fmt: skip
    other = user("carol")
    for viewer in (None, other):
        client = Client()
        if viewer is not None:
            client.force_login(viewer)
        for url in urls:
            response = client.get(url)
            text = response.content.decode()
            assert "Zq Hidden Net" not in text and method.key not in text, (viewer, url)
        for url in (f"/methods/{method.key}/", f"/api/v1/methods/{method.key}/", f"/submissions/{submission.pk}/"):
            assert client.get(url).status_code == 404, (viewer, url)
    owner_client = Client()
    owner_client.force_login(owner)
    assert owner_client.get(f"/methods/{method.key}/").status_code == 200  # its owner still sees it


def test_an_upload_the_broker_cannot_take_is_kept_and_sent_by_the_sweeper(
    tiny_suite, tiny_data_root, tmp_path, settings, django_capture_on_commit_callbacks
):
    """No broker at the upload: 201, "accepted, waiting for a worker", kept unsent; the sweeper sends it later."""
    from config.celery import app
    from leaderboard.services.sweeper import jobs_sweep
    from tests.workers import app_on_broker, app_on_queue, free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), honest_categories(tiny_data_root, seed=5))
    with app_on_broker(app, nowhere), app_on_queue(app, queue="vadi-nowhere", broker=nowhere):
        response = _post(_client(user()), path, django_capture_on_commit_callbacks, suite=SUITE_KEY)
        assert response.status_code == 201, response.content
        assert response.json()["progress_message"] == "accepted, waiting for a worker"
        submission = Submission.objects.get()
        assert submission.status == JobStatus.QUEUED and submission.dispatched_at is None
        assert _files(settings)  # the archive is kept
        report = jobs_sweep()  # the broker is still away: nothing sent, nothing lost
        assert report.dispatched == [] and Submission.objects.get().dispatched_at is None
    # The broker is back (here: eager tasks, the in-process stand-in): the next sweep sends it once.
    with django_capture_on_commit_callbacks(execute=True):
        report = jobs_sweep()
    assert report.dispatched == [f"submission {submission.pk}"]
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE and submission.attempts == 1, submission.error_message
    assert Result.objects.filter(submission=submission).count() == 8
    assert jobs_sweep().dispatched == []  # done: never sent again

"""Uploading through the API (token) and the web form (signed in); visibility; ground truth stays put."""

# The shared fixtures are imported from test_submissions; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import get_resolver, reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from evaluation.tests.bundle_corpus import write_valid
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
from leaderboard.models import JobStatus, Result, Submission, Visibility

API = "/api/v1/submissions/"


@pytest.fixture
def bundle(tiny_suite, tiny_data_root, tmp_path):
    categories = honest_categories(tiny_data_root, seed=7)
    path = write_valid(tmp_path / "bundle.zip", spec_for(tiny_data_root, method="Token net"), categories)
    return path, categories


def _upload(path, name="bundle.zip"):
    return SimpleUploadedFile(name, path.read_bytes(), content_type="application/zip")


def test_api_upload_with_token_is_scored(bundle, tiny_data_root, django_capture_on_commit_callbacks):
    path, categories = bundle
    owner = user()
    token = Token.objects.create(user=owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            API, {"method": "Token net", "suite": SUITE_KEY, "archive": _upload(path)}, format="multipart"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == JobStatus.QUEUED and body["method"] == "token-net" and body["owner"] == "alice"
    assert body["status_url"].endswith(reverse("leaderboard:submission-detail", args=[body["id"]]))
    assert response["Location"] == body["api_url"]
    submission = Submission.objects.get(pk=body["id"])
    assert submission.status == JobStatus.DONE, submission.error_message
    assert results_of(submission) == expected_values(tiny_data_root, categories)
    status = client.get(body["api_url"]).json()
    assert status["status"] == "done" and status["progress"] == 1.0


def test_api_refuses_anonymous_and_bad_tokens(bundle):
    path, _ = bundle
    client = APIClient()
    payload = {"method": "m", "suite": SUITE_KEY, "archive": _upload(path)}
    assert client.post(API, payload, format="multipart").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.post(API, {**payload, "archive": _upload(path)}, format="multipart").status_code == 401
    assert not Submission.objects.exists()
    # listing stays public
    assert APIClient().get(API).status_code == 200


def test_api_errors_name_the_field(bundle, tmp_path, settings):
    path, _ = bundle
    client = APIClient()
    client.force_authenticate(user())
    response = client.post(API, {"method": "m", "suite": SUITE_KEY, "archive": _upload(path)}, format="multipart")
    assert response.status_code == 400
    (message,) = response.json()["error"]["details"]["method"]
    assert "the manifest names method 'Token net' but the form says 'm'" in message
    response = client.post(API, {"method": "Token net", "suite": "nope", "archive": _upload(path)}, format="multipart")
    assert response.status_code == 400 and "unknown suite 'nope'" in str(response.json())
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"%PDF-1.4 not a zip")
    response = client.post(API, {"method": "m", "suite": SUITE_KEY, "archive": _upload(not_zip)}, format="multipart")
    assert response.status_code == 400 and "must be a zip archive" in str(response.json())
    settings.VADI_SUBMISSIONS_CONCURRENT = 1
    payload = {"method": "Token net", "suite": SUITE_KEY}
    assert client.post(API, {**payload, "archive": _upload(path)}).status_code == 201
    response = client.post(API, {**payload, "archive": _upload(path)})
    assert response.status_code == 429 and "waiting or being scored" in str(response.json())
    assert Submission.objects.count() == 1


def test_form_upload_when_signed_in(bundle, client, tiny_data_root, django_capture_on_commit_callbacks):
    path, categories = bundle
    form_url = reverse("submissions:new")
    response = client.get(form_url)
    assert response.status_code == 302 and reverse("account_login") in response["Location"]
    alice = user(email="alice@example.org")
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)  # sign-up confirmed it
    login = reverse("account_login") + f"?next={form_url}"
    response = client.post(login, {"login": "alice", "password": "pw-123456", "next": form_url})
    assert response.status_code == 302 and response["Location"] == form_url
    page = client.get(form_url)
    assert page.status_code == 200 and b"Upload and score" in page.content and SUITE_KEY.encode() in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            form_url,
            {"method": "Token net", "suite": SUITE_KEY, "visibility": "public", "archive": _upload(path)},
        )
    submission = Submission.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("leaderboard:submission-detail", args=[submission.pk])
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE
    assert results_of(submission) == expected_values(tiny_data_root, categories)
    # bad input re-renders the form with the message
    response = client.post(form_url, {"method": "", "suite": SUITE_KEY, "visibility": "public"})
    assert response.status_code == 400 and b"This field is required" in response.content
    # a token for scripts
    assert client.post(reverse("submissions:token")).status_code == 302
    assert Token.objects.filter(user__username="alice").exists()


def test_private_submissions_show_to_their_owner_only(bundle, django_capture_on_commit_callbacks):
    path, _ = bundle
    owner, other = user(), user("bob")
    client = APIClient()
    client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            API, {"method": "Token net", "suite": SUITE_KEY, "visibility": "private", "archive": _upload(path)}
        )
    pk = response.json()["id"]
    submission = Submission.objects.get(pk=pk)
    assert submission.visibility == Visibility.PRIVATE and submission.status == JobStatus.DONE
    assert not Result.objects.filter(submission=submission, is_current=True).exists()
    assert client.get(f"{API}{pk}/").status_code == 200
    from django.test import Client

    mine = Client()
    mine.force_login(owner)
    assert mine.get(reverse("leaderboard:submission-detail", args=[pk])).status_code == 200
    stranger = APIClient()
    stranger.force_authenticate(other)
    assert stranger.get(f"{API}{pk}/").status_code == 404
    assert pk not in [row["id"] for row in stranger.get(API).json()["results"]]
    web = Client()
    web.force_login(other)
    assert web.get(reverse("leaderboard:submission-detail", args=[pk])).status_code == 404
    assert Client().get(reverse("leaderboard:submission-status", args=[pk])).status_code == 404


def _patterns(resolver, prefix=""):
    for entry in resolver.url_patterns:
        if hasattr(entry, "url_patterns"):
            yield from _patterns(entry, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern)


def test_ground_truth_is_never_served(bundle, client, tiny_data_root):
    # no route names ground truth, masks or labels, and none serves the dataset or media directories
    routes = list(_patterns(get_resolver()))
    public = [r for r in routes if not r.startswith("admin/")]
    assert public and not [r for r in public if re.search(r"ground|mask|label|media|data/", r, re.I)]
    # the published test ids carry no labels (nothing like 'good'/'defect' flags or masks)
    key = "synthetic/woven"
    response = client.get(f"/api/v1/categories/{key}/test-ids")
    assert response.status_code == 200
    text = response.content.decode()
    for word in ("mask", "label", "ground"):
        assert word not in text.lower()
    # files of the dataset and uploaded archives are not reachable by URL
    some_mask = next(tiny_data_root.rglob("ground_truth/*/*.png"))
    relative = some_mask.relative_to(tiny_data_root).as_posix()
    for url in (f"/media/{relative}", f"/static/{relative}", f"/data/synthetic/woven/{relative}",
                f"/{relative}", "/media/submissions/"):  # fmt: skip
        assert client.get(url).status_code == 404, url
    # the API schema documents the upload and exposes no ground-truth fields
    schema = client.get("/api/v1/schema/").content.decode()
    assert "Upload a bundle of anomaly maps" in schema and "manifest.json" in schema
    assert "ground_truth" not in schema and "masks" not in schema



def test_admin_actions_approve_and_reject_flagged_submissions(tiny_suite, tiny_data_root, tmp_path, client):
    import numpy as np

    from evaluation.services.submissions import submission_score
    from evaluation.tests.test_submissions import ground_truths, stored_submission
    from leaderboard.models import ReviewStatus

    categories = {
        key: {"ids": list(gt.ids), "scores": gt.labels.astype(np.float32), "maps": gt.masks.astype(np.float32)}
        for key, gt in ground_truths(tiny_data_root).items()
    }
    submission = stored_submission(user(), write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), categories))
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "flagged"
    client.force_login(user("root", is_staff=True, is_superuser=True))
    changelist = reverse("admin:leaderboard_submission_changelist")
    assert client.get(changelist).status_code == 200
    response = client.post(changelist, {"action": "approve_submissions", "_selected_action": [submission.pk]})
    assert response.status_code == 302
    submission.refresh_from_db()
    assert submission.review_status == ReviewStatus.APPROVED
    assert Result.objects.filter(submission=submission, is_current=True).count() == 8
    client.post(changelist, {"action": "reject_submissions", "_selected_action": [submission.pk]})
    submission.refresh_from_db()
    assert submission.review_status == ReviewStatus.REJECTED
    assert not Result.objects.filter(submission=submission, is_current=True).exists()


def test_a_missing_archive_fails_as_a_server_error_without_retrying(tiny_suite, tiny_data_root, tmp_path):
    from evaluation.tasks.submissions import score_submission
    from evaluation.tests.test_submissions import stored_submission

    submission = stored_submission(user(), write_valid(tmp_path / "b.zip", spec_for(tiny_data_root)))
    submission.archive.storage.delete(submission.archive.name)
    outcome = score_submission.apply(args=[submission.pk], task_id="task-0").get()
    assert outcome == "failed"
    submission.refresh_from_db()
    assert submission.status == JobStatus.FAILED and submission.attempts == 1
    assert submission.error_message.startswith("Server error while scoring")
    assert "FileNotFoundError" not in submission.error_message and "FileNotFoundError" in submission.error_detail


def test_oversized_uploads_are_cut_off_before_they_are_stored(bundle, client, settings):
    path, _ = bundle
    settings.VADI_BUNDLE_MAX_BYTES = 10_000  # the bundle is ~160 kB
    api = APIClient()
    api.force_authenticate(user())
    response = api.post(API, {"method": "m", "suite": SUITE_KEY, "archive": _upload(path)}, format="multipart")
    assert response.status_code == 413 and "larger than the limit of 10,000 bytes" in str(response.json())
    client.force_login(user("bob"))
    form = {"method": "m", "suite": SUITE_KEY, "visibility": "public"}
    response = client.post(reverse("submissions:new"), {**form, "archive": _upload(path)})
    assert response.status_code == 413 and b"larger than the limit of 10,000 bytes" in response.content
    assert not Submission.objects.exists()
    # the form still checks CSRF (the size limit is installed before the CSRF check reads the body)
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user("carol"))
    assert strict.post(reverse("submissions:new"), {**form, "archive": _upload(path)}).status_code == 403


def test_daily_quota_429_says_when_the_next_slot_frees(bundle, settings):
    """Over the daily quota: the answer names the time the oldest counted submission leaves the window."""
    from datetime import timedelta

    from django.utils import timezone

    path, _ = bundle
    owner = user()
    client = APIClient()
    client.force_authenticate(owner)
    settings.VADI_SUBMISSIONS_PER_DAY = 2
    payload = {"method": "Token net", "suite": SUITE_KEY}
    for _ in range(2):
        assert client.post(API, {**payload, "archive": _upload(path)}).status_code == 201
    now = timezone.now()
    first, second = Submission.objects.filter(owner=owner).order_by("pk")
    Submission.objects.filter(pk=first.pk).update(created_at=now - timedelta(hours=20), status=JobStatus.DONE)
    Submission.objects.filter(pk=second.pk).update(created_at=now - timedelta(hours=2), status=JobStatus.DONE)
    response = client.post(API, {**payload, "archive": _upload(path)})
    assert response.status_code == 429
    message = response.json()["error"]["message"]
    frees_at = now - timedelta(hours=20) + timedelta(days=1)  # the oldest leaves the 24-hour window
    assert f"the next slot frees at {frees_at:%Y-%m-%d %H:%M} UTC (in 4 h 00 min)" in message or (
        f"the next slot frees at {frees_at:%Y-%m-%d %H:%M} UTC (in 3 h 59 min)" in message
    ), message
    assert 3.9 * 3600 <= int(response["Retry-After"]) <= 4 * 3600 + 1
    assert Submission.objects.filter(owner=owner).count() == 2

"""The dry run of an upload: ``POST /api/v1/submissions/validate/`` and ``evaluation.bundles.check``.

Every problem at once, against the published test ids; nothing scored, written or counted
against the quota; its own rate limit (``VADI_VALIDATE_RATE``).
"""

# The shared fixtures are imported from test_submissions; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from algorithms.bundle import write_bundle
from evaluation.bundles import check, unknown_ids_message
from evaluation.tests.bundle_corpus import write_valid
from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    SUITE_KEY,
    honest_categories,
    spec_for,
    tiny_data_root,
    tiny_suite,
    user,
)
from leaderboard.models import Method, Result, Submission

API = "/api/v1/submissions/validate/"
UPLOAD = "/api/v1/submissions/"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()  # the rate limit's counters live in the cache
    yield
    cache.clear()


def _upload(path):
    return SimpleUploadedFile("bundle.zip", path.read_bytes(), content_type="application/zip")


def _broken_bundle(root, tmp_path):
    """Two problems: one category left out, and one id given as an absolute path."""
    categories = honest_categories(root, seed=3)
    kept = "synthetic/screw"
    entry = dict(categories[kept])
    ids = list(entry["ids"])
    ids[2] = f"/home/me/data/synthetic/screw/{ids[2]}"
    entry["ids"] = ids
    return write_bundle(  # file-path ids: format 1
        tmp_path / "broken.zip", method="Dry net", suite=SUITE_KEY, categories={kept: entry}, format_version=1
    )


def _client(owner):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    return client


def test_dry_run_reports_a_wrong_id_and_a_missing_category_at_once_and_uses_no_quota(
    tiny_suite, tiny_data_root, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.VADI_SUBMISSIONS_PER_DAY = 1
    owner = user()
    client = _client(owner)
    path = _broken_bundle(tiny_data_root, tmp_path)
    for _ in range(3):  # more dry runs than the daily quota allows uploads
        response = client.post(API, {"suite": SUITE_KEY, "method": "Dry net", "archive": _upload(path)})
        assert response.status_code == 200, response.content
    body = response.json()
    assert body["valid"] is False
    messages = [problem["message"] for problem in body["problems"]]
    assert len(messages) == 2, messages
    missing, unknown = messages
    assert "missing category 'synthetic/woven' of suite 'tinysub'" in missing
    assert body["problems"][1]["member"] == "synthetic/screw/ids.txt"
    assert "1 unknown id(s)" in unknown and "one of them: 'test/" in unknown
    assert "prefix '/home/me/data/synthetic/screw/' in front: strip it" in unknown
    # nothing written: no submission, no method, no result
    assert not Submission.objects.exists() and not Method.objects.filter(name="Dry net").exists()
    assert not Result.objects.exists()
    # and the quota is untouched: the one upload of the day is still free
    good = write_valid(tmp_path / "good.zip", spec_for(tiny_data_root, method="Dry net"))
    response = client.post(API, {"archive": _upload(good)})
    assert response.json() == {"valid": True, "problems": []}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(UPLOAD, {"suite": SUITE_KEY, "archive": _upload(good)})
    assert response.status_code == 201, response.content


def test_dry_run_checks_arrays_and_form_fields(tiny_suite, tiny_data_root, tmp_path):
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root, method="Array net"))
    # write_bundle refuses bad arrays itself: damage them after writing, as another tool might
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3, dtype=np.float64))
    members["synthetic/screw/scores.npy"] = buffer.getvalue()
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(7, dtype=np.float32))
    members["synthetic/woven/scores.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    client = _client(user())
    body = client.post(API, {"suite": "nope", "method": "Other name", "archive": _upload(path)}).json()
    fields = [(p["field"], p["member"]) for p in body["problems"]]
    assert ("suite", None) in fields
    assert ("method", "manifest.json") in fields
    assert ("archive", "synthetic/screw/scores.npy") in fields  # float64
    assert ("archive", "synthetic/woven/scores.npy") in fields  # 7 rows for 8 images
    assert body["valid"] is False


def test_dry_run_has_its_own_rate_limit_and_needs_a_token(tiny_suite, tiny_data_root, tmp_path, settings):
    settings.VADI_VALIDATE_RATE = "2/hour"
    path = write_valid(tmp_path / "good.zip", spec_for(tiny_data_root, method="Rate net"))
    assert APIClient().post(API, {"archive": _upload(path)}).status_code == 401
    client = _client(user())
    assert [client.post(API, {"archive": _upload(path)}).status_code for _ in range(3)] == [200, 200, 429]


def test_check_function_lists_problems_without_django(tiny_data_root, tmp_path):
    spec = spec_for(tiny_data_root)
    path = _broken_bundle(tiny_data_root, tmp_path)
    problems = check(path, suite=SUITE_KEY, expected_ids=spec.ids)
    assert [p.member for p in problems] == ["manifest.json", "synthetic/screw/ids.txt"]
    assert check(write_valid(tmp_path / "ok.zip", spec), suite=SUITE_KEY, expected_ids=spec.ids) == []


def test_unknown_id_message_shows_a_valid_id_and_the_prefix_only_when_shared():
    valid = ["test/good/000.png", "test/crack/001.png"]
    text = unknown_ids_message(["C/x/test/good/000.png", "C/x/test/crack/001.png"], valid)
    assert "one of them: 'test/good/000.png'" in text and "prefix 'C/x/' in front" in text
    mixed = unknown_ids_message(["a/test/good/000.png", "b/test/crack/001.png"], valid)
    assert "prefix" not in mixed
    unrelated = unknown_ids_message(["nope.png"], valid)
    assert "one of them" in unrelated and "prefix" not in unrelated

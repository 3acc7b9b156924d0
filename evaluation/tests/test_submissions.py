"""Submissions scored in-process (eager Celery): valid bundles, the bad-bundle corpus, lifecycle, review.

Ground truth is a small generated synthetic suite on disk, read by ``algorithms.data`` exactly as
in production. Runs on SQLite and on PostgreSQL (``DATABASE_URL``). The real-worker and
concurrency tests are in ``test_submissions_worker.py``; the web and API in ``test_submissions_api.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.files import File

from evaluation.metrics import EVALUATOR_VERSION, evaluate, to_protocol
from evaluation.tests.bundle_corpus import BAD_BUNDLES, GOOD_BUNDLES, Spec, bad_bundle, valid_categories, write_valid
from leaderboard.models import (
    Category,
    Dataset,
    JobStatus,
    Localisation,
    Provenance,
    Result,
    ReviewStatus,
    Submission,
    Suite,
    Visibility,
)

SUITE_KEY = "tinysub"
NAMES = ("woven", "screw")
SIZES = {"image_size": 64, "n_train": 1, "n_test_good": 4, "n_test_defect": 4}
LIMIT_SETTINGS = {
    "max_bytes": "VADI_BUNDLE_MAX_BYTES",
    "max_uncompressed_bytes": "VADI_BUNDLE_MAX_UNCOMPRESSED_BYTES",
    "max_members": "VADI_BUNDLE_MAX_MEMBERS",
    "max_compression_ratio": "VADI_BUNDLE_MAX_COMPRESSION_RATIO",
}


# Shared fixtures and helpers (imported by the other test_submissions* modules) -------------------


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """Two generated synthetic categories (8 test images each) on disk: the server's ground truth."""
    from algorithms.data import generate_suite

    root = tmp_path_factory.mktemp("submission-data")
    generate_suite(root, seed=0, categories=list(NAMES), workers=1, **SIZES)
    return root


def ground_truths(root: Path) -> dict:
    from algorithms.data import load_category

    return {
        f"synthetic/{name}": load_category(f"synthetic/{name}", roots={"synthetic": str(root)}).ground_truth(size=256)
        for name in NAMES
    }


def make_catalog(root: Path) -> Suite:
    """Dataset, Category (with their published test ids) and Suite rows for the tiny suite."""
    dataset, _ = Dataset.objects.get_or_create(key="synthetic", defaults={"name": "Synthetic"})
    suite, _ = Suite.objects.get_or_create(key=SUITE_KEY, defaults={"name": "Tiny submissions suite"})
    categories = []
    from django.conf import settings

    from algorithms.data import opaque_id_table

    for key, gt in ground_truths(root).items():
        table = opaque_id_table(settings.VADI_TEST_ID_KEY, key, gt.ids)  # as catalog_sync publishes them
        category, _ = Category.objects.update_or_create(
            key=key,
            defaults={"dataset": dataset, "name": key.split("/")[1], "test_ids": list(table), "test_files": table},
        )
        categories.append(category)
    suite.categories.set(categories)
    return suite


def spec_for(root: Path, **changes) -> Spec:
    return Spec(suite=SUITE_KEY, ids={k: list(gt.ids) for k, gt in ground_truths(root).items()}, **changes)


def expected_values(root: Path, categories: dict) -> dict[str, dict[str, float]]:
    """``evaluate`` on the very arrays of the bundle, put in the ground truth's order."""
    out = {}
    for key, gt in ground_truths(root).items():
        entry = categories[key]
        order = np.array([entry["ids"].index(image_id) for image_id in gt.ids])
        masks, maps = to_protocol(gt.masks, np.asarray(entry["maps"])[order])
        values = evaluate(masks, maps, gt.labels, np.asarray(entry["scores"])[order])
        out[key] = {metric: min(1.0, max(0.0, value)) for metric, value in values.items()}
    return out


def results_of(submission: Submission) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for result in Result.objects.filter(submission=submission).select_related("category"):
        out.setdefault(result.category.key, {})[result.metric] = result.value
    return out


def honest_categories(root: Path, *, seed: int = 0, size=(80, 72)) -> dict:
    """A plausible detector's output: maps that correlate with the masks, plus noise."""
    import cv2

    rng = np.random.default_rng(seed)
    out = {}
    for key, gt in ground_truths(root).items():
        order = rng.permutation(len(gt.ids))
        maps = np.stack([cv2.resize(m.astype(np.float32), (size[1], size[0])) for m in gt.masks])
        maps = (0.7 * maps + rng.random(maps.shape)).astype(np.float16)
        scores = (0.5 * gt.labels + rng.random(len(gt.ids))).astype(np.float32)
        out[key] = {"ids": [gt.ids[i] for i in order], "scores": scores[order], "maps": maps[order]}
    return out


def user(name: str = "alice", **extra):
    return get_user_model().objects.create_user(name, password="pw-123456", **extra)


def create_submission(owner, path: Path, *, method: str = "Corpus method", visibility=Visibility.PUBLIC):
    from leaderboard.services.submissions import submission_create

    with open(path, "rb") as handle:
        upload = File(handle, name="bundle.zip")
        upload.size = path.stat().st_size
        return submission_create(
            owner=owner, method_name=method, suite_key=SUITE_KEY, archive=upload, visibility=visibility
        )


def stored_submission(owner, path: Path, *, method: str = "Corpus method") -> Submission:
    """A queued submission whose archive is ``path`` as is, bypassing the upload-time checks."""
    from leaderboard.services.submissions import method_for_user

    submission = Submission(
        owner=owner,
        method=method_for_user(owner=owner, name=method),
        suite=Suite.objects.get(key=SUITE_KEY),
        celery_task_id="task-0",
    )
    with open(path, "rb") as handle:
        submission.archive.save("bundle.zip", File(handle), save=False)
    submission.archive_size = path.stat().st_size
    submission.save()
    return submission


@pytest.fixture
def tiny_suite(db, settings, tiny_data_root):
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tiny_data_root)}
    settings.VADI_SUBMISSIONS_PER_DAY = 100
    settings.VADI_SUBMISSIONS_CONCURRENT = 100
    return make_catalog(tiny_data_root)


# Tests -------------------------------------------------------------------------------------------


def test_valid_bundle_is_scored_and_equals_evaluate(tiny_suite, tiny_data_root, tmp_path,
                                                    django_capture_on_commit_callbacks):  # fmt: skip
    categories = honest_categories(tiny_data_root)
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), categories)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        submission = create_submission(user(), path)
    assert callbacks  # the scoring task was enqueued on commit (and ran eagerly)
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE, submission.error_message
    assert submission.progress == 1.0 and submission.attempts == 1
    assert submission.started_at and submission.finished_at and submission.heartbeat_at
    assert submission.archive_size == path.stat().st_size
    import hashlib

    assert submission.archive_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert results_of(submission) == expected_values(tiny_data_root, categories)
    rows = Result.objects.filter(submission=submission)
    assert rows.count() == 2 * 4
    assert all(r.provenance == Provenance.SERVER_SCORED and r.evaluator_version == EVALUATOR_VERSION for r in rows)
    assert all(r.is_current for r in rows)  # public, not flagged: published
    assert submission.review_status == ReviewStatus.NONE
    # PL explained (issue 14): each PL value keeps its anomalies, their defect types and IoUs
    from evaluation.metrics import proportion_localised_from_ious

    for pl in rows.filter(metric="pl").select_related("localisation"):
        loc = pl.localisation
        assert loc.n_anomalies == sum(total for _, total in loc.defect_summary.values()) > 0
        assert "good" not in loc.defect_summary and not loc.predictions
        assert proportion_localised_from_ious([a["ious"] for a in loc.anomalies], iou_limit=0.3) == pl.value


#: Cases whose tightened limits the server's settings can express (all but a few reader-only limits).
SERVICE_BAD_BUNDLES = [case for case in BAD_BUNDLES if set(case.limits) <= set(LIMIT_SETTINGS)]


@pytest.mark.parametrize("case", SERVICE_BAD_BUNDLES, ids=[case.name for case in SERVICE_BAD_BUNDLES])
def test_every_bad_bundle_fails_with_its_message_and_writes_nothing(case, tiny_suite, tiny_data_root, tmp_path,
                                                                    settings):  # fmt: skip
    from evaluation.services.submissions import submission_score

    for limit, value in case.limits.items():
        setattr(settings, LIMIT_SETTINGS[limit], value)
    path = case.build(tmp_path / f"{case.name}.zip", spec_for(tiny_data_root))
    submission = stored_submission(user(), path)
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "failed"
    submission.refresh_from_db()
    assert submission.status == JobStatus.FAILED
    assert submission.error_message.startswith("Invalid bundle: ")
    assert re.search(case.message, submission.error_message), submission.error_message
    assert not Result.objects.filter(submission=submission).exists()
    assert submission.finished_at is not None


@pytest.mark.parametrize("case", GOOD_BUNDLES, ids=[case.name for case in GOOD_BUNDLES])
def test_every_valid_variant_is_scored_by_the_service(case, tiny_suite, tiny_data_root, tmp_path):
    """Whatever the validator accepts, the worker scores (every compression method, layout and float range)."""
    from evaluation.services.submissions import submission_score

    path = case.build(tmp_path / f"{case.name}.zip", spec_for(tiny_data_root))
    submission = stored_submission(user(), path)
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "done"
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE, submission.error_message
    values = results_of(submission)
    assert set(values) == {f"synthetic/{name}" for name in NAMES}
    assert all(0.0 <= v <= 1.0 for metrics in values.values() for v in metrics.values())
    assert sum(len(metrics) for metrics in values.values()) == 2 * 4


def test_manifest_method_must_match_the_submission(tiny_suite, tiny_data_root, tmp_path):
    from evaluation.services.submissions import submission_score

    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root, method="Another method"))
    submission = stored_submission(user(), path, method="My method")
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "failed"
    submission.refresh_from_db()
    assert "manifest.json: method 'Another method' does not match the submission's method 'My method'" in (
        submission.error_message
    )


def test_scoring_is_idempotent_and_claimed_once(tiny_suite, tiny_data_root, tmp_path):
    from evaluation.services.submissions import submission_score

    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root))
    submission = stored_submission(user(), path)
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "done"
    first = {(r.category_id, r.metric): (r.pk, r.value) for r in Result.objects.filter(submission=submission)}
    # a duplicate delivery of the task finds the job finished and does nothing
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "skipped"
    assert submission_score(submission_id=submission.pk, task_id="task-other") == "skipped"
    # a job re-run from the start (e.g. requeued by the sweeper) writes each result once more, in place
    Submission.objects.filter(pk=submission.pk).update(status=JobStatus.QUEUED)
    assert submission_score(submission_id=submission.pk, task_id="task-1") == "done"
    again = {(r.category_id, r.metric): (r.pk, r.value) for r in Result.objects.filter(submission=submission)}
    assert again == first
    submission.refresh_from_db()
    assert submission.attempts == 2
    assert Localisation.objects.filter(result__submission=submission).count() == 2  # one per PL value


def test_claim_is_exclusive_between_tasks(tiny_suite, tiny_data_root, tmp_path):
    from leaderboard.services.jobs import JobLostError
    from leaderboard.services.submissions import SUBMISSION_JOBS, submission_claim, submission_progress

    submission = stored_submission(user(), write_valid(tmp_path / "b.zip", spec_for(tiny_data_root)))
    assert submission_claim(submission_id=submission.pk, task_id="a") is not None
    assert submission_claim(submission_id=submission.pk, task_id="b") is None  # fresh heartbeat: a owns it
    assert submission_claim(submission_id=submission.pk, task_id="a") is not None  # a's retry/redelivery
    with pytest.raises(JobLostError):
        submission_progress(SUBMISSION_JOBS.lease(submission.pk, "b"), progress=0.5, message="x")


def test_a_server_error_fails_without_counting_against_the_daily_quota(tiny_suite, tiny_data_root, tmp_path,
                                                                       settings):  # fmt: skip
    from evaluation.services.submissions import submission_score
    from leaderboard.services.submissions import QuotaExceeded, submission_quota_check

    settings.VADI_SUBMISSIONS_PER_DAY = 1
    owner = user()
    submission = stored_submission(owner, write_valid(tmp_path / "b.zip", spec_for(tiny_data_root)))
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tmp_path / "missing")}
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "failed"
    submission.refresh_from_db()
    assert submission.status == JobStatus.FAILED
    assert submission.error_message.startswith("Server error while scoring")
    assert str(tmp_path) not in submission.error_message and "Error" not in submission.error_message
    assert "not available on this server" in submission.error_detail and str(tmp_path) in submission.error_detail
    assert submission.quota_exempt
    submission_quota_check(owner=owner)  # does not raise: the failure was ours
    # a bad bundle, in contrast, counts
    bad = stored_submission(owner, bad_bundle("nan_in_maps").build(tmp_path / "bad.zip", spec_for(tiny_data_root)))
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tiny_data_root)}
    assert submission_score(submission_id=bad.pk, task_id="task-0") == "failed"
    bad.refresh_from_db()
    assert bad.error_message.startswith("Invalid bundle: ") and not bad.quota_exempt
    with pytest.raises(QuotaExceeded, match="in the last 24 hours"):
        submission_quota_check(owner=owner)


def test_quotas_refuse_before_anything_is_written(tiny_suite, tiny_data_root, tmp_path, settings):
    from leaderboard.services.submissions import QuotaExceeded

    settings.VADI_SUBMISSIONS_CONCURRENT = 1
    owner = user()
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root))
    create_submission(owner, path)  # stays queued: on_commit callbacks do not run in this test
    media = Path(settings.MEDIA_ROOT)
    files_before = sorted(media.rglob("*.zip"))
    with pytest.raises(QuotaExceeded, match="waiting or being scored"):
        create_submission(owner, path)
    assert Submission.objects.filter(owner=owner).count() == 1
    assert sorted(media.rglob("*.zip")) == files_before


def test_upload_checks_name_the_problem(tiny_suite, tmp_path, settings):
    from django.core.exceptions import ValidationError

    owner = user()
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"hello world")
    with pytest.raises(ValidationError, match="must be a zip archive"):
        create_submission(owner, not_zip)
    settings.VADI_BUNDLE_MAX_BYTES = 5
    with pytest.raises(ValidationError, match="the limit is 5 bytes"):
        create_submission(owner, not_zip)
    settings.VADI_BUNDLE_MAX_BYTES = 1 << 20
    from leaderboard.services.submissions import submission_create

    with open(not_zip, "rb") as handle, pytest.raises(ValidationError, match="unknown suite 'nope'"):
        submission_create(owner=owner, method_name="m", suite_key="nope", archive=File(handle))
    # a method name taken by another user is refused
    other = user("bob")
    from leaderboard.services.submissions import method_for_user

    method_for_user(owner=other, name="Bob's net")
    with pytest.raises(ValidationError, match="is taken") as refused:  # not public yet: not named
        method_for_user(owner=owner, name="Bob's Net")
    assert "Bob's net" not in " ".join(refused.value.messages)
    assert not Submission.objects.exists()


def test_maps_equal_to_the_masks_are_flagged_and_held_for_review(tiny_suite, tiny_data_root, tmp_path):
    from evaluation.services.submissions import submission_score
    from leaderboard.services.submissions import submission_review

    categories = {
        key: {"ids": list(gt.ids), "scores": gt.labels.astype(np.float32), "maps": gt.masks.astype(np.float16)}
        for key, gt in ground_truths(tiny_data_root).items()
    }
    submission = stored_submission(user(), write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), categories))
    assert submission_score(submission_id=submission.pk, task_id="task-0") == "flagged"
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE and submission.review_status == ReviewStatus.FLAGGED
    assert "match the ground truth too well" in submission.review_note
    rows = Result.objects.filter(submission=submission)
    assert rows.count() == 8 and not rows.filter(is_current=True).exists()  # recorded, not published
    admin = user("admin", is_staff=True)
    submission_review(submission=submission, approve=True, reviewer=admin)
    assert rows.filter(is_current=True).count() == 8
    submission_review(submission=submission, approve=False, reviewer=admin)
    assert not rows.filter(is_current=True).exists()
    submission.refresh_from_db()
    assert submission.review_status == ReviewStatus.REJECTED and "rejected by admin" in submission.review_note


def test_private_submissions_are_scored_but_never_published(tiny_suite, tiny_data_root, tmp_path,
                                                            django_capture_on_commit_callbacks):  # fmt: skip
    path = write_valid(tmp_path / "b.zip", spec_for(tiny_data_root), honest_categories(tiny_data_root, seed=3))
    with django_capture_on_commit_callbacks(execute=True):
        submission = create_submission(user(), path, visibility=Visibility.PRIVATE)
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE
    rows = Result.objects.filter(submission=submission)
    assert rows.count() == 8 and not rows.filter(is_current=True).exists()


def test_corpus_spec_matches_the_generated_ground_truth(tiny_data_root):
    spec = spec_for(tiny_data_root)
    assert sorted(spec.ids) == [f"synthetic/{n}" for n in sorted(NAMES)]
    assert all(len(ids) == 8 for ids in spec.ids.values())
    assert valid_categories(spec)  # the corpus builds on these ids

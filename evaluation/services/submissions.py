"""Score one uploaded bundle: claim it, validate it completely, score it, hand back the values.

``submission_score`` is what the Celery task ``evaluation.score_submission`` runs:

1. claim the submission (a conditional update; a finished one or one held by another task is
   left alone, so a duplicate or redelivered task does nothing);
2. validate the whole archive against the suite's categories and their test ids (no extraction,
   byte budgets, ``.npy`` headers before data, every category) -- nothing is written before
   this passes; a bad bundle fails with the reader's message naming the member;
3. score each category against the ground truth on disk (``algorithms.data``), reporting
   progress and heartbeats;
4. hand every value to ``submission_finish``, which records them (update-or-create: a retried
   job writes each value once) and finishes the submission in one transaction: published,
   private, or held for review when its maps match the ground truth too well.

This module writes no row: the claim, progress, failure and results are
``leaderboard.services.submissions`` transitions on the task's lease. Transient errors
(database, I/O) propagate so that the task retries them; every other error fails the
submission with a message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils.text import slugify

from evaluation.bundles import BundleError, BundleLimits, BundleReader
from leaderboard.failures import failure_from_exception
from leaderboard.services.jobs import HeartbeatThread, JobLease, JobLostError, heartbeat_interval_s, is_transient
from leaderboard.services.submissions import (
    SUBMISSION_JOBS,
    submission_claim,
    submission_fail,
    submission_finish,
    submission_progress,
    submission_scoring_start,
)

if TYPE_CHECKING:  # pragma: no cover
    from leaderboard.models import Submission

logger = logging.getLogger(__name__)

#: Share of the progress bar given to validation (the rest is scoring).
VALIDATION_SHARE = 0.3
#: What the uploader reads when scoring fails inside the server (the detail is for staff only).
SERVER_ERROR_MESSAGE = (
    "Server error while scoring: this is not a problem with your bundle, and it does not count against your "
    "quota. The site's administrators can see what went wrong."
)


class GroundTruthUnavailable(RuntimeError):
    """The server cannot load a category's ground truth (a deployment problem, not the bundle's)."""


def bundle_limits() -> BundleLimits:
    """The archive limits from settings (``VADI_BUNDLE_*``); unset ones keep the defaults."""
    return BundleLimits.from_mapping(
        {
            "max_bytes": getattr(settings, "VADI_BUNDLE_MAX_BYTES", None),
            "max_uncompressed_bytes": getattr(settings, "VADI_BUNDLE_MAX_UNCOMPRESSED_BYTES", None),
            "max_members": getattr(settings, "VADI_BUNDLE_MAX_MEMBERS", None),
            "max_compression_ratio": getattr(settings, "VADI_BUNDLE_MAX_COMPRESSION_RATIO", None),
        }
    )


def _dataset_category(key: str):
    from algorithms.data import load_category

    try:
        return load_category(key, roots=dict(settings.DATASET_ROOTS))
    except ValueError as exc:  # DatasetError
        raise GroundTruthUnavailable(f"the ground truth of {key} is not available on this server: {exc}") from exc


class _GroundTruths(Mapping):
    """Category key -> ground truth at the evaluation size, loaded when first asked for."""

    def __init__(self, categories: Mapping[str, object], size: int) -> None:
        self._categories = categories
        self._size = size

    def __getitem__(self, key: str):
        return self._categories[key].ground_truth(size=self._size)

    def __iter__(self) -> Iterator[str]:
        return iter(self._categories)

    def __len__(self) -> int:
        return len(self._categories)


def _check_method(manifest_method: str, submission: Submission) -> None:
    method = submission.method
    if manifest_method.casefold() in (method.name.casefold(), method.key.casefold()):
        return
    if slugify(manifest_method) == method.key:
        return
    raise BundleError(
        f"method {manifest_method!r} does not match the submission's method {method.name!r}", member="manifest.json"
    )


def _expected_ids(submission: Submission) -> tuple[dict[str, list[str]], dict[str, object]]:
    rows = {category.key: category for category in submission.suite.categories.order_by("key")}
    if not rows:
        raise GroundTruthUnavailable(f"suite {submission.suite.key!r} has no categories on this server")
    datasets, expected = {}, {}
    for key, category in rows.items():
        datasets[key] = _dataset_category(key)
        ids = [str(image_id) for image_id in datasets[key].test_ids]
        published = list(category.test_ids or [])
        if published and sorted(published) != sorted(ids):
            raise GroundTruthUnavailable(
                f"the published test ids of {key} differ from the dataset on disk; an admin must re-sync the catalog"
            )
        expected[key] = ids
    return expected, datasets


def _score(submission: Submission, lease: JobLease) -> str:
    from evaluation.metrics import EVAL_SIZE, EVALUATOR_VERSION
    from evaluation.scoring import score_bundle, suspicion_check

    expected, datasets = _expected_ids(submission)
    total = len(expected)

    def validated(done: int, total: int, key: str) -> None:
        submission_progress(
            lease, progress=VALIDATION_SHARE * done / total, message=f"validated {done}/{total} categories ({key})"
        )

    def scored(done: int, total: int, key: str) -> None:
        submission_progress(
            lease,
            progress=VALIDATION_SHARE + (1 - VALIDATION_SHARE) * done / total,
            message=f"scored {done}/{total} categories ({key})",
        )

    with submission.archive.open("rb") as handle, BundleReader(handle, limits=bundle_limits()) as reader:
        summary = reader.validate(suite=submission.suite.key, expected_ids=expected, progress=validated)
        _check_method(summary.manifest.method, submission)
        submission_scoring_start(lease, progress=VALIDATION_SHARE, message=f"bundle valid; scoring {total} categories")
        results = score_bundle(reader, _GroundTruths(datasets, EVAL_SIZE), progress=scored)
        layouts = summary.categories

    report = suspicion_check(results)
    submission_finish(
        lease,
        results=results,
        extra={
            key: {
                "map_size": list(layouts[key].map_size),
                "maps_dtype": layouts[key].maps_dtype.name,
                "n_images": layouts[key].n_images,
                "archive_sha256": submission.archive_sha256,
            }
            for key in results
        },
        evaluator_version=EVALUATOR_VERSION,
        flagged_reason=report.reason if report.flagged else "",
        summary=f"scored {total} categories with {EVALUATOR_VERSION}",
    )
    return "flagged" if report.flagged else "done"


def submission_score(*, submission_id: int, task_id: str) -> str:
    """Validate and score submission ``submission_id`` for task ``task_id``; returns the outcome.

    Outcomes: ``"done"``, ``"flagged"`` (scored, held for review), ``"failed"``, ``"skipped"``
    (finished already or claimed by another task) and ``"lost"`` (taken away mid-way).
    Transient errors are raised for the task to retry; anything else fails the submission.
    """
    submission = submission_claim(submission_id=submission_id, task_id=task_id)
    if submission is None:
        logger.info("submission %s: nothing to do for task %s", submission_id, task_id)
        return "skipped"
    lease = SUBMISSION_JOBS.lease(submission_id, task_id)
    try:
        with HeartbeatThread(lease, interval_s=heartbeat_interval_s(minimum=1.0)):
            return _score(submission, lease)
    except BundleError as exc:
        submission_fail(lease, message=str(exc), invalid_bundle=True)
        return "failed"
    except JobLostError:
        logger.warning("submission %s was taken from task %s; stopping", submission_id, task_id)
        return "lost"
    except SoftTimeLimitExceeded:
        limit = getattr(settings, "VADI_SCORING_SOFT_TIME_LIMIT_S", None)
        submission_fail(
            lease,
            message=f"Server error: scoring exceeded the time limit ({limit} s); it does not count against your quota",
        )
        return "failed"
    except Exception as exc:
        if is_transient(exc):
            raise
        logger.exception("submission %s: scoring failed", submission_id)
        failure = failure_from_exception(exc, public=SERVER_ERROR_MESSAGE)
        submission_fail(lease, message=failure.message, detail=failure.detail)
        return "failed"

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
``leaderboard.services.submissions`` transitions on the task's lease.

Who pays for a failure (the daily quota, ``docs/bundle-format.md``):

* our infrastructure -- temporary database or I/O errors propagate so that the task retries them
  (and a submission that outlasts its retries fails without counting); the ground truth or the
  stored archive unavailable fails at once without counting (:class:`ServerUnavailable`: a
  retry cannot cure a deployment problem);
* the upload's content -- everything else: a :class:`BundleError` (a message naming the member),
  the scoring time limit, and any other exception raised while the archive is read, validated
  or scored (a content problem the validator did not name). These count against the quota, so
  no crafted archive gets free attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from evaluation.bundles import BundleError, BundleReader
from leaderboard.failures import failure_from_exception
from leaderboard.services.jobs import HeartbeatThread, JobLease, JobLostError, heartbeat_interval_s, is_transient
from leaderboard.services.submissions import (
    SUBMISSION_JOBS,
    bundle_limits,
    manifest_method_matches,
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
#: What the uploader reads when scoring fails because of our infrastructure (the detail is for staff only).
SERVER_ERROR_MESSAGE = (
    "Server error while scoring: this is not a problem with your bundle, and it does not count against your "
    "quota. The site's administrators can see what went wrong."
)
#: What the uploader reads when processing the upload's content failed in a way the validator did not name.
CONTENT_ERROR_MESSAGE = (
    "Scoring failed: reading or scoring this bundle failed in a way the validator does not describe yet. "
    "A failure while processing an upload's content counts against your daily quota. The site's "
    "administrators can see what went wrong; check the bundle against the bundle format."
)


class ServerUnavailable(RuntimeError):
    """Something of ours that scoring needs is missing (a deployment problem, not the bundle's)."""


class GroundTruthUnavailable(ServerUnavailable):
    """The server cannot load a category's ground truth (a deployment problem, not the bundle's)."""


class ArchiveUnavailable(ServerUnavailable):
    """The stored archive cannot be opened (our storage, not the upload)."""


def _retried(exc: BaseException) -> bool:
    """Temporary trouble of ours, worth a retry: database errors, and OS errors that carry an errno.

    An ``OSError`` without an errno is a decoder's complaint about the data (``bz2`` raises
    ``OSError("Invalid data stream")``): the content's fault, not retried.
    """
    if not is_transient(exc):
        return False
    return not (isinstance(exc, OSError) and exc.errno is None)


def _dataset_category(key: str):
    from algorithms.data import load_category

    try:
        return load_category(key, roots=dict(settings.DATASET_ROOTS))
    except Exception as exc:  # DatasetError, a dataset folder that cannot be read, ...
        if _retried(exc) or isinstance(exc, SoftTimeLimitExceeded):
            raise
        raise GroundTruthUnavailable(f"the ground truth of {key} is not available on this server: {exc}") from exc


@dataclass(frozen=True)
class _Truth:
    """A ground truth under the ids the bundle was checked against (opaque or, format 1, paths)."""

    ids: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


class _GroundTruths(Mapping):
    """Category key -> ground truth at the evaluation size, loaded when first asked for."""

    def __init__(self, categories: Mapping[str, object], size: int, ids: Mapping[str, list[str]]) -> None:
        self._categories = categories
        self._size = size
        self._ids = ids

    def __getitem__(self, key: str):
        try:
            truth = self._categories[key].ground_truth(size=self._size)
            return _Truth(ids=np.array(self._ids[key], dtype=str), labels=truth.labels, masks=truth.masks)
        except Exception as exc:
            if _retried(exc) or isinstance(exc, SoftTimeLimitExceeded):
                raise
            raise GroundTruthUnavailable(f"the ground truth of {key} cannot be read on this server: {exc}") from exc

    def __iter__(self) -> Iterator[str]:
        return iter(self._categories)

    def __len__(self) -> int:
        return len(self._categories)


def _check_method(manifest_method: str, submission: Submission) -> None:
    method = submission.method
    if manifest_method_matches(manifest_method, name=method.name, key=method.key):
        return
    raise BundleError(
        f"method {manifest_method!r} does not match the submission's method {method.name!r}", member="manifest.json"
    )


def _expected_ids(submission: Submission) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, object]]:
    """``(opaque ids, path ids, dataset categories)`` per category, both id lists in ground-truth order."""
    from algorithms.data import opaque_id

    rows = {category.key: category for category in submission.suite.categories.order_by("key")}
    if not rows:
        raise GroundTruthUnavailable(f"suite {submission.suite.key!r} has no categories on this server")
    datasets, expected, legacy = {}, {}, {}
    for key, category in rows.items():
        datasets[key] = _dataset_category(key)
        paths = [str(image_id) for image_id in datasets[key].test_ids]
        ids = [opaque_id(settings.VADI_TEST_ID_KEY, key, path) for path in paths]
        published = list(category.test_ids or [])
        if published and sorted(published) != sorted(ids):
            raise GroundTruthUnavailable(
                f"the published test ids of {key} differ from the dataset on disk; an admin must re-sync the catalog"
            )
        expected[key], legacy[key] = ids, paths
    return expected, legacy, datasets


def _score(submission: Submission, lease: JobLease) -> str:
    from evaluation.metrics import EVAL_SIZE, EVALUATOR_VERSION
    from evaluation.scoring import score_bundle, suspicion_check

    expected, legacy, datasets = _expected_ids(submission)
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

    try:
        handle = submission.archive.open("rb")
    except (OSError, ValueError) as exc:
        if _retried(exc):
            raise
        raise ArchiveUnavailable(f"the stored archive of submission {submission.pk} cannot be opened: {exc}") from exc
    with handle, BundleReader(handle, limits=bundle_limits()) as reader:
        summary = reader.validate(
            suite=submission.suite.key,
            expected_ids=expected,
            legacy_ids=legacy,
            allow_legacy=not submission.suite.is_blind,
            progress=validated,
        )
        _check_method(summary.manifest.method, submission)
        submission_scoring_start(lease, progress=VALIDATION_SHARE, message=f"bundle valid; scoring {total} categories")
        localisations: dict = {}  # PL explained, per category (recorded for public ground truth only)
        used = {key: reader.expected_ids(key) for key in expected}
        results = score_bundle(
            reader, _GroundTruths(datasets, EVAL_SIZE, used), progress=scored, localisations=localisations
        )
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
        localisations=localisations,
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
    except ServerUnavailable as exc:
        logger.error("submission %s: %s", submission_id, exc)
        failure = failure_from_exception(exc, public=SERVER_ERROR_MESSAGE)
        submission_fail(lease, message=failure.message, detail=failure.detail, ours=True)
        return "failed"
    except SoftTimeLimitExceeded as exc:
        limit = getattr(settings, "VADI_SCORING_SOFT_TIME_LIMIT_S", None)
        limit_text = f" ({limit} s)" if limit else ""
        failure = failure_from_exception(
            exc,
            public=f"Scoring this bundle took longer than the time limit{limit_text}; a bundle within the size "
            "limits is scored well within it. This counts against your daily quota.",
        )
        submission_fail(lease, message=failure.message, detail=failure.detail)
        return "failed"
    except Exception as exc:
        if _retried(exc):
            raise
        logger.exception("submission %s: scoring failed", submission_id)
        failure = failure_from_exception(exc, public=CONTENT_ERROR_MESSAGE)
        submission_fail(lease, message=failure.message, detail=failure.detail)
        return "failed"

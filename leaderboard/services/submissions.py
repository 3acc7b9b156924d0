"""Submission writes: create (quotas, storage), status transitions, failure, admin review.

The lifecycle is ``queued -> validating -> scoring -> done | failed``. Every transition after
the claim is a conditional ``UPDATE`` on the task's lease (``jobs.JobLease``: the job still
belongs to the claiming task), so a task whose job was swept and handed to another worker
writes nothing. The scoring itself (reading and validating the archive, computing metrics)
lives in ``evaluation.services.submissions``, which writes nothing: every row write of a
submission, its results included, is made here.

Failures whose message starts with :data:`INVALID_BUNDLE_PREFIX` are the uploader's (a bad
bundle) and count against the daily quota; any other failure (server error, lost worker,
time limit) does not.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from ..cache import leaderboard_cache_invalidate
from ..models import (
    Category,
    JobStatus,
    Method,
    Provenance,
    Result,
    ReviewStatus,
    Submission,
    Suite,
    Visibility,
    method_name_clash_message,
)
from ..names import MethodNameError, method_name_normalise
from ..selectors.catalog import method_list
from ..selectors.visibility import viewer_of
from .jobs import (
    SCORE_SUBMISSION_TASK,
    JobKind,
    JobLease,
    clip,
    job_claim,
    job_enqueue,
    job_fail,
    job_progress,
)
from .results import result_record, results_publish

logger = logging.getLogger(__name__)

#: Failures caused by the upload itself start with this; only they count against the daily quota.
INVALID_BUNDLE_PREFIX = "Invalid bundle: "
_ZIP_MAGIC = b"PK\x03\x04"


class QuotaExceeded(ValidationError):
    """The user has too many submissions today or in flight."""


def submissions_per_day() -> int:
    return int(getattr(settings, "VADI_SUBMISSIONS_PER_DAY", 5))


def submissions_concurrent() -> int:
    return int(getattr(settings, "VADI_SUBMISSIONS_CONCURRENT", 2))


def bundle_max_bytes() -> int:
    return int(getattr(settings, "VADI_BUNDLE_MAX_BYTES", 1 << 30))


# Create --------------------------------------------------------------------------------------


def counted_today_q(*, since) -> Q:
    """Submissions that count against the daily quota: all of the window's, less system failures."""
    return Q(created_at__gte=since) & (~Q(status=JobStatus.FAILED) | Q(error_message__startswith=INVALID_BUNDLE_PREFIX))


def submission_quota_check(*, owner) -> None:
    """Raise :class:`QuotaExceeded` when ``owner`` may not submit now (call with the user row locked)."""
    mine = Submission.objects.filter(owner=owner)
    active = mine.filter(status__in=Submission.ACTIVE_STATUSES).count()
    limit = submissions_concurrent()
    if active >= limit:
        raise QuotaExceeded(
            f"you already have {active} submission(s) waiting or being scored (limit {limit}); "
            "try again when one has finished",
            code="concurrent_quota",
        )
    since = timezone.now() - timedelta(days=1)
    today = mine.filter(counted_today_q(since=since)).count()
    limit = submissions_per_day()
    if today >= limit:
        raise QuotaExceeded(
            f"you have made {today} submission(s) in the last 24 hours (limit {limit}); "
            "submissions that failed because of a server error do not count",
            code="daily_quota",
        )


def _free_method_key(key: str) -> str:
    """``key``, or ``key-2``, ``key-3``... : the first that no method has (within the field's length)."""
    limit = Method._meta.get_field("key").max_length
    candidate, n = key, 1
    while Method.objects.filter(key=candidate).exists():
        n += 1
        suffix = f"-{n}"
        candidate = key[: limit - len(suffix)].rstrip("-") + suffix
    return candidate


def method_for_user(*, owner, name: str) -> Method:
    """The method that ``owner``'s upload called ``name``; created (owned by them) when none looks like it.

    The name is normalised (NFKC, single spaces; ``leaderboard.names``) and compared with every
    method's through its TR 39 look-alike keys: "PatchCоre" (a Cyrillic о), "PATCHCORE",
    "Patch-Core" and "PatchCore" are one name. A name that looks like an existing method's is
    that method: the owner's own is reused; staff may submit for any method; anyone else is
    refused with a message naming the existing method (when they may see it,
    ``selectors.visibility``: a method that is not public yet is not named). A new name whose
    key is taken by a different-looking name ("PatchCore+" next to "PatchCore") gets the next
    free key (``patchcore-2``).
    """
    try:
        name = method_name_normalise(name)
    except MethodNameError as exc:
        raise ValidationError({"method": str(exc)}) from exc
    if len(name) > Method._meta.get_field("name").max_length:
        raise ValidationError({"method": "the method name is too long (120 characters at most)"})
    key = slugify(name)[: Method._meta.get_field("key").max_length].strip("-")
    if not key:
        raise ValidationError({"method": f"method name {name!r} needs at least one letter or digit"})
    candidate = Method(key=key, name=name, owner=owner)  # its family is not known
    method = candidate.look_alike()
    if method is None:
        candidate.key = _free_method_key(key)
        try:
            candidate.full_clean(validate_unique=False)
        except ValidationError as exc:
            raise ValidationError({"method": exc.messages}) from exc
        try:
            with transaction.atomic():
                candidate.save()
            return candidate
        except IntegrityError:  # another upload created the same (or a look-alike) name a moment ago
            method = candidate.look_alike()
            if method is None:
                raise
    if method.owner_id != owner.pk and not owner.is_staff:
        if method_list(viewer=viewer_of(owner)).filter(pk=method.pk).exists():
            message = method_name_clash_message(name, method)
        else:
            message = (
                f"the name {name!r} is taken (or too close to the name of a method that is not public yet: "
                "names are compared ignoring case, spaces, dashes and letters that look alike); choose another name"
            )
        raise ValidationError({"method": message}, code="look_alike")
    return method


class _HashingFile(File):
    """Copies an upload in chunks while counting its bytes and hashing them (never all in memory)."""

    def __init__(self, upload) -> None:
        super().__init__(upload, name=getattr(upload, "name", None))
        self.sha256 = hashlib.sha256()
        self.bytes_copied = 0

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        source = self.file
        if hasattr(source, "seek"):
            source.seek(0)
        iterator = (
            source.chunks(chunk_size)
            if hasattr(source, "chunks")
            else iter(lambda: source.read(chunk_size or self.DEFAULT_CHUNK_SIZE), b"")
        )
        for chunk in iterator:
            self.sha256.update(chunk)
            self.bytes_copied += len(chunk)
            yield chunk

    def multiple_chunks(self, chunk_size: int | None = None) -> bool:
        return True


def _check_upload(archive) -> None:
    size = getattr(archive, "size", None)
    if not size:
        raise ValidationError({"archive": "the uploaded file is empty"})
    limit = bundle_max_bytes()
    if size > limit:
        raise ValidationError({"archive": f"the bundle is {size:,} bytes; the limit is {limit:,} bytes"})
    archive.seek(0)
    magic = archive.read(4)
    archive.seek(0)
    if magic != _ZIP_MAGIC:
        raise ValidationError({"archive": "the bundle must be a zip archive (see the bundle format)"})


def submission_create(
    *,
    owner,
    method_name: str,
    suite_key: str,
    archive,
    visibility: str = Visibility.PUBLIC,
    description: str = "",
) -> Submission:
    """Store an uploaded bundle and queue it for scoring; returns the new submission.

    Everything is checked before anything is written: the suite, the visibility, the file
    (non-empty, within ``VADI_BUNDLE_MAX_BYTES``, a zip archive) and the quotas
    (``VADI_SUBMISSIONS_CONCURRENT`` in flight, ``VADI_SUBMISSIONS_PER_DAY`` per 24 hours),
    which are enforced with the user's row locked, so two racing uploads cannot both pass.
    The archive is copied to storage in chunks while its size and SHA-256 are computed. The
    scoring task is enqueued when the transaction commits.

    Raises
    ------
    QuotaExceeded
        Too many submissions in flight or in the last 24 hours.
    django.core.exceptions.ValidationError
        A bad field, naming it.
    """
    if visibility not in Visibility.values:
        raise ValidationError({"visibility": f"visibility must be one of {', '.join(Visibility.values)}"})
    suite = Suite.objects.filter(key=suite_key).first()
    if suite is None:
        known = ", ".join(Suite.objects.values_list("key", flat=True)) or "none yet"
        raise ValidationError({"suite": f"unknown suite {suite_key!r} (known: {known})"})
    _check_upload(archive)

    stored_name = None
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().only("pk").get(pk=owner.pk)
            submission_quota_check(owner=owner)
            method = method_for_user(owner=owner, name=method_name)
            submission = Submission(
                owner=owner,
                method=method,
                suite=suite,
                visibility=visibility,
                description=str(description or "")[:5000],
                celery_task_id=str(uuid.uuid4()),
                progress_message="queued for scoring",
            )
            copier = _HashingFile(archive)
            submission.archive.save(f"{submission.uuid}.zip", copier, save=False)
            stored_name = submission.archive.name
            submission.archive_size = copier.bytes_copied
            submission.archive_sha256 = copier.sha256.hexdigest()
            if submission.archive_size != archive.size:
                raise ValidationError({"archive": "the upload changed while it was being stored; try again"})
            submission.full_clean()
            submission.save()
            job_enqueue(SCORE_SUBMISSION_TASK, [submission.pk], task_ids=[submission.celery_task_id])
    except BaseException:
        if stored_name:
            Submission.archive.field.storage.delete(stored_name)
        raise
    logger.info("submission %s created by user %s (%s bytes)", submission.pk, owner.pk, submission.archive_size)
    return submission


# Worker-side transitions ----------------------------------------------------------------------


def submission_claim(*, submission_id: int, task_id: str) -> Submission | None:
    """Take the submission for task ``task_id``; ``None`` when it is finished or another task has it.

    Claimable: a queued submission; an active one already assigned to this task id (a retry or
    a broker redelivery of the same task); an active one whose heartbeat went stale with
    attempts left (its worker died). One conditional ``UPDATE`` decides (``jobs.job_claim``),
    so two tasks never both win. The winner holds ``SUBMISSION_JOBS.lease(submission_id, task_id)``.
    """
    won = job_claim(
        SUBMISSION_JOBS.lease(submission_id, task_id),
        claimed_status=JobStatus.VALIDATING,
        message="validating the bundle",
        reclaim_own=True,
    )
    if not won:
        return None
    return Submission.objects.select_related("method", "suite", "owner").get(pk=submission_id)


def submission_progress(lease: JobLease, *, progress: float, message: str) -> None:
    """Record validation or scoring progress, with a heartbeat.

    Raises :class:`JobLostError` when the submission no longer belongs to the lease's task.
    """
    job_progress(lease, progress=progress, message=message)


def submission_scoring_start(lease: JobLease, *, progress: float, message: str) -> None:
    """The bundle passed validation: move the submission from validating to scoring.

    Raises :class:`JobLostError` when the submission no longer belongs to the lease's task.
    """
    job_progress(lease, progress=progress, message=message, status=JobStatus.SCORING)


def submission_fail(lease: JobLease, *, message: str, detail: str = "", invalid_bundle: bool = False) -> bool:
    """Fail the lease's unfinished submission with a message; ``invalid_bundle`` says the upload was at fault.

    ``message`` is what the uploader reads (made public by ``jobs.error_fields``: no server
    path, setting name, traceback or exception class; an invalid bundle's message keeps the
    member names the uploader wrote, shown to them only); ``detail`` is kept for staff only.
    Failures of an invalid bundle start with :data:`INVALID_BUNDLE_PREFIX` (they count against
    the daily quota); no other message does. Returns whether it changed anything. Any results
    of the submission stop being current (there should be none: results are written only after
    a complete validation).
    """
    text = str(message).strip() or "failed"
    if invalid_bundle and not text.startswith(INVALID_BUNDLE_PREFIX):
        text = INVALID_BUNDLE_PREFIX + text
    if not invalid_bundle and text.startswith(INVALID_BUNDLE_PREFIX):
        text = text.removeprefix(INVALID_BUNDLE_PREFIX)
    return job_fail(
        lease,
        message=text,
        detail=detail,
        own_input=invalid_bundle,
        progress_message="failed: invalid bundle" if invalid_bundle else "failed",
    )


def _submission_unpublish(submission_id: int) -> None:
    """A failed submission's results stop being current (``SUBMISSION_JOBS.on_failed``)."""
    if Result.objects.filter(submission_id=submission_id, is_current=True).update(is_current=False):
        leaderboard_cache_invalidate()


@transaction.atomic
def submission_finish(
    lease: JobLease,
    *,
    results: Mapping[str, Mapping[str, float]],
    extra: Mapping[str, Mapping[str, Any]],
    evaluator_version: str,
    flagged_reason: str = "",
    summary: str = "",
) -> Submission:
    """Record a scored submission's values and finish it, in one transaction.

    ``results`` maps each category key of the submission's suite to its metric values;
    ``extra[key]`` is stored with that category's results (map size, dtype, archive hash...).
    Every value goes through ``result_record`` (update-or-create: a retried job writes each
    value once). Then the submission is done: public submissions that are not flagged are
    published (``results_publish``); private ones never are (their scores show only to their
    owner); flagged ones wait for an admin (``submission_review``).

    Raises
    ------
    JobLostError
        The submission no longer belongs to the lease's task (nothing is written).
    django.core.exceptions.ValidationError
        A value the leaderboard rejects, or a category outside the submission's suite.
    """
    submission = Submission.objects.select_related("method", "suite").get(pk=lease.pk)
    categories = {c.key: c for c in Category.objects.filter(suites=submission.suite_id, key__in=list(results))}
    outside = sorted(set(results) - set(categories))
    if outside:
        raise ValidationError(f"categories {', '.join(outside)} are not in suite {submission.suite.key!r}")
    for key, values in results.items():
        for metric, value in values.items():
            result_record(
                method=submission.method,
                category=categories[key],
                metric=metric,
                value=value,
                provenance=Provenance.SERVER_SCORED,
                evaluator_version=evaluator_version,
                submission=submission,
                extra=dict(extra.get(key) or {}),
            )
    now = timezone.now()
    fields = {
        "status": JobStatus.DONE,
        "progress": 1.0,
        "finished_at": now,
        "heartbeat_at": now,
        "progress_message": clip(summary or "scored"),
        "error_message": "",
    }
    if flagged_reason:
        fields["review_status"] = ReviewStatus.FLAGGED
        fields["review_note"] = flagged_reason
        fields["progress_message"] = clip(f"scored; held for review: {flagged_reason}")
    if not lease.rows().filter(status=JobStatus.SCORING).update(**fields):
        raise lease.lost()
    submission.refresh_from_db()
    if not flagged_reason and submission.visibility == Visibility.PUBLIC:
        results_publish(submission=submission)
    return submission


#: Uploaded bundles, scored by the ``evaluation.score_submission`` task.
SUBMISSION_JOBS = JobKind(
    label="submission",
    model=Submission,
    task_name=SCORE_SUBMISSION_TASK,
    give_up_message="Server error: gave up after repeated temporary errors; it does not count against your quota",
    on_failed=_submission_unpublish,
)


# Admin review ----------------------------------------------------------------------------------


@transaction.atomic
def submission_review(*, submission: Submission, approve: bool, reviewer=None, note: str = "") -> Submission:
    """Approve (publish, when public) or reject (unpublish) a scored submission."""
    submission = Submission.objects.select_for_update().get(pk=submission.pk)
    if submission.status != JobStatus.DONE:
        raise ValidationError(f"submission {submission.pk} is {submission.status}; only scored ones can be reviewed")
    who = getattr(reviewer, "get_username", lambda: "")() if reviewer is not None else ""
    verdict = "approved" if approve else "rejected"
    stamp = f"{verdict} by {who or 'an admin'} on {timezone.now():%Y-%m-%d %H:%M} UTC"
    submission.review_status = ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED
    submission.review_note = "\n".join(part for part in (submission.review_note, stamp, note) if part)
    submission.save(update_fields=["review_status", "review_note", "updated_at"])
    if approve:
        if submission.visibility == Visibility.PUBLIC:
            results_publish(submission=submission)
    elif Result.objects.filter(submission=submission, is_current=True).update(is_current=False):
        leaderboard_cache_invalidate()
    logger.info("submission %s %s", submission.pk, stamp)
    return submission

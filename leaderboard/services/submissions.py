"""Submission writes: create (quotas, storage), status transitions, failure, admin review.

The lifecycle is ``queued -> validating -> scoring -> done | failed``. Every transition after
the claim is a conditional ``UPDATE`` on the job still belonging to the claiming task
(``celery_task_id``), so a task whose job was swept and handed to another worker writes
nothing. The scoring itself lives in ``evaluation.services.submissions``; this module is the
leaderboard's side: who may submit what, how often, and what the row says.

Failures whose message starts with :data:`INVALID_BUNDLE_PREFIX` are the uploader's (a bad
bundle) and count against the daily quota; any other failure (server error, lost worker,
time limit) does not.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from ..models import JobStatus, Method, Result, ReviewStatus, Submission, Suite, Visibility
from .jobs import JobLostError, job_claim
from .results import leaderboard_cache_invalidate, results_publish

logger = logging.getLogger(__name__)

#: Celery task that scores a submission (``evaluation.tasks.submissions``); enqueued by name.
SCORE_SUBMISSION_TASK = "evaluation.score_submission"
#: Failures caused by the upload itself start with this; only they count against the daily quota.
INVALID_BUNDLE_PREFIX = "Invalid bundle: "
#: States of a submission that a worker holds (what the claim, heartbeats and the sweeper watch).
RUNNING_STATUSES = (JobStatus.VALIDATING, JobStatus.SCORING)
ACTIVE_STATUSES = (JobStatus.QUEUED, *RUNNING_STATUSES)
_MESSAGE_LENGTH = Submission._meta.get_field("progress_message").max_length
_ZIP_MAGIC = b"PK\x03\x04"


class QuotaExceeded(ValidationError):
    """The user has too many submissions today or in flight."""


def _clip(message: str, length: int = _MESSAGE_LENGTH) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= length else message[: length - 1] + "…"


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
    active = mine.filter(status__in=ACTIVE_STATUSES).count()
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


def method_for_user(*, owner, name: str) -> Method:
    """The method called ``name`` owned by ``owner``; created when it does not exist yet.

    A method of the same key owned by someone else (or a registered algorithm) is refused,
    except for staff, who may submit for any method.
    """
    name = " ".join(str(name or "").split())
    if not name:
        raise ValidationError({"method": "give the method's name"})
    if len(name) > Method._meta.get_field("name").max_length:
        raise ValidationError({"method": "the method name is too long (120 characters at most)"})
    key = slugify(name)[: Method._meta.get_field("key").max_length].strip("-")
    if not key:
        raise ValidationError({"method": f"method name {name!r} needs at least one letter or digit"})
    method = Method.objects.filter(key=key).first()
    if method is None:
        method = Method(key=key, name=name, owner=owner, family="external")
        method.full_clean(validate_unique=False)
        try:
            with transaction.atomic():
                method.save()
            return method
        except IntegrityError:  # another user created the same key a moment ago
            method = Method.objects.get(key=key)
    if method.owner_id != owner.pk and not owner.is_staff:
        raise ValidationError(
            {"method": f"the method {method.name!r} belongs to another user or the library; choose another name"}
        )
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


def _enqueue(submission_id: int, task_id: str) -> None:
    from celery import signature

    import evaluation.tasks  # noqa: F401  (registers the tasks, so eager mode runs them in-process)

    signature(SCORE_SUBMISSION_TASK, args=[submission_id]).apply_async(task_id=task_id)


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
            pk, task_id = submission.pk, submission.celery_task_id
            transaction.on_commit(lambda: _enqueue(pk, task_id))
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
    so two tasks never both win.
    """
    won = job_claim(
        Submission.objects.filter(pk=submission_id),
        task_id=task_id,
        running=RUNNING_STATUSES,
        claimed_status=JobStatus.VALIDATING,
        message="validating the bundle",
        reclaim_own=True,
    )
    if not won:
        return None
    return Submission.objects.select_related("method", "suite", "owner").get(pk=submission_id)


def submission_progress(
    *, submission_id: int, task_id: str, progress: float, message: str, status: str | None = None
) -> None:
    """Record progress (and optionally move validating -> scoring), with a heartbeat.

    Raises :class:`JobLostError` when the submission no longer belongs to ``task_id``.
    """
    fields = {
        "progress": min(1.0, max(0.0, float(progress))),
        "progress_message": _clip(message),
        "heartbeat_at": timezone.now(),
    }
    if status is not None:
        if status not in RUNNING_STATUSES:
            raise ValueError(f"progress can move a submission only to validating or scoring, not {status!r}")
        fields["status"] = status
    alive = Submission.objects.filter(pk=submission_id, celery_task_id=task_id, status__in=RUNNING_STATUSES).update(
        **fields
    )
    if not alive:
        raise JobLostError(f"submission {submission_id} no longer belongs to task {task_id}")


def submission_release(*, submission_id: int, task_id: str, reason: str) -> bool:
    """Put an active submission back in the queue before its task retries (transient error)."""
    return bool(
        Submission.objects.filter(pk=submission_id, celery_task_id=task_id, status__in=RUNNING_STATUSES).update(
            status=JobStatus.QUEUED,
            heartbeat_at=timezone.now(),
            progress=0.0,
            progress_message=_clip(f"retrying after a temporary error: {reason}"),
        )
    )


def submission_mark_failed(
    *, submission_id: int, message: str, invalid_bundle: bool = False, task_id: str | None = None
) -> bool:
    """Fail an unfinished submission with a message; ``invalid_bundle`` says the upload was at fault.

    Conditional on the submission not being finished (and, with ``task_id``, on it belonging to
    that task). Returns whether it changed anything. Any results of the submission stop being
    current (there should be none: results are written only after a complete validation).
    """
    text = str(message).strip() or "failed"
    if invalid_bundle and not text.startswith(INVALID_BUNDLE_PREFIX):
        text = INVALID_BUNDLE_PREFIX + text
    if not invalid_bundle and text.startswith(INVALID_BUNDLE_PREFIX):
        text = text.removeprefix(INVALID_BUNDLE_PREFIX)
    now = timezone.now()
    rows = Submission.objects.filter(pk=submission_id).exclude(status__in=(JobStatus.DONE, JobStatus.FAILED))
    if task_id is not None:
        rows = rows.filter(Q(celery_task_id=task_id) | Q(status=JobStatus.QUEUED))
    with transaction.atomic():
        changed = rows.update(
            status=JobStatus.FAILED,
            error_message=text[:10_000],
            progress_message=_clip("failed: invalid bundle" if invalid_bundle else "failed"),
            finished_at=now,
            heartbeat_at=now,
        )
        if changed and Result.objects.filter(submission_id=submission_id, is_current=True).update(is_current=False):
            leaderboard_cache_invalidate()
    if changed:
        logger.warning("submission %s failed: %s", submission_id, text)
    return bool(changed)


def submission_mark_done(
    *, submission_id: int, task_id: str, flagged_reason: str = "", summary: str = ""
) -> Submission:
    """Finish a scored submission: publish its results, or hold them for review when flagged.

    Call inside the transaction that recorded the results. Public submissions that are not
    flagged are published (``results_publish``); private ones never are (their scores show
    only to their owner); flagged ones wait for an admin (``submission_review``).

    Raises :class:`JobLostError` when the submission no longer belongs to ``task_id``.
    """
    now = timezone.now()
    fields = {
        "status": JobStatus.DONE,
        "progress": 1.0,
        "finished_at": now,
        "heartbeat_at": now,
        "progress_message": _clip(summary or "scored"),
        "error_message": "",
    }
    if flagged_reason:
        fields["review_status"] = ReviewStatus.FLAGGED
        fields["review_note"] = flagged_reason
        fields["progress_message"] = _clip(f"scored; held for review: {flagged_reason}")
    updated = Submission.objects.filter(pk=submission_id, celery_task_id=task_id, status=JobStatus.SCORING).update(
        **fields
    )
    if not updated:
        raise JobLostError(f"submission {submission_id} no longer belongs to task {task_id}")
    submission = Submission.objects.get(pk=submission_id)
    if not flagged_reason and submission.visibility == Visibility.PUBLIC:
        results_publish(submission=submission)
    return submission


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

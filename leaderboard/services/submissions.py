"""Submission writes: create (quotas, storage), status transitions, failure, admin review.

The lifecycle is ``queued -> validating -> scoring -> done | failed``. Every transition after
the claim is a conditional ``UPDATE`` on the task's lease (``jobs.JobLease``: the job still
belongs to the claiming task), so a task whose job was swept and handed to another worker
writes nothing. The scoring itself (reading and validating the archive, computing metrics)
lives in ``evaluation.services.submissions``, which writes nothing: every row write of a
submission, its results included, is made here.

The daily quota counts every submission of the last 24 hours except those that failed because
of our own infrastructure (``quota_exempt``: temporary errors that outlasted their retries, the
ground truth or the stored archive unavailable). A failure caused by the upload's content counts,
whether the validator caught it (a message starting with :data:`INVALID_BUNDLE_PREFIX`) or not.

No upload is lost: the row is committed first (``dispatched_at`` null), its scoring task is sent
after the commit with a bounded wait (``jobs.job_publish``), and a submission that is still
``queued`` without a sent message, or whose message was not picked up within
``VADI_SCORING_RESEND_AFTER_S``, is sent by :func:`submissions_dispatch`, which the sweeper
calls every minute. A duplicate message is harmless: the claim is one conditional ``UPDATE``.
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

from evaluation.bundles import BundleError, BundleLimits, Precheck, precheck

from ..cache import leaderboard_cache_invalidate
from ..failures import public_message
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
from ..names import MethodNameError, method_name_keys, method_name_normalise
from ..selectors.catalog import method_list
from ..selectors.localisation import PUBLIC_GROUND_TRUTH_DATASETS
from ..selectors.visibility import viewer_of
from .dispatch import DispatchReport
from .jobs import (
    SCORE_SUBMISSION_TASK,
    JobKind,
    JobLease,
    clip,
    job_claim,
    job_fail,
    job_progress,
    job_publish,
    setting_or_env,
)
from .localisation import localisation_record
from .results import result_record, results_publish

logger = logging.getLogger(__name__)

#: Problems the validator names in an upload start with this (they count against the daily quota,
#: as does every failure but those of our infrastructure: ``Submission.quota_exempt``).
INVALID_BUNDLE_PREFIX = "Invalid bundle: "
_ZIP_MAGIC = b"PK\x03\x04"
#: The answer to an archive that the upload-time check could not read (a reader bug, never a crash).
UNREADABLE_MESSAGE = (
    f"{INVALID_BUNDLE_PREFIX}the archive could not be read: its structure is not one this server accepts; "
    "write it with write_bundle or a plain zip tool (see the bundle format)"
)
#: The progress message of a submission between its upload and a worker's claim.
WAITING_MESSAGE = "accepted, waiting for a worker"


class QuotaExceeded(ValidationError):
    """The user has too many submissions today or in flight.

    ``retry_after_s``: seconds until the next daily slot frees (``None``: when a submission in
    flight finishes), sent as the 429's ``Retry-After``.
    """

    def __init__(self, message, code=None, params=None, *, retry_after_s: float | None = None):
        super().__init__(message, code=code, params=params)
        self.retry_after_s = retry_after_s


def submissions_per_day() -> int:
    return int(getattr(settings, "VADI_SUBMISSIONS_PER_DAY", 5))


def submissions_concurrent() -> int:
    return int(getattr(settings, "VADI_SUBMISSIONS_CONCURRENT", 2))


def blind_submissions_per_day() -> int:
    return int(getattr(settings, "VADI_BLIND_SUBMISSIONS_PER_DAY", 1))


def blind_limit_message(limit: int | None = None) -> str:
    """The blind suite's limit and its reason, as the suite's page and a refusal state them."""
    limit = blind_submissions_per_day() if limit is None else limit
    return (
        f"The blind suite scores at most {limit} submission{'' if limit == 1 else 's'} per user in 24 hours, "
        "and shows only category-level metrics: its labels are secret, and many scored uploads (or per-image "
        "figures) would let anyone probe them."
    )


def bundle_max_bytes() -> int:
    return int(getattr(settings, "VADI_BUNDLE_MAX_BYTES", 1 << 30))


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


def scoring_resend_after_s() -> float:
    """Seconds after which a sent, still unclaimed scoring task is sent again (``VADI_SCORING_RESEND_AFTER_S``)."""
    return float(setting_or_env("VADI_SCORING_RESEND_AFTER_S", 15 * 60))


def manifest_method_matches(manifest_method: str, *, name: str, key: str = "") -> bool:
    """Whether a manifest's ``method`` names the method called ``name`` (key ``key``).

    The same name ignoring case, the method's key, a name with the same key (``slugify``), or
    a name that looks the same (``names.method_name_keys``: case, width, spaces, dashes, letters
    of other scripts). Used at upload and by the worker, so they never disagree.
    """
    given = str(manifest_method)
    if given.casefold() in {name.casefold(), key.casefold()} - {""}:
        return True
    slug = slugify(given)
    if slug and slug in {slugify(name), key}:
        return True
    try:
        return method_name_keys(given)[0] == method_name_keys(name)[0]
    except (MethodNameError, ValueError):
        return False


# Create --------------------------------------------------------------------------------------


def counted_today_q(*, since) -> Q:
    """Submissions that count against the daily quota: all of the window's, less failures of our infrastructure."""
    return Q(created_at__gte=since) & Q(quota_exempt=False)


def submission_quota_check(*, owner, suite: Suite | None = None) -> None:
    """Raise :class:`QuotaExceeded` when ``owner`` may not submit now (call with the user row locked).

    A blind suite has its own, stricter limit (``VADI_BLIND_SUBMISSIONS_PER_DAY``) on top.
    """
    mine = Submission.objects.filter(owner=owner)
    active = mine.filter(status__in=Submission.ACTIVE_STATUSES).count()
    limit = submissions_concurrent()
    if active >= limit:
        raise QuotaExceeded(
            f"you already have {active} submission(s) waiting or being scored (limit {limit}); "
            "try again when one has finished",
            code="concurrent_quota",
        )
    now = timezone.now()
    since = now - timedelta(days=1)
    counted = mine.filter(counted_today_q(since=since))
    today = counted.count()
    limit = submissions_per_day()
    if today >= limit:
        # The window slides: a slot frees 24 hours after the oldest submissions that fill it.
        oldest = list(counted.order_by("created_at").values_list("created_at", flat=True)[: today - limit + 1])
        frees_at = oldest[-1] + timedelta(days=1)
        wait_s = max(1.0, (frees_at - now).total_seconds())
        raise QuotaExceeded(
            f"you have made {today} submission(s) in the last 24 hours (limit {limit}); "
            "failed submissions count too, except those that failed because of a problem on our side; "
            f"the next slot frees at {frees_at:%Y-%m-%d %H:%M} UTC (in {_duration(wait_s)})",
            code="daily_quota",
            retry_after_s=wait_s,
        )
    if suite is not None and suite.is_blind:
        blind_today = mine.filter(counted_today_q(since=since), suite=suite).count()
        limit = blind_submissions_per_day()
        if blind_today >= limit:
            raise QuotaExceeded(
                f"you have made {blind_today} submission(s) to the {suite.name} suite in the last 24 hours "
                f"(limit {limit}). {blind_limit_message(limit)}",
                code="blind_quota",
            )


def _duration(seconds: float) -> str:
    """``"3 h 05 min"``, ``"12 min"``, ``"45 s"``: a wait said plainly."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min" if minutes else f"{secs} s"


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
    candidate, method = _method_lookup(owner=owner, name=name)
    if method is None:
        candidate.key = _free_method_key(candidate.key)
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
            _method_may_use(owner=owner, name=candidate.name, method=method)
    return method


def method_name_check(*, owner, name: str) -> None:
    """Raise the ``ValidationError`` that :func:`method_for_user` would raise for ``name``, writing nothing."""
    _method_lookup(owner=owner, name=name)


def _method_lookup(*, owner, name: str) -> tuple[Method, Method | None]:
    """The unsaved candidate for ``name`` and the existing method it names (``None``: a new one).

    Raises ``ValidationError`` on ``method`` for a bad name or one taken by someone else.
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
    if method is not None:
        _method_may_use(owner=owner, name=name, method=method)
    return candidate, method


def _method_may_use(*, owner, name: str, method: Method) -> None:
    if method.owner_id != owner.pk and not owner.is_staff:
        if method_list(viewer=viewer_of(owner)).filter(pk=method.pk).exists():
            message = method_name_clash_message(name, method)
        else:
            message = (
                f"the name {name!r} is taken (or too close to the name of a method that is not public yet: "
                "names are compared ignoring case, spaces, dashes and letters that look alike); choose another name"
            )
        raise ValidationError({"method": message}, code="look_alike")


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


def submission_precheck(archive, *, suite_key: str | None = None, method_name: str | None = None) -> Precheck:
    """The cheap checks of an upload, in the request: ``evaluation.bundles.precheck`` against the form.

    Reads the zip structure and ``manifest.json`` only (a few kilobytes, whatever the size):
    the zip signature and structure, the size limits (``VADI_BUNDLE_*``), the manifest (present,
    parseable, its keys), the manifest's suite against ``suite_key`` and its categories against
    the suite's, its method against ``method_name`` (:func:`manifest_method_matches`), and the
    member set. An empty ``suite_key`` or ``method_name`` is taken from the manifest.

    Raises
    ------
    django.core.exceptions.ValidationError
        The first problem, on the field to change (``archive``, ``suite`` or ``method``), with a
        message saying what to change, e.g. ``Invalid bundle: manifest.json: the manifest says
        suite 'synthetic' but the form says 'vadi': choose suite 'synthetic', or upload a bundle
        made for suite 'vadi'``.
    """
    _check_upload(archive)
    checked = _precheck(archive, field="archive")
    manifest = checked.manifest
    suite_key = suite_key or manifest.suite
    suite = Suite.objects.filter(key=suite_key).first()
    if suite is None:
        known = ", ".join(Suite.objects.values_list("key", flat=True)) or "none yet"
        if suite_key != manifest.suite:
            raise ValidationError({"suite": f"unknown suite {suite_key!r} (known: {known})"})
        raise ValidationError(
            {"archive": public_message(
                f"{INVALID_BUNDLE_PREFIX}manifest.json: the manifest names suite {manifest.suite!r}, which this "
                f"server does not have (known: {known}); make the bundle for one of these",
                own_input=True,
            )}
        )  # fmt: skip
    categories = list(suite.categories.values_list("key", flat=True))
    _precheck(
        archive, field="suite" if manifest.suite != suite_key else "archive", suite=suite_key, categories=categories
    )
    if suite.is_blind and manifest.format_version == 1:
        raise ValidationError(
            {"archive": (
                f"{INVALID_BUNDLE_PREFIX}manifest.json: format_version 1 (file-path ids) is not accepted for the "
                f"{suite.name} suite; write format_version 2 with the ids of the downloaded images (their file names)"
            )}
        )  # fmt: skip
    if method_name and not manifest_method_matches(manifest.method, name=method_name):
        raise ValidationError({"method": _method_mismatch(manifest.method, method_name)})
    return checked


def _precheck(archive, *, field: str, **against) -> Precheck:
    """``evaluation.bundles.precheck`` with the server's limits; a problem is a ValidationError on ``field``."""
    try:
        return precheck(archive, limits=bundle_limits(), **against)
    except BundleError as exc:
        raise ValidationError({field: INVALID_BUNDLE_PREFIX + public_message(exc, own_input=True)}) from exc
    except (ValueError, LookupError, ArithmeticError, RecursionError, MemoryError) as exc:
        # Not expected (the reader turns every problem into a BundleError), but a crafted archive
        # must get a refusal, never a crash: the worker's full validation would meet the same.
        logger.exception("upload-time check crashed on an archive; refused")
        raise ValidationError({"archive": UNREADABLE_MESSAGE}) from exc


def _method_mismatch(manifest_method: str, form_method: str) -> str:
    return public_message(
        f"{INVALID_BUNDLE_PREFIX}manifest.json: the manifest names method {manifest_method!r} but the form says "
        f"{form_method!r}: enter method {manifest_method!r} (or leave the method empty), or change the "
        f'manifest\'s "method" to {form_method!r}',
        own_input=True,
    )


def submission_create(
    *,
    owner,
    method_name: str | None,
    suite_key: str | None,
    archive,
    visibility: str = Visibility.PUBLIC,
    description: str = "",
) -> Submission:
    """Store an uploaded bundle and queue it for scoring; returns the new submission.

    Everything is checked before anything is written: the visibility, the file and its cheap
    checks (:func:`submission_precheck`: within ``VADI_BUNDLE_*``, a zip archive, the manifest
    present, parseable and agreeing with ``suite_key`` and ``method_name``, which default to
    the manifest's when empty) and the quotas (``VADI_SUBMISSIONS_CONCURRENT`` in flight,
    ``VADI_SUBMISSIONS_PER_DAY`` per 24 hours), which are enforced with the user's row locked,
    so two racing uploads cannot both pass. The archive is copied to storage in chunks while
    its size and SHA-256 are computed. After the commit the scoring task is sent with a bounded
    wait (:func:`submission_send`); when the broker cannot take it, the submission stays
    ``queued`` ("accepted, waiting for a worker") and the sweeper sends it later.

    Raises
    ------
    QuotaExceeded
        Too many submissions in flight or in the last 24 hours.
    django.core.exceptions.ValidationError
        A bad field, naming it.
    """
    if visibility not in Visibility.values:
        raise ValidationError({"visibility": f"visibility must be one of {', '.join(Visibility.values)}"})
    if suite_key and not Suite.objects.filter(key=suite_key).exists():
        known = ", ".join(Suite.objects.values_list("key", flat=True)) or "none yet"
        raise ValidationError({"suite": f"unknown suite {suite_key!r} (known: {known})"})
    if method_name:
        method_name_check(owner=owner, name=method_name)  # a name the user may not use is the first thing to say
    checked = submission_precheck(archive, suite_key=suite_key, method_name=method_name)
    suite = Suite.objects.get(key=suite_key or checked.manifest.suite)
    method_name = method_name or checked.manifest.method

    stored_name = None
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().only("pk").get(pk=owner.pk)
            submission_quota_check(owner=owner, suite=suite)
            method = method_for_user(owner=owner, name=method_name)
            if not manifest_method_matches(checked.manifest.method, name=method.name, key=method.key):
                raise ValidationError({"method": _method_mismatch(checked.manifest.method, method.name)})
            submission = Submission(
                owner=owner,
                method=method,
                suite=suite,
                visibility=visibility,
                description=str(description or "")[:5000],
                celery_task_id=str(uuid.uuid4()),
                progress_message=WAITING_MESSAGE,
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
            pk = submission.pk
            transaction.on_commit(lambda: submission_send(pk))
    except BaseException:
        if stored_name:
            Submission.archive.field.storage.delete(stored_name)
        raise
    logger.info("submission %s created by user %s (%s bytes)", submission.pk, owner.pk, submission.archive_size)
    return submission


# Dry run --------------------------------------------------------------------------------------


def submission_validate(
    *, owner, archive, suite_key: str | None = None, method_name: str | None = None
) -> list[dict[str, str | None]]:
    """Every problem an upload of ``archive`` would meet, at once; scores nothing, writes nothing.

    The dry run of :func:`submission_create` and of the worker's validation together: the file
    (size, zip signature), the archive's structure, the manifest against the form (suite and
    method, which default to the manifest's when empty), the method name (one ``owner`` may
    use), the suite's category set (missing and extra categories), the member set, and for every
    category the bundle and the suite share its ids against the **published** test ids
    (``Category.test_ids``) and its ``.npy`` headers, shapes, dtypes and values. No quota is
    checked or used: the API view has its own rate limit (``VADI_VALIDATE_RATE``).

    Returns
    -------
    list of dict
        ``{"field": "archive" | "suite" | "method", "member": str | None, "message": str}`` per
        problem, in the order found; empty when the upload would be accepted and scored.
    """
    from evaluation.bundles import BundleReader

    problems: list[dict[str, str | None]] = []

    def add(field: str, message: str, member: str | None = None) -> None:
        problems.append({"field": field, "member": member, "message": message})

    def add_validation(exc: ValidationError, default_field: str) -> None:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {default_field: exc.messages}
        for field, messages in errors.items():
            for message in messages:
                add(field if field in ("archive", "suite", "method") else default_field, message)

    suite_known = bool(suite_key) and Suite.objects.filter(key=suite_key).exists()
    if suite_key and not suite_known:
        known = ", ".join(Suite.objects.values_list("key", flat=True)) or "none yet"
        add("suite", f"unknown suite {suite_key!r} (known: {known})")
    if method_name:
        try:
            method_name_check(owner=owner, name=method_name)
        except ValidationError as exc:
            add_validation(exc, "method")
    try:
        _check_upload(archive)
    except ValidationError as exc:
        add_validation(exc, "archive")
        return problems
    try:
        with BundleReader(archive, limits=bundle_limits()) as reader:
            try:
                manifest = reader.read_manifest()
            except BundleError as exc:
                add("archive", INVALID_BUNDLE_PREFIX + public_message(exc, own_input=True), exc.member)
                return problems
            chosen = suite_key if suite_known else manifest.suite  # an unknown form suite is reported above
            suite = Suite.objects.filter(key=chosen).first()
            expected = None
            if suite is None:
                known = ", ".join(Suite.objects.values_list("key", flat=True)) or "none yet"
                add("archive", public_message(
                    f"{INVALID_BUNDLE_PREFIX}manifest.json: the manifest names suite {manifest.suite!r}, which this "
                    f"server does not have (known: {known}); make the bundle for one of these",
                    own_input=True,
                ), "manifest.json")  # fmt: skip
            elif suite is not None:
                rows = suite.categories.order_by("key").values_list("key", "test_ids", "test_files")
                if manifest.format_version == 1 and suite.is_blind:
                    add("archive", (
                        f"{INVALID_BUNDLE_PREFIX}manifest.json: format_version 1 (file-path ids) is not accepted "
                        f"for the {suite.name} suite; write format_version 2 with the ids of the downloaded images"
                    ), "manifest.json")  # fmt: skip
                if manifest.format_version == 1 and not suite.is_blind:  # file-path ids, as the worker reads them
                    expected = {
                        key: [str((files or {}).get(i, i)) for i in (ids or [])] for key, ids, files in rows
                    }
                else:
                    expected = {key: [str(image_id) for image_id in (ids or [])] for key, ids, _files in rows}
            if method_name and not manifest_method_matches(manifest.method, name=method_name):
                add("method", _method_mismatch(manifest.method, method_name), "manifest.json")
            for problem in reader.check(suite=suite.key if suite else None, expected_ids=expected):
                add("archive", INVALID_BUNDLE_PREFIX + public_message(problem, own_input=True), problem.member)
    except BundleError as exc:
        add("archive", INVALID_BUNDLE_PREFIX + public_message(exc, own_input=True), exc.member)
    except (ValueError, LookupError, ArithmeticError, RecursionError, MemoryError):
        logger.exception("dry-run validation crashed on an archive; refused")
        add("archive", UNREADABLE_MESSAGE)
    return problems


# Sending to the workers -----------------------------------------------------------------------


def submission_send(submission_id: int) -> bool:
    """Send the scoring task of a queued submission that has none in the broker; whether it was sent.

    Marks ``dispatched_at`` with one conditional ``UPDATE`` first (so two senders never both
    send), then publishes with a bounded wait (``jobs.job_publish``); when the broker cannot
    take the message the mark is undone, the submission stays ``queued`` and
    :func:`submissions_dispatch` (the sweeper) sends it later. Never raises for the broker.
    """
    now = timezone.now()
    rows = Submission.objects.filter(pk=submission_id, status=JobStatus.QUEUED, dispatched_at__isnull=True)
    task_id = rows.values_list("celery_task_id", flat=True).first()
    if task_id is None:
        return False  # finished, claimed, or sent by someone else
    task_id = task_id or str(uuid.uuid4())
    if not rows.update(dispatched_at=now, celery_task_id=task_id):
        return False
    if job_publish(SCORE_SUBMISSION_TASK, submission_id, task_id=task_id):
        return True
    Submission.objects.filter(pk=submission_id, status=JobStatus.QUEUED, dispatched_at=now).update(dispatched_at=None)
    return False


def submissions_dispatch(*, now=None, held_only: bool = False) -> DispatchReport:
    """Send every queued submission that has no message in the broker; report what was sent.

    Two kinds: never sent (``dispatched_at`` null: the broker was unreachable at upload, or
    the sweeper requeued it after a lost worker), and *presumed lost*: sent more than
    :func:`scoring_resend_after_s` ago and still not claimed (a flushed or restarted broker, a
    message dropped after the publish). A lost one is sent under a fresh task id; should the
    first message turn up after all, whichever arrives second finds the submission claimed or
    finished and does nothing (``submission_claim``), so a submission is scored once and has
    one set of results however often it is sent. Stops at the first failed send (the broker
    is down; the next sweep tries again). Called by the sweeper (``services.sweeper``), and with
    ``held_only`` (never-sent ones only) by a scoring worker each time it connects to the broker
    (``evaluation.tasks.connect``), so that uploads accepted while the broker was down are sent
    as soon as it is back.
    """
    now = timezone.now() if now is None else now
    report = DispatchReport()
    cutoff = now - timedelta(seconds=scoring_resend_after_s())
    lost = Submission.objects.filter(status=JobStatus.QUEUED, dispatched_at__lt=cutoff)
    if held_only:
        lost = lost.none()
    for pk, seen in lost.order_by("dispatched_at", "pk").values_list("pk", "dispatched_at"):
        task_id = str(uuid.uuid4())
        if not Submission.objects.filter(pk=pk, status=JobStatus.QUEUED, dispatched_at=seen).update(
            dispatched_at=None, celery_task_id=task_id
        ):
            continue
        logger.warning("submission %s: its scoring message looks lost (sent %s); sending it again", pk, seen)
        if not submission_send(pk):
            return report
        report.resent.append(pk)
    held = Submission.objects.filter(status=JobStatus.QUEUED, dispatched_at__isnull=True).order_by("created_at", "pk")
    for pk in held.values_list("pk", flat=True):
        if not submission_send(pk):
            if Submission.objects.filter(pk=pk, status=JobStatus.QUEUED, dispatched_at__isnull=True).exists():
                return report  # the broker refused it: try again at the next sweep
            continue
        report.dispatched.append(pk)
    return report


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


def submission_fail(
    lease: JobLease, *, message: str, detail: str = "", invalid_bundle: bool = False, ours: bool = False
) -> bool:
    """Fail the lease's unfinished submission with a message; ``invalid_bundle`` says the upload was at fault.

    ``ours`` says the failure is our infrastructure's (the ground truth or the stored archive
    unavailable): the submission is then ``quota_exempt``. Every other failure counts against
    the daily quota, including content failures the validator did not name (``invalid_bundle``
    false, ``ours`` false).

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
        fields={"quota_exempt": True} if ours and not invalid_bundle else None,
    )


def _submission_failed(submission_id: int) -> None:
    """What a failure leaves (``SUBMISSION_JOBS.on_failed``, in the failing transaction): nothing that outlives it.

    Its results (there should be none) stop being current, and its archive is deleted from
    storage once the transaction commits (the row keeps no file name): a failed submission is
    final, nothing reads its archive again. The row itself stays, so that its owner reads why
    it failed and the quota counts it.
    """
    if Result.objects.filter(submission_id=submission_id, is_current=True).update(is_current=False):
        leaderboard_cache_invalidate()
    name = Submission.objects.filter(pk=submission_id).values_list("archive", flat=True).first()
    if not name:
        return
    Submission.objects.filter(pk=submission_id).update(archive="")

    def delete() -> None:
        try:
            Submission.archive.field.storage.delete(name)
        except OSError:  # the next failure or an admin cleans up; nothing else reads it
            logger.warning("submission %s: could not delete its archive", submission_id, exc_info=True)

    transaction.on_commit(delete)


@transaction.atomic
def submission_finish(
    lease: JobLease,
    *,
    results: Mapping[str, Mapping[str, float]],
    extra: Mapping[str, Mapping[str, Any]],
    evaluator_version: str,
    flagged_reason: str = "",
    summary: str = "",
    localisations: Mapping[str, Mapping[str, Any]] | None = None,
) -> Submission:
    """Record a scored submission's values and finish it, in one transaction.

    ``results`` maps each category key of the submission's suite to its metric values;
    ``extra[key]`` is stored with that category's results (map size, dtype, archive hash...).
    Every value goes through ``result_record`` (update-or-create: a retried job writes each
    value once). Then the submission is done: public submissions that are not flagged are
    published (``results_publish``); private ones never are (their scores show only to their
    owner); flagged ones wait for an admin (``submission_review``). ``localisations[key]`` (what
    PL decided anomaly by anomaly, ``evaluation.scoring.score_bundle``) is kept beside the PL
    result of a category whose dataset's ground truth is public (``localisation_record``); on a
    blind suite an uploader could probe it, so it is not kept there.

    Raises
    ------
    JobLostError
        The submission no longer belongs to the lease's task (nothing is written).
    django.core.exceptions.ValidationError
        A value the leaderboard rejects, or a category outside the submission's suite.
    """
    submission = Submission.objects.select_related("method", "suite").get(pk=lease.pk)
    categories = {
        c.key: c
        for c in Category.objects.filter(suites=submission.suite_id, key__in=list(results)).select_related("dataset")
    }
    outside = sorted(set(results) - set(categories))
    if outside:
        raise ValidationError(f"categories {', '.join(outside)} are not in suite {submission.suite.key!r}")
    localisations = localisations or {}
    for key, values in results.items():
        for metric, value in values.items():
            result = result_record(
                method=submission.method,
                category=categories[key],
                metric=metric,
                value=value,
                provenance=Provenance.SERVER_SCORED,
                evaluator_version=evaluator_version,
                submission=submission,
                extra=dict(extra.get(key) or {}),
            )
            public = categories[key].dataset.key in PUBLIC_GROUND_TRUTH_DATASETS
            if metric == "pl" and public and isinstance(localisations.get(key), Mapping):
                localisation_record(result=result, document=localisations[key])
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
    on_failed=_submission_failed,
    dispatch=submissions_dispatch,
    give_up_fields=(("quota_exempt", True),),
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

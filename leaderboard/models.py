"""The system of record: datasets, categories, suites, methods, submissions, runs, results.

Every ``Result`` says how it was obtained (``Provenance``): reproduced by our own workers from
registered code, or an uploaded bundle scored against our ground truth. There is no third kind.
Writes go through ``leaderboard.services``; reads through ``leaderboard.selectors``.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from algorithms.info import FAMILY_CHOICES, Schedule

from .names import MethodNameError, method_name_keys, method_name_normalise


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Dataset(TimeStampedModel):
    """A dataset family: ``mvtec``, ``visa``, ``synthetic``, or a user's own folder dataset."""

    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    url = models.URLField(blank=True)
    order = models.PositiveSmallIntegerField(default=0)
    # False for a blind dataset: its id -> file-name table, labels and masks are never published.
    ground_truth_public = models.BooleanField(default=True)

    class Meta:
        ordering = ["order", "key"]

    def __str__(self) -> str:
        return self.name


class Category(TimeStampedModel):
    """One category of a dataset; ``key`` is ``<dataset>/<category>`` (e.g. ``mvtec/bottle``)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="categories")
    key = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=100)
    # Published ids of the test images: opaque keyed hashes (``algorithms.data.ids``), sorted.
    test_ids = models.JSONField(default=list, blank=True)
    # {opaque id: image path relative to the category root}; server-side. Published (the
    # ``test-files`` route) only when the dataset's ground truth is public.
    test_files = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["dataset__order", "key"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.key


class Suite(TimeStampedModel):
    """A named set of categories scored together, e.g. ``vadi`` = MVTec AD (15) + VisA (12)."""

    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    categories = models.ManyToManyField(Category, related_name="suites")
    order = models.PositiveSmallIntegerField(default=0)
    # A blind suite: ground truth only on the server, v2 bundles only, its own submission limit.
    is_blind = models.BooleanField(default=False)

    class Meta:
        ordering = ["order", "key"]

    def __str__(self) -> str:
        return self.name


class Method(TimeStampedModel):
    """An anomaly-detection method: a registered algorithm or an external method with uploads.

    For a registered algorithm every descriptive field is a copy of its ``AlgorithmInfo``
    (``algorithms.info``), written by ``method_sync_from_registry`` (``manage.py sync_catalog
    --methods``); the web process reads them here and never imports the algorithms.

    Names are stored in NFKC form and no two methods have look-alike names
    (``leaderboard.names``): ``name_skeleton`` and ``name_skeleton_cased`` are the name's two
    TR 39 comparison keys, computed on every save; :meth:`clean` refuses a name that clashes
    with another method's (naming it), and a unique constraint on the folded key backs it up
    for any path that skips validation.
    """

    key = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    # TR 39 comparison keys of ``name`` (``names.method_name_keys``); never edited by hand.
    name_skeleton = models.TextField(blank=True, default="", editable=False)
    name_skeleton_cased = models.TextField(blank=True, default="", editable=False, db_index=True)
    family = models.CharField(max_length=40, blank=True, choices=FAMILY_CHOICES)
    secondary_family = models.CharField(max_length=40, blank=True, choices=FAMILY_CHOICES)
    description = models.TextField(blank=True)
    # Who made it: authors or a team, as its owner writes them (free text).
    authors = models.CharField(max_length=500, blank=True)
    paper_title = models.CharField(max_length=300, blank=True)
    paper_url = models.URLField(blank=True)
    code_url = models.URLField(blank=True)
    code_licence = models.CharField(max_length=80, blank=True)
    # Known deviations of our implementation from the publication (free text, shown on its page).
    deviations = models.TextField(blank=True)
    # The publication's training schedule (``algorithms.info.Schedule`` as JSON); {} when unknown.
    schedule = models.JSONField(default=dict, blank=True)
    # Names of the anomaly-map variants, the primary (ranked) one first.
    map_variants = models.JSONField(default=list, blank=True)
    # Registry key in ``algorithms`` when our workers can reproduce it; blank otherwise.
    algorithm_key = models.CharField(max_length=80, blank=True)
    is_baseline = models.BooleanField(default=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="methods"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name_skeleton"], condition=~Q(name_skeleton=""), name="method_unique_name_skeleton"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.name_skeleton, self.name_skeleton_cased = method_name_keys(self.name)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "name" in update_fields:
            kwargs["update_fields"] = {*update_fields, "name_skeleton", "name_skeleton_cased"}
        super().save(*args, **kwargs)

    @property
    def schedule_summary(self) -> str:
        """The publication's schedule in one line (``"500 epochs, batch 32, 256 px; Adam, ..."``), or ''."""
        try:
            return Schedule(**self.schedule).summary() if self.schedule else ""
        except (TypeError, ValueError):
            return ""

    def look_alike(self) -> Method | None:
        """Another method whose name looks like this one's (``names.method_name_keys``), if any."""
        folded, cased = method_name_keys(self.name)
        others = Method.objects.filter(Q(name_skeleton=folded) | Q(name_skeleton_cased=cased))
        if self.pk is not None:
            others = others.exclude(pk=self.pk)
        return others.order_by("pk").first()

    def clean(self) -> None:
        """Normalise the name (NFKC, single spaces) and refuse one that looks like another method's."""
        super().clean()
        try:
            self.name = method_name_normalise(self.name)
        except MethodNameError as exc:
            raise ValidationError({"name": str(exc)}) from exc
        other = self.look_alike()
        if other is not None:
            message = (
                f"a method called {other.name!r} already exists"
                if other.name == self.name
                else method_name_clash_message(self.name, other)
            )
            raise ValidationError({"name": message}, code="look_alike")


def method_name_clash_message(name: str, other: Method) -> str:
    """What a refused name is told: the existing method it would pass for."""
    if name == other.name:
        return f"a method called {other.name!r} already exists (another user's or the library's); choose another name"
    return (
        f"the name {name!r} is too close to the existing method {other.name!r} (names are compared ignoring "
        "case, spaces, dashes and letters that look alike, as in Unicode TR 39); choose a clearly different name"
    )


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    VALIDATING = "validating", "Validating"
    RUNNING = "running", "Running"
    SCORING = "scoring", "Scoring"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private"


class ReviewStatus(models.TextChoices):
    NONE = "none", "Not needed"
    FLAGGED = "flagged", "Flagged for review"
    APPROVED = "approved", "Approved by an admin"
    REJECTED = "rejected", "Rejected by an admin"


class Job(TimeStampedModel):
    """Fields shared by every long job that a worker claims, runs and reports on."""

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)  # 0..1
    progress_message = models.CharField(max_length=300, blank=True)
    # What went wrong, for whoever may see the job: never a server path, a setting's name, a
    # traceback or an exception class (``leaderboard.failures``). The detail is for staff only.
    error_message = models.TextField(blank=True)
    error_detail = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)

    #: States in which a worker holds the job (what the claim, heartbeats and the sweeper watch).
    RUNNING_STATUSES: ClassVar[tuple[str, ...]] = ()
    #: States in which a job is over; nothing moves it out of them.
    FINISHED_STATUSES: ClassVar[tuple[str, ...]] = (JobStatus.DONE, JobStatus.FAILED)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES


def _submission_upload_to(instance: Submission, filename: str) -> str:
    return f"submissions/{instance.owner_id}/{instance.uuid}.zip"


class Submission(Job):
    """An uploaded bundle of anomaly maps, scored server-side (provenance ``server_scored``).

    Lifecycle: ``queued -> validating -> scoring -> done | failed``.
    """

    RUNNING_STATUSES: ClassVar[tuple[str, ...]] = (JobStatus.VALIDATING, JobStatus.SCORING)
    #: Waiting or being scored: what the concurrent-submission quota counts.
    ACTIVE_STATUSES: ClassVar[tuple[str, ...]] = (JobStatus.QUEUED, *RUNNING_STATUSES)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    method = models.ForeignKey(Method, on_delete=models.PROTECT, related_name="submissions")
    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, related_name="submissions")
    archive = models.FileField(upload_to=_submission_upload_to, max_length=300)
    archive_size = models.BigIntegerField(default=0)
    archive_sha256 = models.CharField(max_length=64, blank=True)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    review_status = models.CharField(max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.NONE)
    review_note = models.TextField(blank=True)
    description = models.TextField(blank=True)
    # When the scoring task was last sent to the broker; null while the submission waits for a
    # send (the broker was unreachable at upload, or the sweeper handed it back): the sweeper sends
    # it, and sends again one whose message was not picked up in time (services.submissions).
    dispatched_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # True only for a failure of our own infrastructure (temporary errors that outlasted their
    # retries, ground truth or stored archive unavailable): such a submission does not count
    # against the daily quota. Every other submission of the window counts, failed ones included.
    quota_exempt = models.BooleanField(default=False)
    # Set when its owner withdrew it (``services.ownership.submission_withdraw``): its results
    # left the leaderboard for good; the row and its results stay, for the record.
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Submission {self.pk} ({self.method}, {self.status})"

    @property
    def is_withdrawn(self) -> bool:
        return self.withdrawn_at is not None


class BenchmarkRun(Job):
    """An admin-triggered re-benchmark of one method on a set of categories (``reproduced``)."""

    method = models.ForeignKey(Method, on_delete=models.PROTECT, related_name="benchmark_runs")
    suite = models.ForeignKey(Suite, null=True, blank=True, on_delete=models.PROTECT, related_name="benchmark_runs")
    categories = models.ManyToManyField(Category, related_name="benchmark_runs", blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="benchmark_runs"
    )
    config = models.JSONField(default=dict, blank=True)  # algorithm params, budgets, seed
    commit = models.CharField(max_length=64, blank=True)
    environment = models.JSONField(default=dict, blank=True)  # library versions, hardware
    is_published = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.method}, {self.status})"


class BenchmarkJob(Job):
    """One (run, category) unit of a re-benchmark, executed by one Celery task.

    Lifecycle: ``queued -> running -> done | failed``.
    """

    RUNNING_STATUSES: ClassVar[tuple[str, ...]] = (JobStatus.RUNNING,)

    run = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="jobs")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="benchmark_jobs")
    timings = models.JSONField(default=dict, blank=True)  # train_seconds, per-image times, epochs
    output = models.JSONField(default=dict, blank=True)  # the runner's results JSON for this category
    # When the job's task was last sent to the broker; null while the job waits in the database
    # for its turn (services.dispatch sends a re-benchmark's jobs a few at a time, fairly).
    dispatched_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["run", "category__key"]
        constraints = [models.UniqueConstraint(fields=["run", "category"], name="benchmarkjob_unique_run_category")]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.category}, {self.status})"


class Provenance(models.TextChoices):
    REPRODUCED = "reproduced", "Reproduced"
    SERVER_SCORED = "server_scored", "Server-scored"


class Result(TimeStampedModel):
    """One metric value for method x category x map variant, with where it came from."""

    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="results")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="results")
    metric = models.CharField(max_length=40)  # key in evaluation.metrics' registry
    variant = models.CharField(max_length=80, default="default")  # the anomaly-map variant scored
    is_primary_variant = models.BooleanField(default=True)
    value = models.FloatField()
    provenance = models.CharField(max_length=20, choices=Provenance.choices)
    evaluator_version = models.CharField(max_length=40)
    benchmark_run = models.ForeignKey(
        BenchmarkRun, null=True, blank=True, on_delete=models.CASCADE, related_name="results"
    )
    submission = models.ForeignKey(Submission, null=True, blank=True, on_delete=models.CASCADE, related_name="results")
    # Only current results feed tables; superseded ones stay for history.
    is_current = models.BooleanField(default=False, db_index=True)
    extra = models.JSONField(default=dict, blank=True)  # e.g. timings of the run that produced it

    class Meta:
        ordering = ["method", "category", "metric"]
        indexes = [models.Index(fields=["metric", "is_current", "provenance"], name="result_board_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(value__gte=0.0) & Q(value__lte=1.0), name="result_value_in_unit_interval"
            ),
            models.CheckConstraint(
                condition=(
                    Q(provenance="reproduced", benchmark_run__isnull=False, submission__isnull=True)
                    | Q(provenance="server_scored", submission__isnull=False, benchmark_run__isnull=True)
                ),
                name="result_provenance_matches_source",
            ),
            models.UniqueConstraint(
                fields=["benchmark_run", "category", "metric", "variant", "evaluator_version"],
                condition=Q(benchmark_run__isnull=False),
                name="result_unique_per_run",
            ),
            models.UniqueConstraint(
                fields=["submission", "category", "metric", "variant", "evaluator_version"],
                condition=Q(submission__isnull=False),
                name="result_unique_per_submission",
            ),
            models.UniqueConstraint(
                fields=["method", "category", "metric", "variant", "provenance", "evaluator_version"],
                condition=Q(is_current=True),
                name="result_one_current",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.category} {self.metric}={self.value:.4f}"


class Localisation(TimeStampedModel):
    """What PL decided, anomaly by anomaly, for one PL result (a source, category and map variant).

    Written with the result from the runner's ``localisation`` document
    (``algorithms.runner.localisation_document``: ``evaluation.metrics.localisation_report`` plus
    each anomaly's test-image id and defect type). ``anomalies`` keeps every anomaly's IoU at each
    of the ``thresholds``, so PL at any other IoU limit is computed from it without measuring
    again; ``defect_summary`` (``{defect type: [found, total]}``) is what the tables read.
    """

    result = models.OneToOneField(Result, on_delete=models.CASCADE, related_name="localisation")
    iou_limit = models.FloatField()
    threshold = models.FloatField()
    threshold_index = models.PositiveSmallIntegerField()
    thresholds = models.JSONField(default=list, blank=True)
    # The protocol's resolution: boxes are in pixels of a size x size image.
    size = models.PositiveIntegerField(default=256)
    # The seed whose maps were explained (a run of several seeds records the mean PL; this is one of them).
    seed = models.IntegerField(null=True, blank=True)
    # [{"image_id", "image_index", "defect_type", "center_x", "center_y", "width", "height", "angle",
    #   "iou", "best_iou", "localised", "ious": [IoU at each threshold]}], in the report's order
    anomalies = models.JSONField(default=list, blank=True)
    defect_summary = models.JSONField(default=dict, blank=True)
    n_anomalies = models.PositiveIntegerField(default=0)
    n_localised = models.PositiveIntegerField(default=0)
    # Where the run saved its maps (``predictions.npz``), for the gallery; blank when it saved none.
    predictions = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(n_localised__lte=models.F("n_anomalies")), name="localisation_counts")
        ]

    def __str__(self) -> str:
        return f"Localisation of {self.result}: {self.n_localised}/{self.n_anomalies}"


class MethodChangeKind(models.TextChoices):
    EDITED = "edited", "Description edited"
    WITHDRAWN = "withdrawn", "Submission withdrawn"


class MethodChange(TimeStampedModel):
    """One change an owner (or staff) made to a method: what changed, when, by whom.

    ``changes`` maps each edited field to ``[old, new]``. A withdrawal names its submission.
    ``is_public``: shown to everyone who may see the method; a withdrawal of a submission that
    was never published (private, held, rejected) is shown to its owner and staff only.
    """

    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="changes")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="method_changes"
    )
    kind = models.CharField(max_length=20, choices=MethodChangeKind.choices)
    changes = models.JSONField(default=dict, blank=True)
    submission = models.ForeignKey(
        Submission, null=True, blank=True, on_delete=models.SET_NULL, related_name="method_changes"
    )
    note = models.TextField(blank=True)
    is_public = models.BooleanField(default=True)

    #: How the history names each edited field.
    FIELD_LABELS: ClassVar[dict[str, str]] = {
        "name": "display name",
        "authors": "authors or team",
        "paper_title": "paper title",
        "paper_url": "paper link",
        "code_url": "code link",
        "description": "description",
    }

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.method}: {self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def changed_fields(self) -> list[str]:
        """The edited fields' labels, in the order the edit form shows them."""
        return [label for field, label in self.FIELD_LABELS.items() if field in self.changes]

"""Django admin: browse everything; writes that matter go through services (see actions)."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from . import models
from .services.benchmark_runs import (
    BenchmarkRequestError,
    benchmark_config_choices,
    benchmark_config_default,
    benchmark_run_repeat,
    benchmark_runs_create,
)
from .services.dispatch import jobs_dispatch_in_background
from .services.jobs import tasks_run_eagerly


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "order")


@admin.register(models.Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("key", "dataset", "name")
    list_filter = ("dataset",)
    search_fields = ("key",)


@admin.register(models.Suite)
class SuiteAdmin(admin.ModelAdmin):
    list_display = ("key", "name")
    filter_horizontal = ("categories",)


class MethodChangeInline(admin.TabularInline):
    """The owner's edits and withdrawals (``services.ownership``), for the record: read-only."""

    model = models.MethodChange
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "actor", "changes", "submission", "note", "is_public")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.Method)
class MethodAdmin(admin.ModelAdmin):
    """Names are validated by ``Method.clean``: NFKC form, and no look-alike of another method's name."""

    list_display = ("key", "name", "owner", "family", "algorithm_key", "is_baseline")
    search_fields = ("key", "name", "authors")
    inlines = (MethodChangeInline,)


@admin.register(models.Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "owner", "suite", "status", "review_status", "created_at")
    list_filter = ("status", "review_status", "visibility", "quota_exempt")
    # Who may see a submission follows from these fields: they change through services (the
    # review actions), never by hand. ``error_detail`` is what the uploader is not shown.
    readonly_fields = (
        "uuid", "owner", "method", "suite", "archive", "archive_size", "archive_sha256", "visibility",
        "status", "review_status", "progress", "progress_message", "error_message", "error_detail", "attempts",
        "started_at", "finished_at", "heartbeat_at", "celery_task_id", "dispatched_at", "quota_exempt",
        "withdrawn_at",
    )
    actions = ("approve_submissions", "reject_submissions")

    def _review(self, request, queryset, *, approve: bool) -> None:
        from django.contrib import messages
        from django.core.exceptions import ValidationError

        from .services.submissions import submission_review

        done = 0
        for submission in queryset:
            try:
                submission_review(submission=submission, approve=approve, reviewer=request.user)
                done += 1
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), level=messages.WARNING)
        verb = "approved (public results published)" if approve else "rejected (results withdrawn)"
        self.message_user(request, f"{done} submission(s) {verb}.")

    @admin.action(description="Approve: publish the scores of the selected submissions", permissions=["change"])
    def approve_submissions(self, request, queryset):
        self._review(request, queryset, approve=True)

    @admin.action(description="Reject: keep the selected submissions off the leaderboard", permissions=["change"])
    def reject_submissions(self, request, queryset):
        self._review(request, queryset, approve=False)


class BenchmarkJobInline(admin.TabularInline):
    model = models.BenchmarkJob
    extra = 0
    fields = ("category", "status", "progress", "attempts", "error_message", "error_detail", "heartbeat_at")
    readonly_fields = fields
    can_delete = False


class RebenchmarkForm(forms.Form):
    """What the "Add benchmark run" page asks for: methods x (suites and/or categories) and a config."""

    methods = forms.ModelMultipleChoiceField(queryset=models.Method.objects.exclude(algorithm_key=""))
    suites = forms.ModelMultipleChoiceField(queryset=models.Suite.objects.all(), required=False)
    categories = forms.ModelMultipleChoiceField(queryset=models.Category.objects.all(), required=False)
    config = forms.ChoiceField(choices=benchmark_config_choices, initial=benchmark_config_default)
    device = forms.ChoiceField(choices=[("auto", "auto (CUDA when the worker has it)"), ("cpu", "cpu")])


@admin.register(models.BenchmarkRun)
class BenchmarkRunAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "suite", "status", "progress", "is_published", "created_at")
    list_filter = ("status", "is_published")
    inlines = [BenchmarkJobInline]
    actions = ["repeat_runs"]
    readonly_fields = ("method", "suite", "categories", "requested_by", "config", "commit", "environment",
                       "status", "progress", "progress_message", "error_message", "error_detail", "attempts",
                       "is_published",
                       "started_at", "finished_at", "heartbeat_at", "celery_task_id")

    def add_view(self, request, form_url="", extra_context=None):
        """Start a re-benchmark (one run per method, one Celery job per category) instead of a raw row."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RebenchmarkForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            # Eager tasks (no broker: the demo) would train inside this request: dispatch after it,
            # from a background thread (``VADI_ADMIN_BACKGROUND_DISPATCH``; the test settings turn it
            # off except in the test of this path: a thread's connection outlives a test transaction).
            eager = tasks_run_eagerly() and getattr(settings, "VADI_ADMIN_BACKGROUND_DISPATCH", True)
            try:
                runs = benchmark_runs_create(
                    methods=list(data["methods"]),
                    suites=[s.key for s in data["suites"]],
                    categories=[c.key for c in data["categories"]],
                    config=data["config"],
                    device=data["device"],
                    requested_by=request.user,
                    allow_config_paths=False,
                    dispatch=not eager,
                )
            except BenchmarkRequestError as exc:
                form.add_error(None, str(exc))
            else:
                if eager:
                    jobs_dispatch_in_background()
                started = ", ".join(str(r.pk) for r in runs)
                self.message_user(request, f"Started {len(runs)} re-benchmark run(s): {started}.")
                if len(runs) == 1:  # its page follows the progress
                    return redirect("leaderboard:run-detail", pk=runs[0].pk)
                return redirect("admin:leaderboard_benchmarkrun_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a re-benchmark",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/leaderboard/benchmarkrun/rebenchmark.html", context)

    @admin.action(description="Re-run the selected runs (same method, categories and config)")
    def repeat_runs(self, request, queryset):
        started = []
        for run in queryset.select_related("method"):
            try:
                started.append(benchmark_run_repeat(run=run, requested_by=request.user))
            except BenchmarkRequestError as exc:
                self.message_user(request, f"Run {run.pk}: {exc}", level=messages.ERROR)
        if started:
            self.message_user(request, f"Started run(s) {', '.join(str(r.pk) for r in started)}.")


@admin.register(models.Result)
class ResultAdmin(admin.ModelAdmin):
    list_display = ("method", "category", "metric", "variant", "value", "provenance", "is_current")
    list_filter = ("provenance", "metric", "is_current", "evaluator_version")
    list_select_related = ("method", "category")
    search_fields = ("method__key", "category__key")

    def has_add_permission(self, request):  # numbers are computed, never typed in
        return False

    def has_change_permission(self, request, obj=None):
        return False

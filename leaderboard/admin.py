"""Django admin: browse everything; writes that matter go through services (see actions)."""

from django.contrib import admin

from . import models


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


@admin.register(models.Method)
class MethodAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "family", "algorithm_key", "is_baseline")
    search_fields = ("key", "name")


@admin.register(models.Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "owner", "suite", "status", "review_status", "created_at")
    list_filter = ("status", "review_status", "visibility")
    readonly_fields = ("uuid", "archive_size", "archive_sha256", "started_at", "finished_at", "heartbeat_at")


class BenchmarkJobInline(admin.TabularInline):
    model = models.BenchmarkJob
    extra = 0
    fields = ("category", "status", "progress", "attempts", "error_message", "heartbeat_at")
    readonly_fields = fields
    can_delete = False


@admin.register(models.BenchmarkRun)
class BenchmarkRunAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "suite", "status", "progress", "is_published", "created_at")
    list_filter = ("status", "is_published")
    inlines = [BenchmarkJobInline]


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

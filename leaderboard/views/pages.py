"""Public HTML pages (server-rendered; JavaScript only draws charts and polls job status).

Views parse the query string, call one selector, and render. Any table can be downloaded with
``?format=csv`` or ``?format=json``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from functools import wraps

from django.http import Http404, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import charts
from ..apis import serializers as shapes
from ..cache import cached_page
from ..models import BenchmarkJob, BenchmarkRun, Category, Dataset, Method, Provenance, Result, Submission, Suite
from ..selectors import catalog, jobs
from ..selectors.leaderboard import (
    Board,
    InvalidFilterError,
    SuiteNotFoundError,
    category_breakdown,
    method_metric_evidence,
    suite_leaderboard_cached,
)
from ..selectors.metrics import UnknownMetricError, metric_list
from ..selectors.results import result_list

DEFAULT_SUITE = "vadi"
DEMO_SUITE = "synthetic"
FORMATS = ("html", "csv", "json")


class BadRequest(ValueError):
    """A query parameter with a value the page cannot use."""


def _param(request, name: str, *, choices=None) -> str | None:
    value = request.GET.get(name) or None
    if value is not None and choices is not None and value not in choices:
        raise BadRequest(f"{name}={value!r} is not valid; expected one of: {', '.join(choices)}")
    return value


def _bad_request(request, message: str, status: int = 400):
    return render(request, "leaderboard/error.html", {"message": message, "status": status}, status=status)


def answers_bad_requests(view):
    """Turn a bad query parameter raised anywhere in ``view`` into a 400 page naming it, and an
    unknown suite into a 404."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except (BadRequest, UnknownMetricError, InvalidFilterError) as exc:
            return _bad_request(request, str(exc))
        except SuiteNotFoundError as exc:
            raise Http404(str(exc)) from exc

    return wrapper


def _download(request, *, name: str, as_csv, as_json):
    fmt = _param(request, "format", choices=FORMATS) or "html"
    if fmt == "csv":
        response = HttpResponse(as_csv(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return response
    if fmt == "json":
        return JsonResponse(as_json(), json_dumps_params={"indent": 1})
    return None


def _filters(request) -> dict:
    return {
        "provenance": _param(request, "provenance", choices=Provenance.values),
        "evaluator_version": _param(request, "evaluator"),
    }


def _metric_context() -> list[dict]:
    return [{"info": m, "example": _plain_example(m.key)} for m in metric_list()]


def _plain_example(key: str) -> str:
    if key == "pl":
        return "PL 0.82: 82% of the defects were found (localised with IoU above the threshold)."
    return ""


def _board_context(request, board: Board, *, title: str, base_url: str, note: str = "") -> dict:
    return {
        "title": title,
        "board": board,
        "base_url": base_url,
        "note": note,
        "metrics": _metric_context(),
        "figure": charts.suite_bar_figure(board) if board.rows else None,
        "provenance_choices": Provenance.choices,
        "suites": list(Suite.objects.order_by("order", "key").values_list("key", "name")),
        "datasets": list(
            Dataset.objects.filter(categories__suites__key=board.suite_key)
            .distinct()
            .order_by("order", "key")
            .values_list("key", "name")
        ),
        "query": request.GET,
        "evidence_qs": _evidence_query(board),
    }


def _evidence_query(board: Board) -> str:
    params = QueryDict(mutable=True)
    if board.evaluator_version:
        params["evaluator"] = board.evaluator_version
    if board.provenance:
        params["provenance"] = board.provenance
    return f"?{params.urlencode()}" if params else ""


@require_GET
@cached_page
@answers_bad_requests
def home(request):
    """The VADI leaderboard (``?suite=`` selects another suite; ``?sort=`` a metric to rank by)."""
    try:
        filters = _filters(request)
        sort = _param(request, "sort")
        requested = _param(request, "suite")
        dataset_key = _param(request, "dataset")
        suite_key = requested or DEFAULT_SUITE
        note = ""
        board = suite_leaderboard_cached(suite_key=suite_key, sort=sort, dataset_key=dataset_key, **filters)
        if requested is None and dataset_key is None and not board.rows:
            try:
                demo = suite_leaderboard_cached(suite_key=DEMO_SUITE, sort=sort, **filters)
            except SuiteNotFoundError:
                demo = None
            if demo is not None and demo.rows:
                note = (
                    f"No method has results on all {board.n_categories} VADI categories yet, so this page "
                    f"shows the {demo.suite_name} suite (generated data, as in the demo). "
                    "Its numbers say nothing about MVTec AD or VisA."
                )
                board = demo
    except SuiteNotFoundError as exc:
        if requested is None:  # the catalog is empty: render an empty page, not a 404
            return render(request, "leaderboard/empty.html", {"message": str(exc)})
        raise Http404(str(exc)) from exc
    download = _download(
        request,
        name=f"leaderboard-{board.suite_key}",
        as_csv=lambda: shapes.board_csv(board),
        as_json=lambda: shapes.board_dict(board),
    )
    if download is not None:
        return download
    return render(
        request,
        "leaderboard/home.html",
        _board_context(request, board, title=f"{board.suite_name} leaderboard", base_url=request.path, note=note),
    )


@require_GET
@cached_page
@answers_bad_requests
def dataset_detail(request, key: str):
    """One dataset: its leaderboard (the suite of the same name, else VADI restricted to it)."""
    try:
        dataset = catalog.dataset_get(key=key)
    except Dataset.DoesNotExist as exc:
        raise Http404(f"no dataset {key!r}") from exc
    filters = _filters(request)
    sort = _param(request, "sort")
    if Suite.objects.filter(key=key).exists():
        board = suite_leaderboard_cached(suite_key=key, sort=sort, **filters)
    else:
        board = suite_leaderboard_cached(suite_key=DEFAULT_SUITE, dataset_key=key, sort=sort, **filters)
    download = _download(
        request,
        name=f"leaderboard-{key}",
        as_csv=lambda: shapes.board_csv(board),
        as_json=lambda: shapes.board_dict(board),
    )
    if download is not None:
        return download
    context = _board_context(request, board, title=f"{dataset.name}", base_url=request.path)
    context["dataset"] = dataset
    return render(request, "leaderboard/dataset.html", context)


@require_GET
@cached_page
@answers_bad_requests
def breakdown(request, suite: str):
    """Per-category table (rows = categories, columns = methods) of one metric, with a heatmap."""
    metric = _param(request, "metric") or "pl"
    dataset_key = _param(request, "dataset")
    table = category_breakdown(suite_key=suite, metric=metric, dataset_key=dataset_key, **_filters(request))
    download = _download(
        request,
        name=f"breakdown-{suite}-{metric}",
        as_csv=lambda: shapes.breakdown_csv(table),
        as_json=lambda: shapes.breakdown_dict(table),
    )
    if download is not None:
        return download
    rows = [{"category": c, "cells": [table.values[c].get(m.id) for m in table.methods]} for c in table.categories]
    return render(
        request,
        "leaderboard/breakdown.html",
        {
            "table": table,
            "rows": rows,
            "means": [table.means[m.id] for m in table.methods],
            "metrics": metric_list(),
            "figure": charts.breakdown_heatmap_figure(table) if table.methods else None,
            "datasets": Dataset.objects.filter(categories__suites__key=suite).distinct().order_by("order"),
            "query": request.GET,
        },
    )


@require_GET
@answers_bad_requests
def evidence(request, suite: str, method: str, metric: str):
    """The per-category values behind one mean on the leaderboard, with their sources."""
    try:
        method_obj = catalog.method_get(key=method)
    except Method.DoesNotExist as exc:
        raise Http404(f"no method {method!r}") from exc
    ev = method_metric_evidence(suite_key=suite, method_id=method_obj.pk, metric=metric, **_filters(request))
    download = _download(
        request,
        name=f"evidence-{suite}-{method}-{metric}",
        as_csv=lambda: shapes.rows_csv(
            ["category", "value", "provenance", "variant", "benchmark_run", "submission"],
            (
                [
                    c.category_key,
                    repr(c.value),
                    c.provenance,
                    c.variant,
                    c.benchmark_run_id or "",
                    c.submission_id or "",
                ]
                for c in ev.cells
            ),
        ),
        as_json=lambda: shapes.evidence_dict(ev),
    )
    if download is not None:
        return download
    return render(
        request,
        "leaderboard/evidence.html",
        {"ev": ev, "method": method_obj, "query": request.GET, "n_total": len(ev.cells) + len(ev.missing)},
    )


@require_GET
def method_list(request):
    methods = list(catalog.method_list())
    return render(request, "leaderboard/method_list.html", {"methods": methods})


def _timings(method: Method) -> list[dict]:
    """Training and inference times per category from the method's finished benchmark jobs."""
    rows = []
    jobs_qs = (
        BenchmarkJob.objects.filter(run__method=method)
        .exclude(timings={})
        .select_related("category", "run")
        .order_by("-run__created_at", "category__key")
    )
    for job in jobs_qs:
        t = job.timings or {}
        rows.append(
            {
                "run": job.run,
                "category": job.category.key,
                "epochs": t.get("epochs"),
                "train_seconds": t.get("train_seconds"),
                "train_seconds_per_image": t.get("train_seconds_per_image"),
                "inference_seconds": t.get("inference_seconds"),
                "inference_seconds_per_image": t.get("inference_seconds_per_image"),
                "hardware": (job.run.environment or {}).get("hardware", ""),
            }
        )
    return rows


@require_GET
@answers_bad_requests
def method_detail(request, key: str):
    """A method: description, links, every visible result with provenance, timings, history."""
    try:
        method = catalog.method_get(key=key)
    except Method.DoesNotExist as exc:
        raise Http404(f"no method {key!r}") from exc
    results = list(result_list(method=key, current_only=False).select_related("benchmark_run", "submission"))
    current = [r for r in results if r.is_current]
    history = [r for r in results if not r.is_current]
    by_category: dict[str, dict] = defaultdict(dict)
    for r in current:
        if r.is_primary_variant:
            by_category[r.category.key].setdefault((r.provenance, r.evaluator_version), {})[r.metric] = r
    current_table = [
        {"category": cat, "provenance": prov, "evaluator_version": ev, "values": values}
        for cat, groups in sorted(by_category.items())
        for (prov, ev), values in sorted(groups.items())
    ]
    download = _download(
        request,
        name=f"method-{key}-results",
        as_csv=lambda: shapes.rows_csv(
            ["category", "metric", "variant", "value", "provenance", "evaluator_version", "is_current", "source"],
            (
                [
                    r.category.key,
                    r.metric,
                    r.variant,
                    repr(r.value),
                    r.provenance,
                    r.evaluator_version,
                    r.is_current,
                    f"run {r.benchmark_run_id}" if r.benchmark_run_id else f"submission {r.submission_id}",
                ]
                for r in results
            ),
        ),
        as_json=lambda: {
            "method": key,
            "results": shapes.ResultOutputSerializer(results, many=True).data,
        },
    )
    if download is not None:
        return download
    return render(
        request,
        "leaderboard/method_detail.html",
        {
            "method": method,
            "metrics": metric_list(),
            "current_table": current_table,
            "current_variants": [r for r in current if not r.is_primary_variant],
            "history": history,
            "timings": _timings(method),
            "runs": list(jobs.benchmark_run_list(method_key=key)[:50]),
            "submissions": list(jobs.submission_list(user=request.user, method_key=key)[:50]),
        },
    )


def _job_results(**source) -> list[dict]:
    results = Result.objects.filter(**source).select_related("category").order_by("category__key", "metric", "variant")
    grouped: dict[tuple, dict] = {}
    for r in results:
        grouped.setdefault((r.category.key, r.variant, r.evaluator_version), {})[r.metric] = r
    return [
        {"category": cat, "variant": variant, "evaluator_version": ev, "values": values}
        for (cat, variant, ev), values in grouped.items()
    ]


def _submission_or_404(request, pk: int) -> Submission:
    try:
        return jobs.submission_get(pk=pk, user=request.user)
    except Submission.DoesNotExist as exc:
        raise Http404("no such submission (or it is private)") from exc


@require_GET
def submission_detail(request, pk: int):
    submission = _submission_or_404(request, pk)
    return render(
        request,
        "leaderboard/job_detail.html",
        {
            "job": submission,
            "kind": "submission",
            "status_url_name": "leaderboard:submission-status",
            "results": _job_results(submission=submission),
            "metrics": metric_list(),
            "status": jobs.job_status(submission),
        },
    )


@require_GET
def submission_status(request, pk: int):
    return JsonResponse(jobs.job_status(_submission_or_404(request, pk)))


def _run_or_404(pk: int) -> BenchmarkRun:
    try:
        return jobs.benchmark_run_get(pk=pk)
    except BenchmarkRun.DoesNotExist as exc:
        raise Http404("no such benchmark run") from exc


@require_GET
def run_detail(request, pk: int):
    run = _run_or_404(pk)
    return render(
        request,
        "leaderboard/job_detail.html",
        {
            "job": run,
            "kind": "run",
            "status_url_name": "leaderboard:run-status",
            "results": _job_results(benchmark_run=run),
            "metrics": metric_list(),
            "jobs": list(run.jobs.select_related("category")),
            "status": jobs.job_status(run),
        },
    )


@require_GET
def run_status(request, pk: int):
    run = _run_or_404(pk)
    doc = jobs.job_status(run)
    doc["jobs"] = [
        {"category": j.category.key, "status": j.status, "progress": round(float(j.progress), 4)}
        for j in run.jobs.select_related("category")
    ]
    return JsonResponse(doc)


@require_GET
def category_detail(request, key: str):
    """One category: its dataset, the number of public test ids, and every method's values."""
    try:
        category = catalog.category_get(key=key)
    except Category.DoesNotExist as exc:
        raise Http404(f"no category {key!r}") from exc
    results = result_list(category=key).filter(is_primary_variant=True)
    table: dict[tuple, dict] = {}
    for r in results:
        table.setdefault((r.method.name, r.method.key, r.provenance, r.evaluator_version), {})[r.metric] = r
    rows = [
        {"method": name, "method_key": mkey, "provenance": prov, "evaluator_version": ev, "values": values}
        for (name, mkey, prov, ev), values in sorted(table.items())
    ]
    metrics = metric_list()
    flat = [
        {
            "method_key": row["method_key"],
            "method": row["method"],
            "provenance": row["provenance"],
            "evaluator_version": row["evaluator_version"],
            **{m.key: (row["values"][m.key].value if m.key in row["values"] else None) for m in metrics},
        }
        for row in rows
    ]
    download = _download(
        request,
        name=f"category-{category.key.replace('/', '-')}",
        as_csv=lambda: _csv_text(
            flat, ["method_key", "method", "provenance", "evaluator_version"] + [m.key for m in metrics]
        ),
        as_json=lambda: {"category": category.key, "rows": flat},
    )
    if download is not None:
        return download
    return render(
        request,
        "leaderboard/category_detail.html",
        {"category": category, "n_test_ids": len(category.test_ids or []), "rows": rows, "metrics": metrics},
    )


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

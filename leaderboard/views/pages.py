"""Public HTML pages (server-rendered; JavaScript only draws charts and polls job status).

Views parse the query string, read through ``leaderboard.selectors``, and render. Any table can
be downloaded with ``?format=csv`` or ``?format=json`` (its ``leaderboard.exports.Export``).
Pages of one method, run or submission show what the visitor may see
(``selectors.visibility``: ``viewer_of(request.user)``); the leaderboard tables are the same for
everyone and are cached by ``leaderboard.cache.cached_page``.
"""

from __future__ import annotations

from functools import wraps

from django.http import Http404, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from .. import charts, exports, gallery
from ..cache import cached_page
from ..models import BenchmarkRun, Category, Dataset, Localisation, Method, Provenance, Submission
from ..selectors import catalog, jobs
from ..selectors.compare import method_comparison
from ..selectors.leaderboard import (
    Board,
    InvalidFilterError,
    SuiteNotFoundError,
    category_breakdown,
    method_metric_evidence,
    suite_leaderboard_cached,
)
from ..selectors.localisation import (
    category_defect_table,
    localisation_for_image,
    localisation_get,
    method_defect_table,
)
from ..selectors.metrics import UnknownMetricError, metric_list
from ..selectors.ownership import method_can_edit, method_change_list, submission_can_withdraw
from ..selectors.reported import method_reported_comparison
from ..selectors.results import category_result_table, method_result_table, method_timings, source_result_table
from ..selectors.visibility import viewer_of

DEFAULT_SUITE = "vadi"
DEMO_SUITE = "synthetic"
FORMATS = ("html", *exports.DOWNLOAD_FORMATS)


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


def _download(request, export: exports.Export) -> HttpResponse | None:
    """The download that ``?format=`` asks for (``None`` for the HTML page)."""
    fmt = _param(request, "format", choices=FORMATS) or "html"
    return None if fmt == "html" else export.response(fmt)


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
        "cost_figure": charts.cost_scatter_figure(board) if board.rows else None,
        "provenance_choices": Provenance.choices,
        "suites": catalog.suite_choices(),
        "datasets": [(d.key, d.name) for d in catalog.suite_datasets(suite_key=board.suite_key)],
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
    download = _download(request, exports.board_export(board, name=f"leaderboard-{board.suite_key}"))
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
    if catalog.suite_exists(key=key):
        board = suite_leaderboard_cached(suite_key=key, sort=sort, **filters)
    else:
        board = suite_leaderboard_cached(suite_key=DEFAULT_SUITE, dataset_key=key, sort=sort, **filters)
    download = _download(request, exports.board_export(board, name=f"leaderboard-{key}"))
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
    download = _download(request, exports.breakdown_export(table, name=f"breakdown-{suite}-{metric}"))
    if download is not None:
        return download
    rows = [
        {
            "category": c,
            "cells": [{"value": table.values[c].get(m.id), "capped": (c, m.id) in table.capped} for m in table.methods],
        }
        for c in table.categories
    ]
    return render(
        request,
        "leaderboard/breakdown.html",
        {
            "table": table,
            "rows": rows,
            "means": [table.means[m.id] for m in table.methods],
            "metrics": metric_list(),
            "figure": charts.breakdown_heatmap_figure(table) if table.methods else None,
            "datasets": catalog.suite_datasets(suite_key=suite),
            "query": request.GET,
        },
    )


@require_GET
@answers_bad_requests
def evidence(request, suite: str, method: str, metric: str):
    """The per-category values behind one mean on the leaderboard, with their sources."""
    try:
        method_obj = catalog.method_get(key=method, viewer=viewer_of(request.user))
    except Method.DoesNotExist as exc:
        raise Http404(f"no method {method!r}") from exc
    ev = method_metric_evidence(suite_key=suite, method_id=method_obj.pk, metric=metric, **_filters(request))
    download = _download(request, exports.evidence_export(ev, name=f"evidence-{suite}-{method}-{metric}"))
    if download is not None:
        return download
    return render(
        request,
        "leaderboard/evidence.html",
        {"ev": ev, "method": method_obj, "query": request.GET, "n_total": len(ev.cells) + len(ev.missing)},
    )


@require_GET
def method_list(request):
    methods = list(catalog.method_list(viewer=viewer_of(request.user)))
    held, total, missing = catalog.visionad_paper_coverage(methods)
    for method in methods:
        method.in_visionad_paper = method.algorithm_key in catalog.VISIONAD_PAPER_ALGORITHMS
    context = {"methods": methods, "paper_held": held, "paper_total": total, "paper_missing": missing}
    return render(request, "leaderboard/method_list.html", context)


@require_GET
@answers_bad_requests
def method_detail(request, key: str):
    """A method: description, links, every visible result with provenance, timings, history."""
    viewer = viewer_of(request.user)
    try:
        method = catalog.method_get(key=key, viewer=viewer)
    except Method.DoesNotExist as exc:
        raise Http404(f"no method {key!r}") from exc
    tables = method_result_table(method_key=key, viewer=viewer)
    download = _download(request, exports.method_results_export(key, tables.results))
    if download is not None:
        return download
    submissions = list(jobs.submission_list(viewer=viewer, method_key=key)[:50])
    return render(
        request,
        "leaderboard/method_detail.html",
        {
            "method": method,
            "metrics": metric_list(),
            "current_table": tables.current_table,
            "current_variants": tables.current_variants,
            "history": tables.history,
            "unpublished": tables.unpublished,
            "timings": method_timings(method=method, viewer=viewer),
            "defects": method_defect_table(method_key=key),
            "reported": method_reported_comparison(method_key=key),
            "runs": list(jobs.benchmark_run_list(viewer=viewer, method_key=key)[:50]),
            "submissions": submissions,
            # Ownership: the owner's edit link and withdraw buttons, the change history.
            "can_edit": method_can_edit(method=method, user=request.user),
            "withdrawable": {s.pk for s in submissions if submission_can_withdraw(submission=s, user=request.user)},
            "changes": list(method_change_list(method=method, viewer=viewer)[:100]),
        },
    )


def _submission_or_404(request, pk: int) -> Submission:
    try:
        return jobs.submission_get(pk=pk, viewer=viewer_of(request.user))
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
            "results": source_result_table(submission=submission),
            "metrics": metric_list(),
            "status": jobs.job_status(submission),
        },
    )


@require_GET
def submission_status(request, pk: int):
    return JsonResponse(jobs.job_status(_submission_or_404(request, pk)))


def _run_or_404(request, pk: int) -> BenchmarkRun:
    try:
        return jobs.benchmark_run_get(pk=pk, viewer=viewer_of(request.user))
    except BenchmarkRun.DoesNotExist as exc:
        raise Http404("no such benchmark run (or it is not published yet)") from exc


@require_GET
def run_detail(request, pk: int):
    """A benchmark run: its status and results, and the evidence of how they were obtained."""
    run = _run_or_404(request, pk)
    job_rows = list(jobs.benchmark_job_list(run=run))
    spec_url = request.build_absolute_uri(reverse("leaderboard:run-spec", args=[run.pk]))
    return render(
        request,
        "leaderboard/job_detail.html",
        {
            "job": run,
            "kind": "run",
            "status_url_name": "leaderboard:run-status",
            "results": source_result_table(benchmark_run=run),
            "metrics": metric_list(),
            "jobs": job_rows,
            "provenance": jobs.benchmark_run_provenance(run, job_rows, spec_url=spec_url),
            "status": jobs.job_status(run),
        },
    )


@require_GET
def run_spec(request, pk: int):
    """The run's specification as recorded: a config for ``python -m algorithms run --config``."""
    run = _run_or_404(request, pk)
    response = JsonResponse(jobs.benchmark_run_spec_document(run), json_dumps_params={"indent": 2, "sort_keys": True})
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-spec.json"'
    return response


@require_GET
def run_status(request, pk: int):
    run = _run_or_404(request, pk)
    doc = jobs.job_status(run)
    doc["jobs"] = [
        {"category": j.category.key, "status": j.status, "progress": round(float(j.progress), 4)}
        for j in jobs.benchmark_job_list(run=run)
    ]
    return JsonResponse(doc)


@require_GET
@answers_bad_requests
def category_detail(request, key: str):
    """One category: its dataset, the number of public test ids, and every method's values."""
    try:
        category = catalog.category_get(key=key)
    except Category.DoesNotExist as exc:
        raise Http404(f"no category {key!r}") from exc
    rows = category_result_table(category_key=key)
    metrics = metric_list()
    download = _download(request, exports.category_table_export(category.key, rows, metrics))
    if download is not None:
        return download
    return render(
        request,
        "leaderboard/category_detail.html",
        {
            "category": category,
            "n_test_ids": len(category.test_ids or []),
            "rows": rows,
            "metrics": metrics,
            "defects": category_defect_table(category_key=key),
        },
    )


@require_GET
def result_localisation(request, pk: int):
    """PL explained for one result: every anomaly found or missed, per defect type, PL by IoU limit, a gallery."""
    try:
        detail = localisation_get(result_pk=pk, viewer=viewer_of(request.user))
    except Localisation.DoesNotExist as exc:
        raise Http404("no PL explanation for this result (or it is not published)") from exc
    loc = detail.localisation
    figure = charts.pl_iou_figure(detail.curve, iou_limit=loc.iou_limit, pl=loc.result.value) if detail.curve else None
    return render(
        request,
        "leaderboard/localisation.html",
        {"detail": detail, "loc": loc, "result": loc.result, "figure": figure},
    )


@require_GET
def result_localisation_image(request, pk: int, index: int):
    """One gallery image of a result: ground-truth boxes and the region predicted at PL's threshold (PNG)."""
    try:
        loc, anomalies = localisation_for_image(result_pk=pk, image_index=index, viewer=viewer_of(request.user))
    except Localisation.DoesNotExist as exc:
        raise Http404("no PL explanation for this result (or it is not published)") from exc
    from ..selectors.localisation import gallery_allowed

    if gallery_allowed(loc):
        raise Http404(gallery_allowed(loc))
    try:
        png = gallery.example_png(localisation=loc, anomalies=anomalies)
    except gallery.GalleryUnavailable as exc:
        raise Http404(str(exc)) from exc
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "public, max-age=3600"
    return response


@require_GET
@cached_page
@answers_bad_requests
def compare(request):
    """Two methods side by side on a suite (``?suite=&a=&b=``), per category and metric, with A minus B."""
    suite = _param(request, "suite") or DEFAULT_SUITE
    comparison = method_comparison(
        suite_key=suite,
        method_a=_param(request, "a"),
        method_b=_param(request, "b"),
        evaluator_version=_param(request, "evaluator"),
    )
    if _param(request, "suite") is None and not comparison.choices:
        try:  # no method on VADI yet: the demo's suite, as the home page does
            demo = method_comparison(suite_key=DEMO_SUITE, method_a=_param(request, "a"), method_b=_param(request, "b"))
        except SuiteNotFoundError:
            demo = None
        comparison = demo if demo is not None and demo.choices else comparison
    return render(
        request,
        "leaderboard/compare.html",
        {"cmp": comparison, "suites": catalog.suite_choices(), "query": request.GET},
    )

"""The blind suite's page (its board, why it exists, its limit) and its image downloads.

The page shows the same tables and charts as every board, category-level only; the downloads
are images under opaque names (``services.blind.blind_archive``). No view returns a label, a
mask, a file name of a test image or a per-image figure of the blind suite.
"""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import exports
from ..cache import cached_page
from ..selectors import catalog
from ..selectors.leaderboard import suite_leaderboard_cached
from ..services.blind import BLIND_SPLITS, BlindSuiteError, blind_archive
from ..services.submissions import blind_limit_message, blind_submissions_per_day
from .pages import _board_context, _download, _filters, _param, answers_bad_requests

BLIND_SUITE = "blind"


@require_GET
@cached_page
@answers_bad_requests
def blind_suite(request):
    """The Blind board: why it exists, the submission limit, the downloads, the usual tables and charts."""
    board = suite_leaderboard_cached(suite_key=BLIND_SUITE, sort=_param(request, "sort"), **_filters(request))
    download = _download(request, exports.board_export(board, name=f"leaderboard-{BLIND_SUITE}"))
    if download is not None:
        return download
    context = _board_context(request, board, title=f"{board.suite_name} leaderboard", base_url=request.path)
    context.update(
        {
            "categories": list(catalog.category_list(suite_key=BLIND_SUITE)),
            "limit": blind_submissions_per_day(),
            "limit_message": blind_limit_message(),
        }
    )
    return render(request, "leaderboard/blind.html", context)


@require_GET
def blind_download(request, name: str, split: str):
    """``/blind/<name>/<train|test>.zip``: one category's training or test images (opaque names)."""
    if split not in BLIND_SPLITS:
        raise Http404(f"no download {split!r}")
    try:
        path = blind_archive(key=f"{BLIND_SUITE}/{name}", split=split)
    except BlindSuiteError as exc:
        raise Http404(str(exc)) from exc
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=f"blind-{name}-{split}.zip", content_type="application/zip"
    )

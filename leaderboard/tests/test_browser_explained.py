"""Headless Chromium on real re-benchmark data (issue 14): PL explained defect by defect (the per-defect
table, the PL-versus-IoU chart, the gallery), reported versus reproduced, and the comparison page.

The data come from the demo's path at test sizes: a tiny synthetic suite, a config file that saves
predictions, and ``benchmark_runs_create`` running the real runner through the (eager) Celery
tasks for the random baseline and PatchCore (tiny, random-initialised backbone). Screenshots go
to ``var/screenshots/`` (git-ignored) for a human look.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation.tests.test_benchmarks_support import make_catalog, make_tiny_suite
from leaderboard.models import BenchmarkRun, JobStatus, Localisation, Suite

from .test_browser import browser, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

CONFIG = """
from algorithms.registry import get_algorithm_info

models = [
    {"algorithm": "random", "params": {"input_size": 32}, "epochs": 1, "batch_size": 4, "save_predictions": True},
    {"algorithm": "patchcore", "params": dict(get_algorithm_info("patchcore").tiny), "epochs": 1, "batch_size": 4,
     "save_predictions": True},
]
categories = ["synthetic"]
"""


def shot(page, name: str) -> None:  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def explained_runs(settings, tmp_path):
    from leaderboard.services import method_sync_from_registry
    from leaderboard.services.benchmark_runs import benchmark_runs_create

    root = tmp_path / "synthetic"
    keys = make_tiny_suite(root, ("woven", "grid"), n_test_defect=8)
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(root)}
    settings.VADI_RUNS_ROOT = str(tmp_path / "runs")
    method_sync_from_registry()
    make_catalog(keys, suite_key="synthetic")
    Suite.objects.get_or_create(key="vadi", defaults={"name": "VADI"})
    config = tmp_path / "browser_explained.py"
    config.write_text(CONFIG)
    runs = benchmark_runs_create(methods=["random", "patchcore"], suites=["synthetic"], config=config, device="cpu")
    for run in runs:
        run.refresh_from_db()
        assert run.status == JobStatus.DONE and run.is_published, run.error_message
    return {run.method.key: run for run in BenchmarkRun.objects.select_related("method")}


def _pl_from_saved_maps(localisation: Localisation, roots) -> list[float]:
    """PL at 0.1 .. 0.9 measured again from the run's saved maps and the ground truth."""
    from algorithms.data import load_category
    from evaluation.metrics import proportion_localised, to_protocol

    truth = load_category(localisation.result.category.key, roots=roots).ground_truth()
    with np.load(localisation.predictions) as saved:
        masks, maps = to_protocol(truth.masks, saved[f"map__{localisation.result.variant}"])
    return [proportion_localised(masks, maps, iou_limit=round(0.1 * k, 1)) for k in range(1, 10)]


def test_category_defect_table_pl_curve_and_gallery(page, live_server, explained_runs, settings):  # noqa: F811
    page.goto(live_server.url + "/categories/synthetic/woven/")
    table = page.locator("#defect-table")
    assert table.is_visible()
    assert sorted(page.eval_on_selector_all("#defect-table tbody tr", "els => els.map(e => e.dataset.method)")) == [
        "patchcore",
        "random",
    ]
    loc = Localisation.objects.select_related("result__category").get(
        result__method__key="patchcore", result__category__key="synthetic/woven", result__is_current=True
    )
    for defect_type, (found, total) in loc.defect_summary.items():
        cell = table.locator(f"tr[data-method='patchcore'] td[data-defect='{defect_type}']")
        assert cell.inner_text().strip() == f"{found} of {total}"
    shot(page, "explained-category")

    table.locator("tr[data-method='patchcore'] a", has_text="PL by IoU").click()
    page.wait_for_url(f"**/results/{loc.result_id}/localisation/")
    assert f"{loc.n_localised} of {loc.n_anomalies}" in page.locator(".lede").first.inner_text()
    assert page.locator("#anomaly-table tbody tr").count() == loc.n_anomalies
    # the PL-versus-IoU chart: drawn, and its values are PL measured again at each limit
    page.wait_for_selector("#pl-iou-chart[data-rendered='true'] .main-svg", timeout=30_000)
    drawn = page.evaluate("() => document.getElementById('pl-iou-chart').data[0]")
    assert drawn["x"] == [round(0.1 * k, 1) for k in range(1, 10)]
    assert drawn["y"] == pytest.approx(_pl_from_saved_maps(loc, settings.DATASET_ROOTS), abs=1e-6)
    assert drawn["y"][2] == pytest.approx(loc.result.value, abs=1e-6)
    # the gallery: every image drawn server-side, 512 px, with box colours in it
    images = page.locator("#gallery img")
    assert images.count() >= 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth === 512)",
        timeout=30_000,
    )
    src = images.first.get_attribute("src")
    response = page.request.get(live_server.url + src)
    assert response.status == 200 and response.headers["content-type"] == "image/png"
    png = cv2.imdecode(np.frombuffer(response.body(), np.uint8), cv2.IMREAD_COLOR)
    assert png.shape == (512, 512, 3)
    captions = page.eval_on_selector_all("#gallery figcaption", "els => els.map(e => e.innerText)")
    assert all(("found" in c) != ("missed" in c) for c in captions)
    page.locator("#gallery").scroll_into_view_if_needed()
    shot(page, "explained-result")
    assert not page.console_errors, page.console_errors


def test_method_page_reported_figures_and_the_comparison(page, live_server, explained_runs):  # noqa: F811
    page.goto(live_server.url + "/methods/patchcore/")
    assert page.locator("#defect-table tbody tr").count() == 2  # woven and grid
    means = page.locator("#reported-means")
    headers = means.locator("thead").inner_text()
    assert "reported (VisionAD)" in headers and "reported (own paper)" in headers and "ours" in headers
    row = means.locator("tr[data-dataset='mvtec'][data-metric='image_auroc']")
    assert row.locator("td[data-reported='visionad']").inner_text() == "0.987"  # Table 2's mean
    assert row.locator("td[data-reported='own']").inner_text() == "0.991"  # PatchCore-25 %
    assert "VisionAD Table 2" in row.inner_text() and "(0 of 15 categories)" in row.inner_text()
    assert not page.locator("#reported-mvtec").is_visible()  # per-category tables fold away
    page.locator("#reported-mvtec-details summary").click()
    per_class = page.locator("#reported-mvtec")
    assert "Table 2" in per_class.locator("caption").inner_text()
    bottle = per_class.locator("tr[data-category='mvtec/bottle'] td[data-reported='visionad']").first
    assert bottle.inner_text().strip() == "1.000"
    page.locator("#reported-h").scroll_into_view_if_needed()
    shot(page, "explained-method")
    # reported figures never reach the leaderboard
    page.goto(live_server.url + "/?suite=synthetic")
    assert "reported" not in page.locator("#board").inner_text().lower()

    page.goto(live_server.url + "/compare/?suite=synthetic")
    page.select_option("#method-a", "patchcore")
    page.select_option("#method-b", "random")
    page.locator("form.compare-form button").click()
    page.wait_for_selector("#compare-table")
    assert page.locator("#compare-table tbody tr").count() == 2
    cells = page.eval_on_selector_all("#compare-table td[data-metric]", "els => els.map(e => e.innerText)")
    assert len(cells) == 2 * 4 and all(c == "–" or c[0] in "+-" for c in cells)
    assert page.locator("#compare-means tr[data-metric='pl'] td").nth(3).inner_text().strip() == "2 of 2"
    shot(page, "explained-compare")
    assert not page.console_errors, page.console_errors

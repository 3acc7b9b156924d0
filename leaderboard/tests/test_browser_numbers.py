"""Headless Chromium on real re-benchmark data (issue 14): the schedule-incomplete and random-init
badges, both spreads, error bars inside [0, 1], the cost columns and the accuracy-versus-speed
chart, and a run's evidence page with its specification and the command that reproduces it.

The data come from the demo's path at test sizes: a tiny synthetic suite, a config file, and
``benchmark_runs_create`` running the real runner through the (eager) Celery tasks: the random
baseline with two seeds, PatchCore (tiny, random-initialised backbone), and Reverse Distillation
whose 50 planned epochs cannot fit its 0.5 s cap. Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json

import pytest

from evaluation.tests.test_benchmarks_support import make_catalog, make_tiny_suite
from leaderboard.models import BenchmarkRun, JobStatus, Suite

from .test_browser import browser, page, shot  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CONFIG = """
from algorithms.registry import get_algorithm_info

models = [
    {"algorithm": "random", "params": {"input_size": 32}, "epochs": 1, "batch_size": 4, "seeds": [0, 1]},
    {"algorithm": "patchcore", "params": dict(get_algorithm_info("patchcore").tiny), "epochs": 1, "batch_size": 4},
    {"algorithm": "reverse_distillation", "params": dict(get_algorithm_info("reverse_distillation").tiny),
     "epochs": 50, "batch_size": 2, "train_time_limit_s": 0.5},
]
categories = ["synthetic"]
"""


@pytest.fixture
def demo_runs(settings, tmp_path):
    from leaderboard.services import method_sync_from_registry
    from leaderboard.services.benchmark_runs import benchmark_runs_create

    root = tmp_path / "synthetic"
    keys = make_tiny_suite(root, ("woven", "grid"))
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(root)}
    settings.VADI_RUNS_ROOT = str(tmp_path / "runs")
    method_sync_from_registry()
    make_catalog(keys, suite_key="synthetic")
    Suite.objects.get_or_create(key="vadi", defaults={"name": "VADI"})
    config = tmp_path / "browser_demo.py"
    config.write_text(CONFIG)
    runs = benchmark_runs_create(
        methods=["random", "patchcore", "reverse_distillation"], suites=["synthetic"], config=config, device="cpu"
    )
    for run in runs:
        run.refresh_from_db()
        assert run.status == JobStatus.DONE and run.is_published, run.error_message
    return {run.method.key: run for run in BenchmarkRun.objects.select_related("method")}


def test_board_badges_spreads_bars_and_cost(page, live_server, demo_runs):  # noqa: F811
    page.goto(live_server.url + "/")
    ranked = page.eval_on_selector_all("#board tbody tr[data-method]", "els => els.map(e => e.dataset.method)")
    assert sorted(ranked) == ["patchcore", "random"]  # Reverse Distillation hit its cap: not ranked
    capped = page.locator("section.incomplete li[data-method='reverse_distillation']")
    assert capped.locator("[data-badge='schedule-incomplete']").is_visible()
    assert "hit its wall-clock cap" in capped.inner_text()
    # PatchCore's backbone was random-initialised (pretrained=False): badged; the random baseline has none
    assert page.locator("tr[data-method='patchcore'] [data-badge='random-init']").is_visible()
    assert page.locator("tr[data-method='random'] [data-badge='random-init']").count() == 0
    # both spreads, each labelled; the seeds' one only where the run had several seeds
    random_row = page.locator("tr[data-method='random']")
    assert random_row.locator("[data-spread='categories']").first.inner_text().startswith("sdcategories")
    assert random_row.locator("[data-spread='seeds']").first.inner_text().startswith("sd2 seeds")
    assert page.locator("tr[data-method='patchcore'] [data-spread='seeds']").count() == 0
    # cost columns with the hardware they were measured on
    for cost in ("inference", "training", "memory", "params", "hardware"):
        text = page.locator(f"tr[data-method='patchcore'] [data-cost='{cost}']").inner_text().strip()
        assert text and text != "–", cost
    assert "logical CPUs" in page.locator("tr[data-method='patchcore'] [data-cost='hardware']").inner_text()
    # the bar chart: every error bar inside [0, 1], read back from the drawn figure
    page.wait_for_selector("#board-chart[data-rendered='true'] .main-svg", timeout=30_000)
    ends = page.evaluate(
        """() => document.getElementById('board-chart').data.flatMap(t =>
             t.y.map((y, i) => [y - t.error_y.arrayminus[i], y + t.error_y.array[i]]))"""
    )
    assert ends and all(0.0 <= low <= high <= 1.0 + 1e-9 for low, high in ends)
    # the accuracy-versus-inference-time chart: a point per ranked method, the y metric switchable
    page.wait_for_selector("#cost-chart[data-rendered='true'] .main-svg", timeout=30_000)
    assert sorted(page.evaluate("() => document.getElementById('cost-chart').data[0].text")) == [
        "PatchCore",
        "Random baseline",
    ]
    page.locator("#cost-chart .updatemenu-button", has_text="I-AUC").click()
    page.wait_for_function(
        "() => document.getElementById('cost-chart').layout.yaxis.title.text.startsWith('I-AUC')", timeout=10_000
    )
    shot(page, "numbers-home")
    assert not page.console_errors, page.console_errors


def test_evidence_page_shows_the_specification_and_the_command(page, live_server, demo_runs):  # noqa: F811
    run = demo_runs["reverse_distillation"]
    page.goto(live_server.url + "/suites/synthetic/evidence/reverse_distillation/pl/")
    assert page.locator("[data-badge='schedule-incomplete']").count() == 2  # both categories hit the cap
    page.locator("a[data-evidence-link]").first.click()
    page.wait_for_url(f"**/runs/{run.pk}/#job-synthetic-grid")
    spec_box = page.locator("#run-spec").inner_text()
    assert "50 epochs" in spec_box and "batch size 2" in spec_box and "64 × 64 px" in spec_box
    assert "no: randomly initialised" in spec_box and run.commit[:12] in spec_box and "Seed" in spec_box
    assert "logical CPUs" in spec_box and "vadi-eval" in spec_box
    hyper = page.locator("#hyperparameters").inner_text()
    assert "pretrained" in hyper and "bottleneck_blocks" in hyper
    grid = page.locator("#job-synthetic-grid")
    assert grid.locator("[data-badge='schedule-incomplete']").is_visible()
    assert " / 50" in grid.inner_text()  # epochs trained / planned
    command = page.locator("#reproduce-command").inner_text()
    assert f"git checkout {run.commit}" in command and "python -m algorithms run --config" in command
    assert f"run-{run.pk}-spec.json" in command and "--data-root synthetic=" in command
    spec = json.loads(page.request.get(live_server.url + f"/runs/{run.pk}/spec.json").text())
    assert spec == run.config["spec"] and spec["epochs"] == 50 and spec["train_time_limit_s"] == 0.5
    shot(page, "numbers-evidence-run")
    assert not page.console_errors, page.console_errors

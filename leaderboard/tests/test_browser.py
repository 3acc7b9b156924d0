"""Headless Chromium against the live server: table, chart, sorting, navigation, live job status.

Screenshots go to ``test-artifacts/screenshots/`` (git-ignored) for a human look.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from leaderboard.models import JobStatus

from .conftest import METRICS, publish_run
from .factories import BenchmarkRunFactory, MethodFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("headless Chromium is expected at /usr/bin/chromium")
    # Playwright's sync API runs an event loop in this thread; the test's ORM calls are still sync.
    # Set only while the browser tests run: it must not leak into other tests' environments.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_sync.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def rows(page) -> list[str]:
    return page.eval_on_selector_all("#board tbody tr[data-method]", "els => els.map(e => e.dataset.method)")


@pytest.fixture
def seeded(catalog):
    cats = catalog["categories"]["mvtec"] + catalog["categories"]["visa"]
    specs = [
        ("patchcore", "PatchCore", 0.99, 0.62),
        ("reverse-distillation", "Reverse Distillation", 0.97, 0.71),
        ("fastflow", "FastFlow", 0.93, 0.48),
        ("efficient-ad", "EfficientAD", 0.98, 0.55),
    ]
    runs = {}
    for i, (key, name, iauc, pl) in enumerate(specs):
        method = MethodFactory(key=key, name=name, description=f"{name}: test method.", paper_url="https://example.org")
        spread = [0.0, 0.02, -0.03, 0.04, -0.02]
        values = {
            "image_auroc": [min(1.0, iauc + d / 2) for d in spread],
            "pixel_auroc": [0.95 - 0.01 * i + d / 4 for d in spread],
            "aupro": [0.88 - 0.02 * i + d for d in spread],
            "pl": [pl + d for d in spread],
        }
        assert set(values) == set(METRICS)
        runs[key] = publish_run(method, cats, values)
    return runs


def test_home_table_chart_sort_and_method_link(page, live_server, seeded):
    page.goto(live_server.url + "/")
    assert rows(page) == ["reverse-distillation", "patchcore", "efficient-ad", "fastflow"]  # by PL
    page.wait_for_selector("#board-chart[data-rendered='true'] .main-svg", timeout=20_000)
    assert page.locator("#board-chart .trace.bars").count() >= 1 or page.locator("#board-chart g.point").count() > 0
    assert page.locator("#board caption").inner_text().startswith("VADI")
    shot(page, "home")

    page.click("#board thead a[data-sort='image_auroc']")
    page.wait_for_url("**/?sort=image_auroc")
    assert rows(page) == ["patchcore", "efficient-ad", "reverse-distillation", "fastflow"]
    assert page.get_attribute("#board thead th[aria-sort] a", "data-sort") == "image_auroc"

    page.click("#board tbody tr[data-method='fastflow'] th a")
    page.wait_for_url("**/methods/fastflow/")
    assert page.locator("h1").inner_text().startswith("FastFlow")
    shot(page, "method")

    page.go_back()
    page.click("#board tbody tr[data-method='patchcore'] td.sorted a")
    page.wait_for_url("**/evidence/patchcore/image_auroc/**")
    assert page.locator("table.board tbody tr").count() == 5
    shot(page, "evidence")
    assert page.console_errors == []


def test_breakdown_heatmap_and_phone_layout(browser, page, live_server, seeded):
    page.goto(live_server.url + "/suites/vadi/categories/?metric=aupro")
    page.wait_for_selector("#heatmap-chart[data-rendered='true'] .main-svg", timeout=20_000)
    assert page.locator("table.breakdown tbody tr").count() == 5
    shot(page, "breakdown")
    assert page.console_errors == []

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    mobile = phone.new_page()
    scripts: dict[str, int] = {}
    mobile.on("response", lambda r: scripts.__setitem__(r.url, len(r.body())) if r.url.endswith(".js") else None)
    mobile.goto(live_server.url + "/")
    mobile.wait_for_selector("#board-chart[data-rendered='true'] .main-svg", timeout=20_000)
    # the page does not scroll sideways, and the method and the ranked metric (PL) are in view without scrolling
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    assert mobile.evaluate("document.querySelector('.table-scroll').scrollWidth") <= 390
    for selector in ("#board thead th[aria-sort]", "#board tbody tr[data-method='patchcore'] th",
                     "#board tbody tr[data-method='patchcore'] td.sorted"):  # fmt: skip
        box = mobile.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
    assert mobile.get_attribute("#board thead th[aria-sort] a", "data-sort") == "pl"
    assert mobile.locator("#board td.aside").first.is_hidden()  # the other columns wait behind "Rank by"
    # the chart has no toolbar over it at phone width
    assert mobile.locator("#board-chart .modebar").count() == 0 or mobile.locator("#board-chart .modebar").is_hidden()
    # the smallest plotly bundle that draws our charts (static/vendor/README.md)
    plotly = [url for url in scripts if "/vendor/plotly/" in url]
    assert len(plotly) == 1 and "plotly-cartesian" in plotly[0] and scripts[plotly[0]] < 1_600_000, scripts
    mobile.select_option("select[name='sort']", "image_auroc")
    mobile.click("form.filters button[type='submit']")
    mobile.wait_for_url("**sort=image_auroc**")
    assert mobile.get_attribute("#board thead th[aria-sort] a", "data-sort") == "image_auroc"
    shot(mobile, "home-phone")
    phone.close()


def _sign_in(page, live_server, user) -> None:
    """Give the browser a session of ``user`` (a run that is not published yet is for staff only)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_run_page_polls_status_until_done(page, live_server, seeded):
    method = MethodFactory(key="live", name="Live")
    run = BenchmarkRunFactory(method=method, status=JobStatus.RUNNING, progress=0.4, progress_message="epoch 2/5")
    _sign_in(page, live_server, UserFactory(is_staff=True))
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    assert "Running" in page.locator("#job-status").inner_text()
    shot(page, "run-running")
    run.progress, run.progress_message = 0.8, "epoch 4/5"
    run.save()
    page.wait_for_function("document.querySelector('[data-field=progress_pct]').textContent === '80%'", timeout=15_000)
    run.status, run.progress, run.error_message = JobStatus.FAILED, 1.0, "mvtec/cable: out of memory"
    run.save()
    page.wait_for_selector("text=Failed: mvtec/cable: out of memory", timeout=15_000)
    shot(page, "run-failed")
    assert page.console_errors == []

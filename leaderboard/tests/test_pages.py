"""Server-rendered pages: the leaderboard, sorting without JS, evidence, downloads, jobs, visibility."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.urls import reverse

from leaderboard.models import JobStatus, Provenance, Visibility
from leaderboard.services.results import result_record, results_publish

from .conftest import METRICS, publish_run, publish_submission, uniform
from .factories import BenchmarkRunFactory, MethodFactory, SubmissionFactory, UserFactory

pytestmark = pytest.mark.django_db


def vadi_cats(catalog):
    return catalog["categories"]["mvtec"] + catalog["categories"]["visa"]


def row_order(html: str) -> list[str]:
    return re.findall(r'<tr data-method="([^"]+)"', html)


@pytest.fixture
def two_methods(catalog):
    cats = vadi_cats(catalog)
    a = MethodFactory(key="alpha", name="Alpha")
    b = MethodFactory(key="beta", name="Beta")
    publish_run(a, cats, {"image_auroc": [0.99] * 5, "pixel_auroc": [0.95] * 5, "aupro": [0.9] * 5, "pl": [0.3] * 5})
    publish_run(b, cats, {"image_auroc": [0.80] * 5, "pixel_auroc": [0.90] * 5, "aupro": [0.8] * 5, "pl": [0.6] * 5})
    return a, b


def test_home_renders_ranked_table_chart_and_explanations(client, two_methods):
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert row_order(html) == ["beta", "alpha"]  # PL by default
    assert "<caption" in html and 'scope="col"' in html and 'scope="row"' in html
    assert 'aria-sort="descending"' in html
    assert "higher is better" in html
    assert "0.600" in html and "sd<sub>categories</sub> 0.000" in html and "0.600<span class=\"std\"> ± " not in html
    assert 'id="board-figure"' in html and "vendor/plotly/plotly-cartesian-4.1.1.min.js" in html
    assert "cdn" not in html.lower()
    assert "population" in html and "ddof = 0" in html
    assert "82% of the defects were found" in html
    for m in METRICS:
        assert f'href="?sort={m}"' in html


def test_sorting_links_work_without_javascript(client, two_methods):
    html = client.get("/?sort=image_auroc").content.decode()
    assert row_order(html) == ["alpha", "beta"]
    assert re.search(r'aria-sort="descending">\s*<a href="\?sort=image_auroc"', html)


def test_values_link_to_their_evidence(client, two_methods):
    a, _ = two_methods
    html = client.get("/").content.decode()
    url = reverse("leaderboard:evidence", args=["vadi", "alpha", "pl"])
    assert f'href="{url}?evaluator=test-eval"' in html
    ev = client.get(url, {"evaluator": "test-eval"})
    assert ev.status_code == 200
    body = ev.content.decode()
    assert "mvtec/bottle" in body and "benchmark run #" in body
    assert reverse("leaderboard:run-detail", args=[a.benchmark_runs.get().pk]) in body


def test_bad_parameters_get_a_clear_400(client, two_methods):
    response = client.get("/?sort=f1")
    assert response.status_code == 400
    assert "unknown metric &#x27;f1&#x27;" in response.content.decode()
    assert client.get("/?provenance=typed").status_code == 400
    assert client.get("/?format=xml").status_code == 400
    assert client.get("/?suite=nope").status_code == 404


def test_dataset_filter_on_home(client, catalog):
    cats = vadi_cats(catalog)
    publish_run(MethodFactory(key="m", name="M"), cats, {m: [0.9, 0.8, 0.7, 0.2, 0.4] for m in METRICS})
    html = client.get("/?dataset=visa").content.decode()
    assert "(visa categories)" in html and "0.300" in html
    assert '<option value="visa" selected>VisA</option>' in html


def test_csv_and_json_downloads(client, two_methods):
    response = client.get("/?format=csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["method_key"] for r in rows] == ["beta", "alpha"]
    assert float(rows[0]["pl_mean"]) == pytest.approx(0.6)
    data = json.loads(client.get("/?format=json&sort=aupro").content)
    assert data["sort_metric"] == "aupro" and data["ranked"][0]["method"]["key"] == "alpha"
    bd = client.get(reverse("leaderboard:breakdown", args=["vadi"]), {"metric": "pl", "format": "csv"})
    lines = bd.content.decode().splitlines()
    assert lines[0] == "category,beta,alpha" and lines[-1].startswith("mean,0.6")


def test_category_table_downloads(client, two_methods, catalog):
    key = vadi_cats(catalog)[0].key
    response = client.get(reverse("leaderboard:category-detail", args=[key]), {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    rows = {r["method_key"]: r for r in csv.DictReader(io.StringIO(response.content.decode()))}
    assert set(rows) == {"alpha", "beta"}
    assert float(rows["alpha"]["pl"]) == pytest.approx(0.3) and float(rows["beta"]["aupro"]) == pytest.approx(0.8)
    assert rows["alpha"]["provenance"] == "reproduced"
    data = json.loads(client.get(reverse("leaderboard:category-detail", args=[key]), {"format": "json"}).content)
    assert data["category"] == key and {r["method_key"] for r in data["rows"]} == {"alpha", "beta"}


def test_demo_fallback_to_synthetic_suite(client, catalog):
    publish_run(MethodFactory(key="demo", name="Demo"), catalog["categories"]["synthetic"], uniform(0.7, 2))
    html = client.get("/").content.decode()
    assert "Synthetic leaderboard" in html and "No method has results on all 5 VADI categories" in html
    assert row_order(html) == ["demo"]
    explicit = client.get("/?suite=vadi").content.decode()
    assert row_order(explicit) == [] and "No method has results on every category" in explicit


def test_new_result_shows_after_cache_invalidation(client, two_methods, catalog):
    assert row_order(client.get("/").content.decode()) == ["beta", "alpha"]
    assert row_order(client.get("/").content.decode()) == ["beta", "alpha"]  # served from the cache
    publish_run(two_methods[0], vadi_cats(catalog), uniform(0.9, 5))
    assert row_order(client.get("/").content.decode()) == ["alpha", "beta"]


def test_writes_from_another_process_are_seen_with_a_local_cache(client, two_methods, catalog):
    from django.core.cache import cache

    from leaderboard.cache import CACHE_GENERATION_KEY

    assert row_order(client.get("/").content.decode()) == ["beta", "alpha"]
    generation = cache.get(CACHE_GENERATION_KEY)
    publish_run(two_methods[0], vadi_cats(catalog), uniform(0.9, 5))
    cache.set(CACHE_GENERATION_KEY, generation)  # as if the bump had happened in another process only
    assert row_order(client.get("/").content.decode()) == ["alpha", "beta"]


def test_home_query_count_is_constant_whatever_the_number_of_methods(client, catalog):
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def cold_queries(expected_rows: int) -> int:
        cache.clear()
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/")
        assert response.status_code == 200 and len(row_order(response.content.decode())) == expected_rows
        return len(ctx.captured_queries)

    for _ in range(3):
        publish_run(MethodFactory(), vadi_cats(catalog), uniform(0.5, 5))
    with_3 = cold_queries(3)
    for _ in range(9):
        publish_run(MethodFactory(), vadi_cats(catalog), uniform(0.5, 5))
    with_12 = cold_queries(12)
    assert with_3 == with_12 <= 10  # savepoints 2, data stamp 1 (page) + 1 (board), board 4, 2 filter lists
    with CaptureQueriesContext(connection) as warm:  # cached board: suite list, data stamp (+ savepoints)
        client.get("/")
    assert len(warm.captured_queries) < with_12


def test_dataset_breakdown_category_and_method_pages(client, two_methods, catalog):
    a, _ = two_methods
    assert client.get(reverse("leaderboard:dataset-detail", args=["mvtec"])).status_code == 200
    bd = client.get(reverse("leaderboard:breakdown", args=["vadi"]), {"metric": "aupro", "dataset": "visa"})
    html = bd.content.decode()
    assert bd.status_code == 200 and "visa/pcb1" in html and "mvtec/bottle" not in html
    assert 'id="heatmap-figure"' in html
    cat = client.get(reverse("leaderboard:category-detail", args=["mvtec/bottle"]))
    assert cat.status_code == 200 and "Alpha" in cat.content.decode()
    job = BenchmarkRunFactory(method=a, is_published=True)
    job.jobs.create(category=catalog["categories"]["mvtec"][0], status=JobStatus.DONE, timings={"train_seconds": 125})
    page = client.get(reverse("leaderboard:method-detail", args=["alpha"])).content.decode()
    assert "reproduced" in page and "2 min 5 s" in page and "Run #" in page
    data = json.loads(client.get(reverse("leaderboard:method-detail", args=["alpha"]), {"format": "json"}).content)
    assert len(data["results"]) == 20 and {r["provenance"] for r in data["results"]} == {"reproduced"}
    assert client.get(reverse("leaderboard:method-detail", args=["nope"])).status_code == 404


def test_run_page_shows_status_progress_and_error(client, catalog):
    run = BenchmarkRunFactory(status=JobStatus.RUNNING, progress=0.25, progress_message="epoch 3/12")
    assert client.get(reverse("leaderboard:run-detail", args=[run.pk])).status_code == 404  # not published yet
    client.force_login(UserFactory(is_staff=True))
    html = client.get(reverse("leaderboard:run-detail", args=[run.pk])).content.decode()
    assert "Running" in html and "25%" in html and "epoch 3/12" in html and "job-status.js" in html
    status = client.get(reverse("leaderboard:run-status", args=[run.pk])).json()
    assert status["status"] == "running" and status["progress"] == 0.25 and not status["is_finished"]
    run.status, run.error_message = JobStatus.FAILED, "CUDA out of memory on mvtec/cable"
    run.save()
    html = client.get(reverse("leaderboard:run-detail", args=[run.pk])).content.decode()
    assert "Failed: CUDA out of memory on mvtec/cable" in html and "job-status.js" not in html


def test_private_submission_visible_to_owner_and_staff_only(client, catalog):
    owner = UserFactory()
    method = MethodFactory()
    submission = publish_submission(
        method, vadi_cats(catalog), uniform(0.5, 5), owner=owner, visibility=Visibility.PRIVATE
    )
    url = reverse("leaderboard:submission-detail", args=[submission.pk])
    status_url = reverse("leaderboard:submission-status", args=[submission.pk])
    assert client.get(url).status_code == 404 and client.get(status_url).status_code == 404
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    client.force_login(owner)
    page = client.get(url)
    assert page.status_code == 200 and "0.500" in page.content.decode()
    client.force_login(UserFactory(is_staff=True))
    assert client.get(status_url).json()["status"] == "done"
    # and the private results never reach the public tables or the method page
    client.logout()
    assert method.key not in client.get("/?suite=vadi").content.decode()


def test_server_scored_result_page_links_submission(client, catalog):
    method = MethodFactory(key="uploaded", name="Uploaded")
    submission = SubmissionFactory(method=method)
    for c in vadi_cats(catalog):
        for m in METRICS:
            result_record(
                method=method,
                category=c,
                metric=m,
                value=0.7,
                provenance=Provenance.SERVER_SCORED,
                evaluator_version="test-eval",
                submission=submission,
            )
    results_publish(submission=submission)
    html = client.get("/").content.decode()
    assert "server-scored" in html
    ev = client.get(reverse("leaderboard:evidence", args=["vadi", "uploaded", "pl"])).content.decode()
    assert f"submission #{submission.pk}" in ev


def test_empty_catalog_renders(client, db):
    response = client.get("/")
    assert response.status_code == 200 and "sync_catalog" in response.content.decode()

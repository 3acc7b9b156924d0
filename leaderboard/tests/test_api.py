"""The public REST API: leaderboard, catalog, results filters, visibility, errors, schema."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from leaderboard.models import Visibility

from .conftest import METRICS, publish_run, publish_submission, uniform
from .factories import BenchmarkRunFactory, MethodFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def vadi_cats(catalog):
    return catalog["categories"]["mvtec"] + catalog["categories"]["visa"]


@pytest.fixture
def world(catalog):
    cats = vadi_cats(catalog)
    a = MethodFactory(key="alpha", name="Alpha")
    b = MethodFactory(key="beta", name="Beta")
    publish_run(a, cats, {"image_auroc": [0.99] * 5, "pixel_auroc": [0.9] * 5, "aupro": [0.9] * 5, "pl": [0.2] * 5})
    publish_run(b, cats, {m: [0.1, 0.2, 0.3, 0.4, 0.5] for m in METRICS})
    return a, b


def test_leaderboard_endpoint(api, world):
    data = api.get("/api/v1/leaderboard/vadi/").json()
    assert data["sort_metric"] == "pl" and data["n_categories"] == 5
    assert [r["method"]["key"] for r in data["ranked"]] == ["beta", "alpha"]
    pl = data["ranked"][0]["metrics"]["pl"]
    assert pl["mean"] == pytest.approx(0.3) and pl["n_categories"] == 5
    assert pl["std"] == pytest.approx(0.1414213562373095)  # population std of 0.1..0.5
    by_auc = api.get("/api/v1/leaderboard/vadi/", {"metric": "image_auroc"}).json()
    assert [r["method"]["key"] for r in by_auc["ranked"]] == ["alpha", "beta"]
    visa = api.get("/api/v1/leaderboard/vadi/", {"dataset": "visa"}).json()
    assert visa["n_categories"] == 2 and visa["ranked"][0]["metrics"]["pl"]["mean"] == pytest.approx(0.45)


@pytest.mark.parametrize(
    ("url", "params", "status", "code", "fragment"),
    [
        ("/api/v1/leaderboard/vadi/", {"metric": "f1"}, 400, "invalid", "unknown metric 'f1'"),
        ("/api/v1/leaderboard/vadi/", {"provenance": "typed"}, 400, "invalid", "provenance"),
        ("/api/v1/leaderboard/nope/", {}, 404, "not_found", "unknown suite 'nope'"),
        ("/api/v1/results/", {"metric": "x"}, 400, "invalid", "unknown metric"),
        ("/api/v1/categories/mvtec/nope/", {}, 404, "not_found", "no category 'mvtec/nope'"),
        ("/api/v1/methods/nope/", {}, 404, "not_found", ""),
    ],
)
def test_errors_have_one_format(api, world, url, params, status, code, fragment):
    response = api.get(url, params)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and fragment in body["error"]["message"]


def test_permission_errors_use_the_format_too(api, world):
    response = api.post("/api/v1/leaderboard/vadi/", {})
    assert response.status_code in (401, 403, 405)
    assert "error" in response.json()


def test_leaderboard_api_constant_queries(api, catalog):
    def cold(n_expected):
        cache.clear()
        with CaptureQueriesContext(connection) as ctx:
            data = api.get("/api/v1/leaderboard/vadi/").json()
        assert len(data["ranked"]) == n_expected
        return len(ctx.captured_queries)

    for _ in range(3):
        publish_run(MethodFactory(), vadi_cats(catalog), uniform(0.4, 5))
    q3 = cold(3)
    for _ in range(9):
        publish_run(MethodFactory(), vadi_cats(catalog), uniform(0.4, 5))
    assert cold(12) == q3


def test_results_filters_and_pagination(api, world, catalog):
    rows = api.get("/api/v1/results/", {"method": "alpha", "metric": "pl"}).json()
    assert rows["count"] == 5 and {r["method"] for r in rows["results"]} == {"alpha"}
    assert {r["provenance"] for r in rows["results"]} == {"reproduced"}
    assert api.get("/api/v1/results/", {"dataset": "visa"}).json()["count"] == 2 * 2 * 4
    assert api.get("/api/v1/results/", {"category": "mvtec/bottle", "method": "beta"}).json()["count"] == 4
    assert api.get("/api/v1/results/", {"evaluator_version": "other"}).json()["count"] == 0
    assert api.get("/api/v1/results/", {"provenance": "server_scored"}).json()["count"] == 0
    page = api.get("/api/v1/results/", {"limit": 3, "offset": 3}).json()
    assert page["count"] == 40 and len(page["results"]) == 3 and page["next"] and page["previous"]
    publish_run(world[0], vadi_cats(catalog), uniform(0.5, 5))
    assert api.get("/api/v1/results/", {"method": "alpha"}).json()["count"] == 20
    assert api.get("/api/v1/results/", {"method": "alpha", "current": "false"}).json()["count"] == 40


def test_catalog_endpoints_and_test_ids(api, world):
    datasets = api.get("/api/v1/datasets/").json()["results"]
    assert [(d["key"], d["n_categories"]) for d in datasets] == [("mvtec", 3), ("visa", 2), ("synthetic", 2)]
    suites = {s["key"]: s for s in api.get("/api/v1/suites/").json()["results"]}
    assert suites["vadi"]["n_categories"] == 5 and "visa/pcb1" in suites["vadi"]["categories"]
    assert api.get("/api/v1/suites/mvtec/").json()["n_categories"] == 3
    cats = api.get("/api/v1/categories/", {"dataset": "visa"}).json()["results"]
    assert [c["key"] for c in cats] == ["visa/candle", "visa/pcb1"]
    detail = api.get("/api/v1/categories/visa/pcb1/").json()
    assert detail == {"key": "visa/pcb1", "name": "pcb1", "dataset": "visa", "n_test_ids": 2}
    ids = api.get("/api/v1/categories/visa/pcb1/test-ids").json()
    assert ids["category"] == "visa/pcb1" and ids["count"] == 2
    assert all(len(i) == 32 and "/" not in i for i in ids["test_ids"]) and ids["test_ids"] == sorted(ids["test_ids"])
    files = api.get("/api/v1/categories/visa/pcb1/test-files").json()  # public ground truth: the table is published
    assert sorted(files["files"]) == ids["test_ids"]
    assert sorted(files["files"].values()) == ["test/crack/001.png", "test/good/000.png"]
    text = str(ids) + str(detail)
    assert "label" not in text and "mask" not in text  # ground truth is never served
    methods = api.get("/api/v1/methods/").json()["results"]
    assert [m["key"] for m in methods] == ["alpha", "beta"]
    assert api.get("/api/v1/methods/alpha/").json()["reproducible"] is False


def test_submissions_visibility(api, catalog):
    owner, other = UserFactory(), UserFactory()
    public = publish_submission(MethodFactory(), vadi_cats(catalog), uniform(0.5, 5), owner=owner)
    private = publish_submission(
        MethodFactory(), vadi_cats(catalog), uniform(0.5, 5), owner=owner, visibility=Visibility.PRIVATE
    )
    assert [s["id"] for s in api.get("/api/v1/submissions/").json()["results"]] == [public.pk]
    assert api.get(f"/api/v1/submissions/{private.pk}/").status_code == 404
    api.force_authenticate(other)
    assert api.get(f"/api/v1/submissions/{private.pk}/").status_code == 404
    api.force_authenticate(owner)
    assert {s["id"] for s in api.get("/api/v1/submissions/").json()["results"]} == {public.pk, private.pk}
    assert api.get(f"/api/v1/submissions/{private.pk}/").json()["visibility"] == "private"
    api.force_authenticate(UserFactory(is_staff=True))
    assert api.get(f"/api/v1/submissions/{private.pk}/").status_code == 200
    # private results stay out of the public result list
    api.force_authenticate(None)
    assert api.get("/api/v1/results/", {"provenance": "server_scored"}).json()["count"] == 20


def test_benchmark_runs(api, world):
    run = BenchmarkRunFactory(method=world[0], commit="abc123", is_published=True)
    listed = api.get("/api/v1/benchmark-runs/", {"method": "alpha"}).json()
    assert listed["count"] == 2 and listed["results"][0]["id"] == run.pk
    assert api.get(f"/api/v1/benchmark-runs/{run.pk}/").json()["commit"] == "abc123"
    # a run that is not published yet (running, or every category failed) is for staff only
    hidden = BenchmarkRunFactory(method=world[0], status="running", progress_message="epoch 2/5")
    assert api.get(f"/api/v1/benchmark-runs/{hidden.pk}/").status_code == 404
    assert api.get("/api/v1/benchmark-runs/", {"method": "alpha"}).json()["count"] == 2
    api.force_authenticate(UserFactory(is_staff=True))
    assert api.get(f"/api/v1/benchmark-runs/{hidden.pk}/").json()["progress_message"] == "epoch 2/5"
    assert api.get("/api/v1/benchmark-runs/", {"method": "alpha"}).json()["count"] == 3


def test_openapi_schema_and_local_docs(api, db):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for p in ("/api/v1/leaderboard/{suite}/", "/api/v1/results/", "/api/v1/categories/{key}/test-ids"):
        assert p in paths
    docs = api.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()


@pytest.mark.django_db
def test_unknown_api_paths_get_the_json_error_format(client):
    for method in ("get", "post", "delete"):
        response = getattr(client, method)("/api/v1/no-such-endpoint/")
        assert response.status_code == 404
        body = response.json()
        assert body["error"]["code"] == "not_found"
        assert "/api/v1/no-such-endpoint/" in body["error"]["message"]


def test_api_root_lists_every_endpoint_and_links_the_schema_and_docs(api, world):
    response = api.get("/api/v1/")
    assert response.status_code == 200
    data = response.json()
    assert data["schema"] == "http://testserver/api/v1/schema/" and data["docs"] == "http://testserver/api/v1/docs/"
    endpoints = data["endpoints"]
    assert endpoints["leaderboard"]["url"] == "http://testserver/api/v1/leaderboard/{suite}/"
    assert endpoints["category"]["url"] == "http://testserver/api/v1/categories/{dataset}/{category}/"
    assert endpoints["submission"]["url"] == "http://testserver/api/v1/submissions/{id}/"
    # Every public route is listed (the staff routes and the root itself are not).
    from django.urls import get_resolver

    listed = {e["url"].removeprefix("http://testserver") for e in endpoints.values()}
    routes = {
        "/api/v1/" + str(p.pattern)
        for module in ("leaderboard.api_urls", "leaderboard.api_urls_submit")  # the upload and its dry run too
        for p in get_resolver(module).url_patterns
        if str(p.pattern)
    }
    shown = {r.replace("<slug:suite>", "{suite}").replace("<slug:key>", "{key}").replace("<int:pk>", "{id}")
             .replace("<path:key>", "{dataset}/{category}") for r in routes}  # fmt: skip
    assert shown == listed
    for entry in endpoints.values():  # the list endpoints answer (the dry run is a POST with a token)
        if "{" not in entry["url"] and not entry["url"].endswith("/validate/"):
            assert api.get(entry["url"].removeprefix("http://testserver")).status_code == 200


def test_submission_answer_holds_its_results_and_results_filter_by_submission(api, catalog):
    from .conftest import publish_submission

    cats = vadi_cats(catalog)
    owner = UserFactory()
    method = MethodFactory(key="mine", name="Mine")
    submission = publish_submission(method, cats, {"image_auroc": [0.9] * 5, "pixel_auroc": [0.8] * 5,
                                                   "aupro": [0.7] * 5, "pl": [0.6] * 5}, owner=owner)  # fmt: skip
    other = MethodFactory(key="other", name="Other")
    publish_run(other, cats, {m: [0.5] * 5 for m in METRICS})
    data = api.get(f"/api/v1/submissions/{submission.pk}/").json()
    assert data["results_url"] == f"http://testserver/api/v1/results/?submission={submission.pk}&current=false"
    assert len(data["results"]) == len(cats)
    first = data["results"][0]
    assert first["metrics"] == {"image_auroc": 0.9, "pixel_auroc": 0.8, "aupro": 0.7, "pl": 0.6}
    listed = api.get(data["results_url"].removeprefix("http://testserver") + "&limit=1000").json()
    assert listed["count"] > 0 and {r["submission"] for r in listed["results"]} == {submission.pk}
    assert {r["method"] for r in listed["results"]} == {"mine"}
    assert api.get("/api/v1/results/?submission=0").status_code == 400
    assert api.get("/api/v1/results/?submission=999999").json()["count"] == 0

"""Numbers you can trust and explain (issue 14): incomplete schedules are not ranked, both spreads,
error bars inside the metric's range, cost on the board, and constant queries on the extra pages."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leaderboard import charts
from leaderboard.models import Provenance
from leaderboard.selectors.leaderboard import category_breakdown, seed_spread, suite_leaderboard
from leaderboard.services.results import result_record, results_publish

from .conftest import METRICS
from .factories import BenchmarkRunFactory, MethodFactory

pytestmark = pytest.mark.django_db

COST = {
    "train_seconds": 12.0,
    "inference_seconds_per_image": 0.02,
    "peak_memory_mb": 900.0,
    "peak_memory_measure": "process RSS peak (sampled every 50 ms)",
    "params_total": 11_000_000,
    "params_trainable": 1_000_000,
    "hardware": "Test CPU (2 logical CPUs, 2 torch threads)",
    "device": "cpu",
}


def publish(method, categories, value, *, complete=True, seed_values=None, pretrained=False, cost=COST, spec=None):
    """A published benchmark run of ``method``: ``value`` (a float, or one per category) on every metric."""
    run = BenchmarkRunFactory(method=method, config={"config_name": "test", "spec": spec or {}, "fingerprint": "f"})
    values = value if isinstance(value, list) else [value] * len(categories)
    for i, category in enumerate(categories):
        extra = {"schedule_complete": complete, "pretrained": pretrained, "cost": cost, "seeds": [0]}
        if seed_values is not None:
            extra["seed_values"] = seed_values[i]
            extra["seeds"] = list(range(len(seed_values[i])))
        for metric in METRICS:
            result_record(method=method, category=category, metric=metric, value=values[i],
                          provenance=Provenance.REPRODUCED, evaluator_version="test-eval", benchmark_run=run,
                          extra=extra)  # fmt: skip
    results_publish(benchmark_run=run)
    return run


def test_a_result_whose_training_hit_the_cap_is_shown_but_not_ranked(client, catalog):
    cats = catalog["categories"]["synthetic"]
    capped = MethodFactory(key="capped", name="Capped")
    full = MethodFactory(key="full", name="Full")
    publish(capped, cats, 0.95, complete=False)
    publish(full, cats, 0.6)
    board = suite_leaderboard(suite_key="synthetic")
    assert [r.method.key for r in board.rows] == ["full"]  # 0.95 would rank first: it is not ranked
    (row,) = board.incomplete
    assert row.method.key == "capped" and row.complete and row.schedule_incomplete == tuple(sorted(c.key for c in cats))
    breakdown = category_breakdown(suite_key="synthetic", metric="pl")  # the capped cells, and only those
    assert breakdown.capped == frozenset((c.key, capped.pk) for c in cats)
    html = client.get("/?suite=synthetic").content.decode()
    assert html.count('data-badge="schedule-incomplete"') == 1 and "Capped" in html
    api = client.get("/api/v1/leaderboard/synthetic/").json()
    assert [r["method"]["key"] for r in api["ranked"]] == ["full"]
    assert api["incomplete"][0]["schedule_incomplete"] == sorted(c.key for c in cats)
    results = client.get("/api/v1/results/", {"method": "capped"}).json()["results"]
    assert results and all(r["schedule_complete"] is False and r["pretrained"] is False for r in results)
    for url in ("/methods/capped/", f"/categories/{cats[0].key}/", "/suites/synthetic/categories/?metric=pl",
                "/suites/synthetic/evidence/capped/pl/"):  # fmt: skip
        assert 'data-badge="schedule-incomplete"' in client.get(url).content.decode(), url


def test_both_spreads_are_computed_and_labelled(client, catalog):
    cats = catalog["categories"]["synthetic"]
    seeds = [[0.7, 0.8, 0.9], [0.5, 0.5, 0.8]]  # per category, per seed
    method = MethodFactory(key="seeded", name="Seeded")
    publish(method, cats, [float(np.mean(v)) for v in seeds], seed_values=seeds)
    (row,) = suite_leaderboard(suite_key="synthetic").rows
    per_seed_means = np.mean(seeds, axis=0)  # the suite mean of each seed: 0.6, 0.65, 0.85
    assert row.n_seeds == 3 and row.seed_std["pl"] == pytest.approx(np.std(per_seed_means, ddof=1))
    assert row.metrics["pl"].std == pytest.approx(np.std([0.8, 0.6]))  # across categories, ddof=0
    html = client.get("/?suite=synthetic").content.decode()
    assert "sd<sub>categories</sub> 0.100" in html and "sd<sub>3 seeds</sub>" in html
    assert seed_spread([(0.1,), (0.2,)]) == (1, None) and seed_spread([(0.1, 0.2), (0.3,)]) == (1, None)


@pytest.mark.parametrize("mean,std", [(0.98, 0.1), (0.02, 0.3), (0.5, 0.7), (1.0, 0.0), (0.5, 0.1)])
def test_error_bars_never_leave_the_metrics_range(mean, std):
    up, down = charts.clipped_error(mean, std, 0.0, 1.0)
    assert 0.0 <= mean - down <= mean <= mean + up <= 1.0
    assert up == pytest.approx(min(std, 1 - mean)) and down == pytest.approx(min(std, mean))
    with pytest.raises(ValueError, match="cannot be negative"):
        charts.clipped_error(0.5, -0.1, 0.0, 1.0)


def test_the_bar_chart_cuts_bars_and_the_cost_chart_offers_every_metric(catalog):
    cats = catalog["categories"]["synthetic"]
    publish(MethodFactory(key="high", name="High"), cats, [1.0, 0.8])  # std 0.1 around 0.9: cut at 1
    publish(MethodFactory(key="low", name="Low"), cats, [0.0, 0.3], cost={**COST, "inference_seconds_per_image": 1})
    board = suite_leaderboard(suite_key="synthetic")
    figure = charts.suite_bar_figure(board)
    for trace in figure["data"]:
        bars = trace["error_y"]
        assert bars["symmetric"] is False
        for y, up, down in zip(trace["y"], bars["array"], bars["arrayminus"], strict=True):
            assert y - down >= 0.0 and y + up <= 1.0 + 1e-9
    scatter = charts.cost_scatter_figure(board)
    (trace,) = scatter["data"]
    assert trace["x"] == [20.0, 1000.0] and trace["text"] == ["High", "Low"]  # ms per image
    labels = [b["label"] for b in scatter["layout"]["updatemenus"][0]["buttons"]]
    assert labels[0] == "PL" and sorted(labels) == sorted(m.short_name for m in board.metrics)


def _queries(client, url: str) -> int:
    """Queries of one uncached request (the page and board caches emptied first)."""
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200, url
    return len(ctx.captured_queries)


def test_the_extra_pages_make_a_constant_number_of_queries_as_methods_grow(client, catalog):
    cats = catalog["categories"]["synthetic"]
    spec = {"algorithm": "patchcore", "categories": [c.key for c in cats], "batch_size": 8, "epochs": 1,
            "seeds": [0], "train_time_limit_s": 60.0, "params": {"pretrained": False}, "device": "cpu"}  # fmt: skip
    first = publish(MethodFactory(key="m0", name="M0"), cats, 0.5, spec=spec)
    urls = ["/?suite=synthetic", "/suites/synthetic/evidence/m0/pl/", f"/runs/{first.pk}/", "/methods/m0/"]
    before = {url: _queries(client, url) for url in urls}
    for i in range(1, 6):
        publish(MethodFactory(key=f"m{i}", name=f"M{i}"), cats, 0.5 + i / 20, spec=spec)
    assert len(suite_leaderboard(suite_key="synthetic").rows) == 6
    for url in urls:
        assert _queries(client, url) == before[url], url

"""The one aggregation: equal-weight mean, population std, completeness, preference rules, queries."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.cache import cache

from leaderboard.models import ReviewStatus, Visibility
from leaderboard.selectors.leaderboard import (
    SuiteNotFoundError,
    aggregate,
    category_breakdown,
    method_metric_evidence,
    suite_leaderboard,
)
from leaderboard.selectors.metrics import UnknownMetricError

from .conftest import METRICS, publish_run, publish_submission, uniform
from .factories import MethodFactory

pytestmark = pytest.mark.django_db


def vadi_cats(catalog):
    return catalog["categories"]["mvtec"] + catalog["categories"]["visa"]


def test_aggregate_is_equal_weight_mean_and_population_std():
    values = [0.91, 0.5, 0.77, 0.66, 1.0]
    agg = aggregate(values)
    assert agg.mean == pytest.approx(np.mean(values), abs=1e-15)
    assert agg.std == pytest.approx(np.std(values, ddof=0), abs=1e-15)
    assert agg.std != pytest.approx(np.std(values, ddof=1))
    assert agg.n == 5
    with pytest.raises(ValueError, match="empty"):
        aggregate([])


def test_mean_weights_categories_equally_not_datasets(catalog):
    method = MethodFactory(name="Alpha")
    cats = vadi_cats(catalog)  # 3 mvtec + 2 visa
    values = {m: [0.9, 0.8, 0.7, 0.2, 0.4] for m in METRICS}
    publish_run(method, cats, values)
    board = suite_leaderboard(suite_key="vadi")
    (row,) = board.rows
    assert row.rank == 1 and row.complete and row.n_categories == 5
    for m in METRICS:
        assert row.metrics[m].mean == pytest.approx(0.6)  # not (0.8 + 0.3) / 2 = 0.55
        assert row.metrics[m].std == pytest.approx(np.std([0.9, 0.8, 0.7, 0.2, 0.4]))
        assert row.metrics[m].n == 5


def test_ranking_by_pl_by_default_and_by_any_metric(catalog):
    cats = vadi_cats(catalog)
    a, b = MethodFactory(name="A"), MethodFactory(name="B")
    publish_run(a, cats, {"image_auroc": [0.99] * 5, "pixel_auroc": [0.9] * 5, "aupro": [0.8] * 5, "pl": [0.3] * 5})
    publish_run(b, cats, {"image_auroc": [0.90] * 5, "pixel_auroc": [0.9] * 5, "aupro": [0.8] * 5, "pl": [0.6] * 5})
    assert [r.method.name for r in suite_leaderboard(suite_key="vadi").rows] == ["B", "A"]
    board = suite_leaderboard(suite_key="vadi", sort="image_auroc")
    assert [r.method.name for r in board.rows] == ["A", "B"]
    assert board.sort_metric == "image_auroc"
    # ties share a rank
    tied = suite_leaderboard(suite_key="vadi", sort="aupro")
    assert [r.rank for r in tied.rows] == [1, 1]


def test_incomplete_methods_are_listed_apart(catalog):
    cats = vadi_cats(catalog)
    full, partial, missing_metric = MethodFactory(name="Full"), MethodFactory(name="Partial"), MethodFactory(name="M")
    publish_run(full, cats, uniform(0.5, 5))
    publish_run(partial, cats[:2], uniform(0.9, 2))
    publish_run(missing_metric, cats, {m: [0.9] * 5 for m in METRICS if m != "aupro"})
    board = suite_leaderboard(suite_key="vadi")
    assert [r.method.name for r in board.rows] == ["Full"]
    assert [(r.method.name, r.n_categories, r.rank) for r in board.incomplete] == [("Partial", 2, None), ("M", 0, None)]
    assert board.incomplete[0].metrics == {}


def test_reproduced_preferred_over_server_scored_and_provenance_filter(catalog):
    cats = vadi_cats(catalog)
    method = MethodFactory(name="Both")
    publish_run(method, cats, uniform(0.4, 5))
    publish_submission(method, cats[:3], uniform(0.9, 3))
    board = suite_leaderboard(suite_key="vadi")
    (row,) = board.rows
    assert row.metrics["pl"].mean == pytest.approx(0.4)
    assert row.preferred_reproduced == 3 and board.preferred_reproduced == 3
    assert board.notes and "reproduced one is shown" in board.notes[0]
    scored = suite_leaderboard(suite_key="vadi", provenance="server_scored")
    assert not scored.rows and scored.incomplete[0].n_categories == 3
    with pytest.raises(ValueError, match="unknown provenance"):
        suite_leaderboard(suite_key="vadi", provenance="typed")


def test_server_scored_fills_categories_without_reproduction(catalog):
    cats = vadi_cats(catalog)
    method = MethodFactory(name="Mixed")
    publish_run(method, cats[:2], uniform(0.4, 2))
    publish_submission(method, cats, uniform(0.9, 5))
    (row,) = suite_leaderboard(suite_key="vadi").rows
    assert row.metrics["pl"].mean == pytest.approx((0.4 * 2 + 0.9 * 3) / 5)
    assert row.provenances == ("reproduced", "server_scored")


@pytest.mark.parametrize(
    "hidden",
    [
        {"visibility": Visibility.PRIVATE},
        {"review_status": ReviewStatus.FLAGGED},
        {"review_status": ReviewStatus.REJECTED},
    ],
)
def test_private_or_held_submissions_never_count(catalog, hidden):
    cats = vadi_cats(catalog)
    publish_submission(MethodFactory(name="Hidden"), cats, uniform(0.9, 5), **hidden)
    board = suite_leaderboard(suite_key="vadi")
    assert not board.rows and not board.incomplete


def test_only_primary_variant_and_one_evaluator_version(catalog):
    cats = vadi_cats(catalog)
    method = MethodFactory()
    publish_run(method, cats, uniform(0.5, 5))
    publish_run(method, cats, uniform(0.9, 5), variant="alt", primary=False)
    publish_run(method, cats, uniform(0.7, 5), evaluator_version="newer-eval")
    board = suite_leaderboard(suite_key="vadi")
    assert board.evaluator_versions == ("newer-eval", "test-eval")
    assert board.evaluator_version == "newer-eval"  # the most recently used one
    assert board.rows[0].metrics["pl"].mean == pytest.approx(0.7)
    older = suite_leaderboard(suite_key="vadi", evaluator_version="test-eval")
    assert older.rows[0].metrics["pl"].mean == pytest.approx(0.5)


def test_dataset_restriction_and_other_suites(catalog):
    cats = vadi_cats(catalog)
    publish_run(MethodFactory(), cats, {m: [0.9, 0.8, 0.7, 0.2, 0.4] for m in METRICS})
    mv = suite_leaderboard(suite_key="vadi", dataset_key="mvtec")
    assert mv.n_categories == 3 and mv.rows[0].metrics["pl"].mean == pytest.approx(0.8)
    visa = suite_leaderboard(suite_key="visa")
    assert visa.rows[0].metrics["pl"].mean == pytest.approx(0.3)


def test_errors_name_the_problem(catalog):
    with pytest.raises(SuiteNotFoundError, match=r"unknown suite .nope.*vadi"):
        suite_leaderboard(suite_key="nope")
    with pytest.raises(UnknownMetricError, match="expected one of: image_auroc"):
        suite_leaderboard(suite_key="vadi", sort="f1")


def test_breakdown_and_evidence(catalog):
    cats = vadi_cats(catalog)
    a, b = MethodFactory(name="A"), MethodFactory(name="B")
    publish_run(a, cats, {m: [0.1, 0.2, 0.3, 0.4, 0.5] for m in METRICS})
    publish_run(b, cats[:4], uniform(0.9, 4))
    table = category_breakdown(suite_key="vadi", metric="aupro")
    assert [m.name for m in table.methods] == ["A", "B"]  # B is incomplete: after the complete ones
    assert table.values["visa/candle"] == {a.pk: 0.5} or table.values[cats[4].key] == {a.pk: 0.5}
    assert table.means[a.pk].mean == pytest.approx(0.3) and table.means[b.pk] is None
    ev = method_metric_evidence(suite_key="vadi", method_id=b.pk, metric="pl")
    assert len(ev.cells) == 4 and ev.missing == (cats[4].key,) and ev.aggregate is None
    ev_a = method_metric_evidence(suite_key="vadi", method_id=a.pk, metric="pl")
    assert [c.category_key for c in ev_a.cells] == [c.key for c in sorted(cats, key=lambda c: (c.dataset.order, c.key))]
    assert all(c.benchmark_run_id for c in ev_a.cells)


@pytest.mark.parametrize("n_methods", [3, 12])
def test_constant_number_of_queries(catalog, django_assert_num_queries, n_methods):
    cats = vadi_cats(catalog)
    for i in range(n_methods):
        publish_run(MethodFactory(), cats, uniform(0.3 + 0.05 * i, 5))
    publish_submission(MethodFactory(), cats, uniform(0.5, 5))
    cache.clear()
    with django_assert_num_queries(4):
        board = suite_leaderboard(suite_key="vadi")
    assert len(board.rows) == n_methods + 1

"""The one aggregation: equal-weight mean, population std, completeness, preference rules, queries."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from django.core.cache import cache

from leaderboard.cache import cache_key
from leaderboard.models import ReviewStatus, Visibility
from leaderboard.selectors.leaderboard import (
    Cell,
    Cost,
    SuiteNotFoundError,
    aggregate,
    category_breakdown,
    method_cost,
    method_metric_evidence,
    seed_spread,
    suite_leaderboard,
    suite_leaderboard_cached,
)
from leaderboard.selectors.metrics import UnknownMetricError

from .conftest import METRICS, publish_run, publish_submission, uniform
from .factories import MethodFactory, SuiteFactory

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
    assert table.values == {c.key: ({a.pk: v, b.pk: 0.9} if i < 4 else {a.pk: v})
                            for i, (c, v) in enumerate(zip(cats, [0.1, 0.2, 0.3, 0.4, 0.5]))}
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


def test_a_suite_of_one_category_ranks_its_complete_methods(catalog):
    bottle = catalog["categories"]["mvtec"][0]
    SuiteFactory(key="one", name="One").categories.set([bottle])
    a, b = MethodFactory(name="A"), MethodFactory(name="B")
    publish_run(a, [bottle], {"image_auroc": [0.9], "pixel_auroc": [0.8], "aupro": [0.7], "pl": [0.25]})
    publish_run(b, [bottle], {m: [0.5] for m in METRICS})
    board = suite_leaderboard(suite_key="one")
    assert board.category_keys == ("mvtec/bottle",) and board.n_categories == 1 and board.incomplete == ()
    assert [(r.method.name, r.rank, r.complete, r.n_categories) for r in board.rows] == [("B", 1, True, 1),
                                                                                      ("A", 2, True, 1)]
    row_a = board.rows[1]
    assert {k: (v.mean, v.std, v.n) for k, v in row_a.metrics.items()} == {
        "image_auroc": (0.9, 0.0, 1), "pixel_auroc": (0.8, 0.0, 1), "aupro": (0.7, 0.0, 1), "pl": (0.25, 0.0, 1)}


def test_two_primary_map_variants_count_the_first_by_name(catalog):
    cats = vadi_cats(catalog)
    method = MethodFactory(name="Twice")
    publish_run(method, cats, uniform(0.9, 5), variant="zeta")  # recorded first, named last
    publish_run(method, cats, uniform(0.3, 5), variant="alpha")
    (row,) = suite_leaderboard(suite_key="vadi").rows
    assert row.metrics["pl"].mean == pytest.approx(0.3) and row.metrics["pl"].n == 5
    assert len(row.benchmark_run_ids) == 1  # only the counted variant's run
    table = category_breakdown(suite_key="vadi", metric="pl")
    assert set(table.values[cats[0].key].values()) == {0.3}
    ev = method_metric_evidence(suite_key="vadi", method_id=method.pk, metric="pl")
    assert [c.variant for c in ev.cells] == ["alpha"] * 5 and [c.value for c in ev.cells] == [0.3] * 5


def test_ranks_ties_names_and_incomplete_order(catalog):
    cats = vadi_cats(catalog)
    for name, value in (("beta", 0.6), ("Alpha", 0.6), ("gamma", 0.3), ("Delta", 0.9)):
        publish_run(MethodFactory(name=name), cats, uniform(value, 5))
    publish_run(MethodFactory(name="two"), cats[:2], uniform(0.99, 2))
    publish_run(MethodFactory(name="Four"), cats[:4], uniform(0.1, 4))
    publish_run(MethodFactory(name="also four"), cats[1:], uniform(0.1, 4))
    board = suite_leaderboard(suite_key="vadi")
    assert [(r.method.name, r.rank) for r in board.rows] == [("Delta", 1), ("Alpha", 2), ("beta", 2), ("gamma", 4)]
    assert [(r.method.name, r.n_categories, r.complete) for r in board.incomplete] == [
        ("also four", 4, False), ("Four", 4, False), ("two", 2, False)]
    assert board.notes == () and board.preferred_reproduced == 0
    assert board.suite_key == "vadi" and board.suite_name == "VADI" and board.dataset_key is None
    assert board.category_keys == ("mvtec/bottle", "mvtec/cable", "mvtec/carpet", "visa/candle", "visa/pcb1")
    assert board.sort_metric == "pl"
    assert board.provenance is None and [m.key for m in board.metrics] == list(METRICS)


def test_sources_and_the_preference_note(catalog):
    cats = vadi_cats(catalog)
    method = MethodFactory(name="Both")
    run = publish_run(method, cats[:4], uniform(0.4, 4))
    sub = publish_submission(method, cats[3:], uniform(0.8, 2))
    board = suite_leaderboard(suite_key="vadi")
    (row,) = board.rows
    assert row.provenances == ("reproduced", "server_scored")
    assert row.benchmark_run_ids == (run.pk,) and row.submission_ids == (sub.pk,)
    assert row.preferred_reproduced == 1 and board.preferred_reproduced == 1
    assert row.metrics["pl"].mean == pytest.approx((0.4 * 4 + 0.8) / 5)
    assert board.notes == ("1 method-category pair(s) have both a reproduced and a server-scored result; "
                           "the reproduced one is shown.",)
    only = suite_leaderboard(suite_key="vadi", provenance="reproduced")
    assert only.provenance == "reproduced" and only.rows == () and only.notes == ()
    assert [(r.n_categories, r.submission_ids, r.preferred_reproduced) for r in only.incomplete] == [(4, (), 0)]


def test_the_registry_evaluator_is_the_default_when_it_has_results(catalog):
    from evaluation.metrics import EVALUATOR_VERSION

    cats = vadi_cats(catalog)
    method = MethodFactory(name="M")
    publish_run(method, cats, uniform(0.2, 5), evaluator_version=EVALUATOR_VERSION)
    publish_run(method, cats, uniform(0.7, 5), evaluator_version="zz-newer")
    board = suite_leaderboard(suite_key="vadi")
    assert board.evaluator_versions == ("zz-newer", EVALUATOR_VERSION)
    assert board.evaluator_version == EVALUATOR_VERSION and board.rows[0].metrics["pl"].mean == pytest.approx(0.2)
    table = category_breakdown(suite_key="vadi", metric="pl")
    assert table.evaluator_version == EVALUATOR_VERSION and table.means[method.pk].mean == pytest.approx(0.2)
    ev = method_metric_evidence(suite_key="vadi", method_id=method.pk, metric="pl")
    assert ev.evaluator_version == EVALUATOR_VERSION and ev.aggregate.mean == pytest.approx(0.2)
    newer = category_breakdown(suite_key="vadi", metric="pl", evaluator_version="zz-newer")
    assert newer.means[method.pk].mean == pytest.approx(0.7)
    assert method_metric_evidence(suite_key="vadi", method_id=method.pk, metric="pl",
                                  evaluator_version="zz-newer").aggregate.mean == pytest.approx(0.7)


def test_breakdown_filters_by_metric_and_provenance(catalog):
    cats = vadi_cats(catalog)
    a, b = MethodFactory(name="a-low"), MethodFactory(name="B-high")
    per_metric = {"image_auroc": [0.91] * 5, "pixel_auroc": [0.92] * 5, "aupro": [0.93] * 5, "pl": [0.2] * 5}
    publish_run(a, cats, per_metric)
    publish_submission(a, cats[:2], uniform(0.99, 2))
    publish_run(b, cats, {m: [0.6, 0.6, 0.6, 0.6, 0.1] for m in METRICS})
    for metric in METRICS:
        table = category_breakdown(suite_key="vadi", metric=metric)
        assert table.metric.key == metric and table.provenance is None
        assert table.values[cats[0].key] == {a.pk: per_metric[metric][0], b.pk: 0.6}  # reproduced preferred
        assert table.means[a.pk].mean == pytest.approx(per_metric[metric][0])
    pl = category_breakdown(suite_key="vadi", metric="pl")
    assert [m.name for m in pl.methods] == ["B-high", "a-low"]  # 0.5 before 0.2
    assert [m.name for m in category_breakdown(suite_key="vadi", metric="aupro").methods] == ["a-low", "B-high"]
    scored = category_breakdown(suite_key="vadi", metric="pl", provenance="server_scored")
    assert scored.provenance == "server_scored" and [m.name for m in scored.methods] == ["a-low"]
    assert scored.values[cats[0].key] == {a.pk: 0.99} and scored.values[cats[4].key] == {}
    assert scored.means == {a.pk: None}
    mvtec = category_breakdown(suite_key="vadi", metric="pl", dataset_key="mvtec")
    assert mvtec.categories == tuple(c.key for c in cats[:3]) and mvtec.dataset_key == "mvtec"
    assert mvtec.means[b.pk].mean == pytest.approx(0.6)
    ev = method_metric_evidence(suite_key="vadi", method_id=a.pk, metric="pl", provenance="server_scored")
    assert [c.value for c in ev.cells] == [0.99, 0.99] and ev.missing == ("mvtec/carpet", "visa/candle", "visa/pcb1")
    assert ev.method.name == "a-low" and ev.metric.key == "pl" and (ev.suite_key, ev.suite_name) == ("vadi", "VADI")
    with pytest.raises(ValueError, match="unknown provenance 'typed'"):
        category_breakdown(suite_key="vadi", metric="pl", provenance="typed")
    with pytest.raises(UnknownMetricError):
        category_breakdown(suite_key="vadi", metric="f1")


def test_empty_suites_and_unknown_methods(catalog):
    SuiteFactory(key="empty", name="Empty")
    board = suite_leaderboard(suite_key="empty")
    assert board.rows == () and board.incomplete == () and board.evaluator_version is None
    table = category_breakdown(suite_key="empty", metric="pl")
    assert table.methods == () and table.values == {} and table.evaluator_version is None
    ev = method_metric_evidence(suite_key="vadi", method_id=12345, metric="pl")
    assert ev.method is None and ev.cells == () and ev.aggregate is None and len(ev.missing) == 5


def test_cached_board_equals_the_board_and_follows_writes(catalog, django_assert_num_queries):
    cats = vadi_cats(catalog)
    method = MethodFactory(name="Cached")
    publish_run(method, cats, uniform(0.4, 5))
    first = suite_leaderboard_cached(suite_key="vadi", sort="image_auroc")
    assert first == suite_leaderboard(suite_key="vadi", sort="image_auroc")
    assert first.sort_metric == "image_auroc"
    # kept under the board's own name in the cache (the pages and the API share it)
    assert cache.get(cache_key("board", suite_key="vadi", sort="image_auroc")) == first
    with django_assert_num_queries(1):  # the data stamp only: the board comes from the cache
        assert suite_leaderboard_cached(suite_key="vadi", sort="image_auroc") == first
    other = suite_leaderboard_cached(suite_key="vadi", dataset_key="visa")
    assert other.dataset_key == "visa" and other.sort_metric == "pl"
    publish_run(method, cats, uniform(0.8, 5))
    assert suite_leaderboard_cached(suite_key="vadi", sort="image_auroc").rows[0].metrics["pl"].mean == pytest.approx(
        0.8)


def test_seed_spread_is_the_sample_std_of_the_per_seed_suite_means():
    seeds = [(0.7, 0.8), (0.5, 0.5), (0.9, 0.2)]  # 3 categories x 2 seeds: per-seed means 0.7, 0.5
    assert seed_spread(seeds) == (2, pytest.approx(statistics.stdev([0.7, 0.5]), rel=1e-12))
    seeds = [(0.7, 0.8, 0.9), (0.5, 0.5, 0.8)]  # 2 categories x 3 seeds: 0.6, 0.65, 0.85
    assert seed_spread(seeds) == (3, pytest.approx(statistics.stdev([0.6, 0.65, 0.85]), rel=1e-12))
    for unusable in ([], [(0.1, 0.2), None], [(0.1, 0.2), (0.3,)], [(0.1,), (0.2,)], [(0.1, 0.2), (0.3, 0.4, 0.5)]):
        assert seed_spread(unusable) == (1, None), unusable


def _cost_cell(category_id: int, cost: dict | None) -> Cell:
    return Cell(method_id=1, category_id=category_id, category_key=f"c{category_id}", metric="pl", value=0.5,
                provenance="reproduced", evaluator_version="1", variant="", benchmark_run_id=1,
                submission_id=None, result_id=category_id, cost=cost)


def test_method_cost_takes_one_cost_per_category_means_times_and_maxima():
    first = {"inference_seconds_per_image": 0.002, "train_seconds": 10, "peak_memory_mb": 300.0,
             "peak_memory_measure": "cuda max allocated", "params_total": 1000, "params_trainable": 10,
             "hardware": "H200"}
    second = {"inference_seconds_per_image": 0.004, "train_seconds": 30.0, "peak_memory_mb": 500,
              "peak_memory_measure": "rss", "params_total": 3000, "params_trainable": 30, "hardware": "CPU"}
    ignored = {"inference_seconds_per_image": 9.0, "train_seconds": 900.0, "peak_memory_mb": 9e9,
               "params_total": 9e9, "hardware": "ignored"}  # the same category again: its first cost counts
    partial = {"inference_seconds_per_image": "n/a", "train_seconds": None, "hardware": ""}  # nothing numeric
    cells = [_cost_cell(1, first), _cost_cell(1, ignored), _cost_cell(2, None), _cost_cell(2, second),
             _cost_cell(3, partial), _cost_cell(4, {})]
    assert method_cost(cells) == Cost(inference_ms_per_image=pytest.approx(3.0, rel=1e-12), train_seconds=20.0,
                                      peak_memory_mb=500.0, memory_measure="cuda max allocated; rss",
                                      params_total=3000, params_trainable=30, hardware=("CPU", "H200"))
    only_partial = method_cost([_cost_cell(3, partial)])
    assert only_partial == Cost(None, None, None, "", None, None, ())
    assert method_cost([_cost_cell(1, None), _cost_cell(2, {})]) is None
    assert method_cost([]) is None


def test_breakdown_names_its_suite_and_breaks_ties_by_the_lower_cased_name(catalog):
    cats = vadi_cats(catalog)
    tied = [MethodFactory(name=name) for name in ("xab", "X_b", "best")]
    for method in tied[:2]:
        publish_run(method, cats, uniform(0.5, 5))
    publish_run(tied[2], cats, uniform(0.7, 5))
    table = category_breakdown(suite_key="vadi", metric="pl")
    assert (table.suite_key, table.suite_name) == ("vadi", "VADI")
    # best first; then the tie in lower case: "x_b" < "xab" ("_" sorts before "a"; in upper case it would not)
    assert [m.name for m in table.methods] == ["best", "X_b", "xab"]


def _set_extra(method, **extra):
    from leaderboard.models import Result

    for result in Result.objects.filter(method=method):
        result.extra = {**result.extra, **extra}
        result.save(update_fields=["extra"])


def test_rows_flag_random_init_spread_seeds_of_complete_rows_only_and_break_ties_in_lower_case(catalog):
    cats = vadi_cats(catalog)
    plain, seeded, partial = MethodFactory(name="xab"), MethodFactory(name="X_b"), MethodFactory(name="partial")
    for method in (plain, seeded):
        publish_run(method, cats, uniform(0.5, 5))
    publish_run(partial, cats[:3], uniform(0.9, 3))
    _set_extra(seeded, pretrained=False, seed_values=[0.4, 0.6])
    _set_extra(partial, pretrained=True, seed_values=[0.8, 1.0])
    board = suite_leaderboard(suite_key="vadi")
    # equal means share rank 1; the tie is ordered by the lower-cased name ("x_b" < "xab"; not so in upper case)
    assert [(r.method.name, r.rank) for r in board.rows] == [("X_b", 1), ("xab", 1)]
    rows = {r.method.name: r for r in (*board.rows, *board.incomplete)}
    assert [rows[name].random_init for name in ("X_b", "xab", "partial")] == [True, False, False]
    assert (rows["X_b"].n_seeds, rows["xab"].n_seeds) == (2, 1)
    assert rows["X_b"].seed_std["pl"] == pytest.approx(statistics.stdev([0.4, 0.6]))
    # an incomplete row has no suite mean, hence no spread of its seeds' suite means either
    assert rows["partial"].n_seeds == 1 and rows["partial"].seed_std == {} and rows["partial"].metrics == {}
    with pytest.raises(ValueError, match="unknown provenance 'typed'"):
        suite_leaderboard(suite_key="vadi", provenance="typed")


def test_cells_carry_their_result_version_and_only_well_typed_extras(catalog):
    from leaderboard.models import Result

    cats = vadi_cats(catalog)
    baseline = MethodFactory(name="Base", is_baseline=True)
    publish_run(baseline, cats, uniform(0.5, 5))
    _set_extra(baseline, pretrained="yes", cost="n/a")  # not a bool, not a dict: ignored
    ev = method_metric_evidence(suite_key="vadi", method_id=baseline.pk, metric="pl")
    ids = dict(Result.objects.filter(method=baseline, metric="pl").values_list("category__key", "pk"))
    expected = [(ids[c.category_key], "test-eval") for c in ev.cells]
    assert [(c.result_id, c.evaluator_version) for c in ev.cells] == expected
    assert all(c.pretrained is None and c.cost is None for c in ev.cells)
    (row,) = suite_leaderboard(suite_key="vadi").rows
    assert row.method.is_baseline is True and row.random_init is False


def test_incomplete_rows_break_ties_in_lower_case(catalog):
    cats = vadi_cats(catalog)
    for name in ("xab", "X_b"):
        publish_run(MethodFactory(name=name), cats[:2], uniform(0.5, 2))
    board = suite_leaderboard(suite_key="vadi")
    assert [r.method.name for r in board.incomplete] == ["X_b", "xab"]


@pytest.mark.parametrize("newer_where", ["hidden submission", "other suite"])
def test_the_default_evaluator_version_comes_from_this_suites_public_results_only(catalog, newer_where):
    cats = vadi_cats(catalog)
    shown = MethodFactory(name="Shown")
    publish_run(shown, cats, uniform(0.5, 5), evaluator_version="v1")
    later = MethodFactory(name="Later")
    if newer_where == "hidden submission":  # a private upload scored by a newer evaluator
        publish_submission(later, cats, uniform(0.9, 5), evaluator_version="v9", visibility=Visibility.PRIVATE)
    else:  # the synthetic suite's categories, scored later by another version
        synthetic = catalog["categories"]["synthetic"]
        publish_run(later, synthetic, uniform(0.9, len(synthetic)), evaluator_version="v9")
    board = suite_leaderboard(suite_key="vadi")
    assert board.evaluator_version == "v1" and board.evaluator_versions == ("v1",)
    assert [r.method.name for r in board.rows] == ["Shown"]

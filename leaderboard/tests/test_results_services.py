"""result_record / results_publish: validation before writing, upsert, supersede with history, cache."""

from __future__ import annotations

import math

import pytest
from django.core.exceptions import ValidationError

from leaderboard.cache import cache_generation
from leaderboard.models import Provenance, Result
from leaderboard.services.results import result_record, results_publish

from .conftest import publish_run, uniform
from .factories import BenchmarkRunFactory, MethodFactory, SubmissionFactory

pytestmark = pytest.mark.django_db


def _record(**overrides):
    kwargs = dict(metric="pl", value=0.5, provenance=Provenance.REPRODUCED, evaluator_version="v1")
    kwargs.update(overrides)
    return result_record(**kwargs)


class TestResultRecord:
    def test_creates_then_updates_the_same_row(self, catalog):
        cat = catalog["categories"]["mvtec"][0]
        run = BenchmarkRunFactory()
        first = _record(method=run.method, category=cat, benchmark_run=run, value=0.4, extra={"job": 1})
        again = _record(method=run.method, category=cat, benchmark_run=run, value=0.6)
        assert first.pk == again.pk
        assert Result.objects.count() == 1
        row = Result.objects.get()
        assert row.value == 0.6 and row.extra == {} and row.is_current is False

    @pytest.mark.parametrize(
        ("overrides", "field", "fragment"),
        [
            ({"metric": "f1"}, "metric", "unknown metric 'f1'"),
            ({"value": math.nan}, "value", "finite"),
            ({"value": math.inf}, "value", "finite"),
            ({"value": 1.0000001}, "value", "outside [0.0, 1.0]"),
            ({"value": -0.1}, "value", "outside"),
            ({"value": "abc"}, "value", "not a number"),
            ({"evaluator_version": ""}, "evaluator_version", "must be given"),
            ({"provenance": "typed_in"}, "provenance", "unknown provenance"),
            ({"provenance": Provenance.SERVER_SCORED}, "provenance", "needs a submission"),
        ],
    )
    def test_rejects_bad_input_and_writes_nothing(self, catalog, overrides, field, fragment):
        cat = catalog["categories"]["mvtec"][0]
        run = BenchmarkRunFactory()
        with pytest.raises(ValidationError) as info:
            _record(method=run.method, category=cat, benchmark_run=run, **overrides)
        assert field in info.value.message_dict
        assert fragment in " ".join(info.value.message_dict[field])
        assert not Result.objects.exists()

    def test_source_must_belong_to_the_method(self, catalog):
        cat = catalog["categories"]["mvtec"][0]
        run = BenchmarkRunFactory()
        with pytest.raises(ValidationError, match="is for method"):
            _record(method=MethodFactory(), category=cat, benchmark_run=run)
        submission = SubmissionFactory()
        with pytest.raises(ValidationError, match="is for method"):
            _record(method=run.method, category=cat, submission=submission, provenance=Provenance.SERVER_SCORED)
        assert not Result.objects.exists()

    def test_boundary_values_are_accepted(self, catalog):
        cat = catalog["categories"]["mvtec"][0]
        run = BenchmarkRunFactory()
        assert _record(method=run.method, category=cat, benchmark_run=run, value=0.0).value == 0.0
        assert _record(method=run.method, category=cat, benchmark_run=run, metric="aupro", value=1).value == 1.0


class TestResultsPublish:
    def test_supersedes_previous_current_and_keeps_history(self, catalog):
        method = MethodFactory()
        cats = catalog["categories"]["mvtec"]
        old = publish_run(method, cats, uniform(0.5, 3))
        assert Result.objects.filter(benchmark_run=old, is_current=True).count() == 12
        new = publish_run(method, cats[:2], uniform(0.7, 2))
        assert Result.objects.filter(benchmark_run=new, is_current=True).count() == 8
        # the old run's results on the two re-run categories are history now, the third stays current
        assert Result.objects.filter(benchmark_run=old, is_current=True).count() == 4
        assert set(Result.objects.filter(benchmark_run=old, is_current=True).values_list("category", flat=True)) == {
            cats[2].pk
        }
        assert Result.objects.count() == 20
        assert old.results.filter(is_current=False).count() == 8
        new.refresh_from_db()
        assert new.is_published

    def test_publishing_twice_changes_nothing(self, catalog):
        method = MethodFactory()
        run = publish_run(method, catalog["categories"]["visa"], uniform(0.5, 2))
        assert results_publish(benchmark_run=run) == 0
        assert Result.objects.filter(is_current=True).count() == 8

    def test_other_provenance_other_variant_other_evaluator_are_not_superseded(self, catalog):
        method = MethodFactory()
        cats = catalog["categories"]["visa"]
        run = publish_run(method, cats, uniform(0.5, 2))
        publish_run(method, cats, uniform(0.6, 2), variant="other_map", primary=False)
        publish_run(method, cats, uniform(0.6, 2), evaluator_version="v2")
        submission = SubmissionFactory(method=method)
        for c in cats:
            result_record(
                method=method,
                category=c,
                metric="pl",
                value=0.9,
                provenance=Provenance.SERVER_SCORED,
                evaluator_version="test-eval",
                submission=submission,
            )
        assert results_publish(submission=submission) == 2
        assert run.results.filter(is_current=True).count() == 8
        assert Result.objects.filter(is_current=True).count() == 8 * 3 + 2

    def test_needs_exactly_one_source(self, catalog):
        with pytest.raises(ValueError, match="exactly one"):
            results_publish()
        with pytest.raises(ValueError, match="exactly one"):
            results_publish(benchmark_run=BenchmarkRunFactory(), submission=SubmissionFactory())

    def test_invalidates_cache_generation(self, catalog):
        before = cache_generation()
        publish_run(MethodFactory(), catalog["categories"]["visa"], uniform(0.5, 2))
        assert cache_generation() > before

    def test_rerecording_a_current_result_invalidates_the_cache(self, catalog):
        method = MethodFactory()
        cats = catalog["categories"]["visa"]
        run = publish_run(method, cats, uniform(0.5, 2))
        before = cache_generation()
        row = result_record(
            method=method,
            category=cats[0],
            metric="pl",
            value=0.25,
            provenance=Provenance.REPRODUCED,
            evaluator_version="test-eval",
            benchmark_run=run,
        )
        assert row.is_current and row.value == 0.25
        assert cache_generation() > before

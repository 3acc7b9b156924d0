"""Fixtures for the leaderboard tests: a small catalog and a helper that records + publishes results."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from leaderboard.models import Provenance
from leaderboard.services.results import result_record, results_publish

from .factories import (
    BenchmarkRunFactory,
    CategoryFactory,
    DatasetFactory,
    MethodFactory,
    SubmissionFactory,
    SuiteFactory,
)

METRICS = ("image_auroc", "pixel_auroc", "aupro", "pl")


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def catalog(db):
    """Suites ``vadi`` (mvtec 3 + visa 2 categories), ``mvtec``, ``visa`` and ``synthetic`` (2)."""
    mvtec = DatasetFactory(key="mvtec", name="MVTec AD", order=1)
    visa = DatasetFactory(key="visa", name="VisA", order=2)
    synthetic = DatasetFactory(key="synthetic", name="Synthetic", order=3)
    cats = {
        "mvtec": [CategoryFactory(dataset=mvtec, name=n) for n in ("bottle", "cable", "carpet")],
        "visa": [CategoryFactory(dataset=visa, name=n) for n in ("pcb1", "candle")],
        "synthetic": [CategoryFactory(dataset=synthetic, name=n) for n in ("woven", "speckle")],
    }
    suites = {
        "vadi": SuiteFactory(key="vadi", name="VADI", order=0),
        "mvtec": SuiteFactory(key="mvtec", name="MVTec AD", order=1),
        "visa": SuiteFactory(key="visa", name="VisA", order=2),
        "synthetic": SuiteFactory(key="synthetic", name="Synthetic", order=3),
    }
    suites["vadi"].categories.set(cats["mvtec"] + cats["visa"])
    for key in ("mvtec", "visa", "synthetic"):
        suites[key].categories.set(cats[key])
    return {"suites": suites, "categories": cats}


def _record_all(method, categories, values, *, evaluator_version, **source):
    """``result_record`` for ``values[metric][i]`` on ``categories[i]`` from one source."""
    for metric, per_cat in values.items():
        for category, value in zip(categories, per_cat, strict=True):
            result_record(
                method=method,
                category=category,
                metric=metric,
                value=value,
                evaluator_version=evaluator_version,
                **source,
            )


def publish_run(method, categories, values, *, evaluator_version="test-eval", variant="default", primary=True):
    """One benchmark run of ``method`` with ``values[metric][i]`` on ``categories[i]``; published."""
    run = BenchmarkRunFactory(method=method)
    _record_all(
        method,
        categories,
        values,
        evaluator_version=evaluator_version,
        provenance=Provenance.REPRODUCED,
        variant=variant,
        is_primary_variant=primary,
        benchmark_run=run,
    )
    results_publish(benchmark_run=run)
    return run


def publish_submission(method, categories, values, *, evaluator_version="test-eval", **kwargs):
    submission = SubmissionFactory(method=method, **kwargs)
    _record_all(
        method,
        categories,
        values,
        evaluator_version=evaluator_version,
        provenance=Provenance.SERVER_SCORED,
        submission=submission,
    )
    results_publish(submission=submission)
    return submission


def uniform(value, n):
    return {m: [value] * n for m in METRICS}


@pytest.fixture
def make_method():
    return MethodFactory

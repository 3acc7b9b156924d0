"""Metric metadata for the web layer: the registry of ``evaluation.metrics``, read lazily.

``evaluation.metrics`` is pure numpy (no torch), but it is imported on first use so that the
URL configuration never depends on it at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class MetricInfo:
    """What the pages and the API need to know about one metric (a copy of ``MetricSpec``)."""

    key: str
    short_name: str
    display_name: str
    level: str
    low: float
    high: float
    higher_is_better: bool
    explanation: str


class UnknownMetricError(ValueError):
    """A metric key that the registry does not know."""


@cache
def metric_list() -> tuple[MetricInfo, ...]:
    """The registered metrics in display order (I-AUC, P-AUC, AUPRO, PL)."""
    from evaluation.metrics import list_metrics

    return tuple(
        MetricInfo(
            key=spec.key,
            short_name=spec.short_name,
            display_name=spec.display_name,
            level=spec.level,
            low=float(spec.low),
            high=float(spec.high),
            higher_is_better=bool(spec.higher_is_better),
            explanation=spec.explanation,
        )
        for spec in list_metrics()
    )


def metric_keys() -> tuple[str, ...]:
    return tuple(m.key for m in metric_list())


def metric_get(key: str) -> MetricInfo:
    """The metric registered under ``key``; ``UnknownMetricError`` names the valid keys otherwise."""
    for info in metric_list():
        if info.key == key:
            return info
    raise UnknownMetricError(f"unknown metric {key!r}; expected one of: {', '.join(metric_keys())}")

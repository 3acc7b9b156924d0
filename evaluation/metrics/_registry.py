"""Metric registry: display names, ranges and plain-language explanations for the leaderboard."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRICS", "MetricSpec", "get_metric", "list_metrics"]


@dataclass(frozen=True)
class MetricSpec:
    """Everything the site needs to show one metric as a leaderboard column."""

    key: str
    short_name: str
    display_name: str
    level: str  # "image" or "pixel"
    low: float = 0.0
    high: float = 1.0
    higher_is_better: bool = True
    explanation: str = ""


METRICS: dict[str, MetricSpec] = {
    spec.key: spec
    for spec in (
        MetricSpec(
            key="image_auroc",
            short_name="I-AUC",
            display_name="Image AUROC",
            level="image",
            explanation=(
                "How well the method tells defective images from good ones: the chance that a randomly "
                "chosen defective image gets a higher anomaly score than a randomly chosen good one "
                "(1 is perfect, 0.5 is guessing)."
            ),
        ),
        MetricSpec(
            key="pixel_auroc",
            short_name="P-AUC",
            display_name="Pixel AUROC",
            level="pixel",
            explanation=(
                "How well the anomaly map ranks defective pixels above good pixels, over every pixel of "
                "every test image. Large defects dominate it, so it can look high even when small defects are missed."
            ),
        ),
        MetricSpec(
            key="aupro",
            short_name="AUPRO",
            display_name="AUPRO (FPR ≤ 0.3)",
            level="pixel",
            explanation=(
                "How much of each defect the anomaly map covers, averaged so that small and large defects "
                "count equally, while at most 30% of good pixels are wrongly flagged."
            ),
        ),
        MetricSpec(
            key="pl",
            short_name="PL",
            display_name="Proportion Localised",
            level="pixel",
            explanation=(
                "The share of defects that were found: a defect counts as found when the flagged area "
                "around it overlaps its box well enough (IoU above 0.3), at the best single threshold."
            ),
        ),
    )
}


def get_metric(key: str) -> MetricSpec:
    """Return the spec for ``key``; raise ``ValueError`` naming the known keys otherwise."""
    try:
        return METRICS[key]
    except KeyError:
        raise ValueError(f"unknown metric {key!r}; known metrics: {', '.join(METRICS)}") from None


def list_metrics() -> list[MetricSpec]:
    """All metric specs in display order."""
    return list(METRICS.values())

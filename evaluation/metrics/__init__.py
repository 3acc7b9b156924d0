"""Metrics engine: pure functions on numpy arrays (numpy, scipy, OpenCV, shapely; no Django, no torch).

The ground floor of the project: this package imports nothing of ours, and every package may
import it (``algorithms.runner``, ``evaluation.scoring``, the leaderboard's metric registry).
``pyproject.toml``'s import-linter contracts keep it that way.

Inputs are ``masks`` (N, H, W) binary ground truth, ``maps`` (N, H, W) float anomaly maps
(higher means more anomalous), ``labels`` (N,) and ``scores`` (N,). No metric ever flips a
direction. Bad input raises ``ValueError`` naming the problem; nothing returns NaN.
Every stored result names :data:`EVALUATOR_VERSION`, which pins these definitions and the
evaluation resolution :data:`EVAL_SIZE`.
"""

from ._combined import evaluate
from ._protocol import (
    EVAL_SIZE,
    EVALUATOR_VERSION,
    evaluate_at_protocol,
    maps_to_protocol,
    masks_to_protocol,
    to_protocol,
)
from ._registry import METRICS, MetricSpec, get_metric, list_metrics
from .aupro import aupro
from .classification import image_auroc, pixel_auroc
from .localisation import (
    AnomalyLocalisation,
    LocalisationReport,
    localisation_report,
    proportion_localised,
    proportion_localised_from_ious,
)

__all__ = [
    "EVALUATOR_VERSION",
    "EVAL_SIZE",
    "METRICS",
    "AnomalyLocalisation",
    "LocalisationReport",
    "MetricSpec",
    "aupro",
    "evaluate",
    "evaluate_at_protocol",
    "get_metric",
    "image_auroc",
    "list_metrics",
    "localisation_report",
    "maps_to_protocol",
    "masks_to_protocol",
    "pixel_auroc",
    "proportion_localised",
    "proportion_localised_from_ious",
    "to_protocol",
]

"""PL explained: the anomalies behind a PL value, per defect type, and PL as a function of the IoU limit.

Everything here reads the ``Localisation`` rows that benchmark jobs store beside their PL results
(``services.localisation``): no map or mask is measured again. ``pl_curve`` computes PL at other
IoU limits from the stored IoUs with ``evaluation.metrics.proportion_localised_from_ious``.
The tables (``category_defect_table``, ``method_defect_table``) count current results from
published sources, like every leaderboard table, in one query each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from ..models import Localisation
from .leaderboard import table_results_q
from .visibility import Viewer, result_visible_q

#: The IoU limits of the PL-versus-IoU chart (the paper's PL_xx variants; PL itself is PL_30).
IOU_LIMITS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))

#: Datasets whose test ground truth is public: their results may show their test images.
PUBLIC_GROUND_TRUTH_DATASETS: tuple[str, ...] = ("mvtec", "visa", "synthetic")

#: Example images per result in the gallery (found and missed ones, alternately).
GALLERY_SIZE = 8


@dataclass(frozen=True)
class DefectRow:
    """One defect type of one result: how many of its anomalies PL found at the chosen threshold."""

    defect_type: str
    found: int
    total: int

    @property
    def share(self) -> float:
        return self.found / self.total if self.total else 0.0


@dataclass(frozen=True)
class LocalisationDetail:
    """One result's PL explained: its anomalies, per-defect-type counts, PL-vs-IoU curve and gallery."""

    localisation: Localisation
    defects: tuple[DefectRow, ...]
    curve: tuple[tuple[float, float], ...]  # (IoU limit, PL at that limit)
    anomalies: tuple[dict[str, Any], ...]
    gallery: tuple[dict[str, Any], ...]  # anomalies whose image the gallery draws (one per image)
    gallery_note: str  # why there is no gallery ('' when there is one)
    public: bool  # the dataset's ground truth is public: test-image ids and boxes may be shown


def defect_rows(summary: dict[str, list[int]]) -> tuple[DefectRow, ...]:
    """``{type: [found, total]}`` as rows, in the summary's order."""
    return tuple(DefectRow(str(k), int(v[0]), int(v[1])) for k, v in summary.items())


def pl_curve(
    anomalies: list[dict[str, Any]], limits: tuple[float, ...] = IOU_LIMITS
) -> tuple[tuple[float, float], ...]:
    """PL at each IoU limit, from the IoUs stored per anomaly and threshold (nothing is re-measured)."""
    from evaluation.metrics import proportion_localised_from_ious

    ious = [a["ious"] for a in anomalies]
    if not ious:
        return ()
    return tuple((limit, proportion_localised_from_ious(ious, iou_limit=limit)) for limit in limits)


def gallery_choice(anomalies: list[dict[str, Any]], *, size: int = GALLERY_SIZE) -> tuple[dict[str, Any], ...]:
    """Up to ``size`` anomalies on distinct images: found and missed ones alternately, in report order."""
    found, missed, seen = [], [], set()
    for anomaly in anomalies:
        if anomaly["image_index"] in seen:
            continue
        seen.add(anomaly["image_index"])
        (found if anomaly["localised"] else missed).append(anomaly)
    chosen: list[dict[str, Any]] = []
    while (found or missed) and len(chosen) < size:
        for group in (missed, found):
            if group and len(chosen) < size:
                chosen.append(group.pop(0))
    return tuple(chosen)


def ground_truth_is_public(localisation: Localisation) -> bool:
    dataset = localisation.result.category.dataset
    return dataset.ground_truth_public and dataset.key in PUBLIC_GROUND_TRUTH_DATASETS


#: Localisations of blind datasets are never shown (per-defect-type counts and per-anomaly IoUs
#: would reveal their hidden ground truth); none is recorded for them, and none is read.
_PUBLIC_Q = Q(result__category__dataset__ground_truth_public=True) & Q(
    result__category__dataset__key__in=PUBLIC_GROUND_TRUTH_DATASETS
)


def gallery_allowed(localisation: Localisation) -> str:
    """'' when the result's gallery may be drawn, else why not."""
    if not ground_truth_is_public(localisation):
        return "This dataset's ground truth is not public, so no test image is shown."
    if not localisation.predictions:
        return (
            "No maps were saved for this result (uploaded maps are not kept; a run saves them with "
            "save_predictions), so there is nothing to draw."
        )
    return ""


def localisation_get(*, result_pk: int, viewer: Viewer) -> LocalisationDetail:
    """The PL explanation of one result the viewer may see (one query). Raises ``Localisation.DoesNotExist``."""
    localisation = (
        Localisation.objects.select_related("result", "result__method", "result__category", "result__category__dataset")
        .filter(Q(result__pk=result_pk) & _prefixed(result_visible_q(viewer)) & _PUBLIC_Q)
        .get()
    )
    anomalies = tuple(
        {**a, "n": n, "box": [a["center_x"], a["center_y"], a["width"], a["height"], a["angle"]]}
        for n, a in enumerate(localisation.anomalies)
    )
    note = gallery_allowed(localisation)
    public = ground_truth_is_public(localisation)
    if not public:  # which test images hold which defects, and where, is the blind suite's secret
        hidden = ("image_id", "image_index", "center_x", "center_y", "width", "height", "angle", "box")
        anomalies = tuple({k: v for k, v in a.items() if k not in hidden} for a in anomalies)
    return LocalisationDetail(
        localisation=localisation,
        defects=defect_rows(localisation.defect_summary),
        curve=pl_curve(localisation.anomalies),
        anomalies=anomalies,
        gallery=() if note else gallery_choice(list(anomalies)),
        gallery_note=note,
        public=public,
    )


def localisation_for_image(*, result_pk: int, image_index: int, viewer: Viewer) -> tuple[Localisation, list[dict]]:
    """A visible result's localisation and its anomalies on one test image (for drawing it)."""
    localisation = (
        Localisation.objects.select_related("result", "result__category", "result__category__dataset")
        .filter(Q(result__pk=result_pk) & _prefixed(result_visible_q(viewer)) & _PUBLIC_Q)
        .get()
    )
    return localisation, [a for a in localisation.anomalies if a["image_index"] == image_index]


def _prefixed(q: Q) -> Q:
    """A condition on ``Result`` rewritten for a query on ``Localisation`` (``result__`` prefix)."""
    out = Q()
    out.connector, out.negated = q.connector, q.negated
    for child in q.children:
        out.children.append(_prefixed(child) if isinstance(child, Q) else (f"result__{child[0]}", child[1]))
    return out


@dataclass(frozen=True)
class DefectTableRow:
    """One result's per-defect-type counts in a category's or a method's table."""

    label: str  # the method (category page) or the category (method page)
    key: str
    result_id: int
    provenance: str
    n_localised: int
    n_anomalies: int
    threshold: float
    iou_limit: float
    counts: dict[str, tuple[int, int]]  # defect type -> (found, total)


@dataclass(frozen=True)
class DefectTable:
    defect_types: tuple[str, ...]
    rows: tuple[DefectTableRow, ...]


def _defect_table(qs, *, label: str, key: str) -> DefectTable:
    rows = []
    types: set[str] = set()
    values = qs.values_list(
        "result_id", label, key, "result__provenance", "n_localised", "n_anomalies", "threshold", "iou_limit",
        "defect_summary",
    )  # fmt: skip
    for rid, name, k, prov, found, total, threshold, limit, summary in values:
        counts = {str(t): (int(v[0]), int(v[1])) for t, v in (summary or {}).items()}
        types.update(counts)
        rows.append(DefectTableRow(name, k, rid, prov, found, total, threshold, limit, counts))
    return DefectTable(defect_types=tuple(sorted(types)), rows=tuple(rows))


def _table_localisations():
    return Localisation.objects.filter(
        _prefixed(table_results_q()), _PUBLIC_Q, result__metric="pl", result__is_primary_variant=True
    )


def category_defect_table(*, category_key: str) -> DefectTable:
    """Per method: the category's anomalies found per defect type by its current published PL result (one query)."""
    qs = _table_localisations().filter(result__category__key=category_key)
    qs = qs.order_by("result__method__name", "result__provenance", "result__evaluator_version")
    return _defect_table(qs, label="result__method__name", key="result__method__key")


def method_defect_table(*, method_key: str) -> DefectTable:
    """Per category: the anomalies a method found per defect type, from its current published PL results (one query)."""
    qs = _table_localisations().filter(result__method__key=method_key)
    qs = qs.order_by("result__category__dataset__order", "result__category__key", "result__provenance")
    return _defect_table(qs, label="result__category__key", key="result__category__key")

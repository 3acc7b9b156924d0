"""PL explained: store what PL decided, anomaly by anomaly, beside a PL result.

A benchmark job's output carries, per map variant, the runner's ``localisation`` document
(``algorithms.runner.localisation_document``); ``localisation_record`` keeps it on a
``Localisation`` row of the PL result it explains (update or create: a retried job writes it once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from ..models import Localisation, Result

_BOX_KEYS = ("center_x", "center_y", "width", "height", "angle")


def defect_summary(anomalies: list[Mapping[str, Any]]) -> dict[str, list[int]]:
    """``{defect type: [found, total]}``, the types in alphabetical order."""
    summary: dict[str, list[int]] = {}
    for anomaly in anomalies:
        counts = summary.setdefault(str(anomaly.get("defect_type") or "anomaly"), [0, 0])
        counts[0] += bool(anomaly.get("localised"))
        counts[1] += 1
    return dict(sorted(summary.items()))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError({"localisation": f"{what} is {value!r}, not a finite number"})
    return float(value)


def _anomaly(raw: Any, n_thresholds: int) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValidationError({"localisation": "an anomaly is not an object"})
    ious = raw.get("ious")
    if not isinstance(ious, list) or len(ious) != n_thresholds:
        raise ValidationError({"localisation": f"an anomaly's ious must list one IoU per threshold ({n_thresholds})"})
    anomaly = {
        "image_id": str(raw.get("image_id") or ""),
        "image_index": int(raw.get("image_index", -1)),
        "defect_type": str(raw.get("defect_type") or "anomaly"),
        **{key: _number(raw.get(key), key) for key in _BOX_KEYS},
        "iou": _number(raw.get("iou"), "iou"),
        "best_iou": _number(raw.get("best_iou"), "best_iou"),
        "localised": bool(raw.get("localised")),
        "ious": [_number(v, "an IoU") for v in ious],
    }
    if not all(0.0 <= v <= 1.0 for v in anomaly["ious"]):
        raise ValidationError({"localisation": "IoUs must lie in [0, 1]"})
    return anomaly


@transaction.atomic
def localisation_record(
    *, result: Result, document: Mapping[str, Any], predictions: str = "", seed: int | None = None
) -> Localisation:
    """Keep ``document`` (a ``localisation_report`` dict with ids and defect types) beside the PL ``result``.

    Raises
    ------
    django.core.exceptions.ValidationError
        When the result is not a PL value or the document is malformed.
    """
    if result.metric != "pl":
        raise ValidationError({"result": f"a localisation explains a PL result, not {result.metric!r}"})
    thresholds = [_number(t, "a threshold") for t in document.get("thresholds") or []]
    if not thresholds:
        raise ValidationError({"localisation": "no thresholds"})
    index = document.get("threshold_index")
    if not isinstance(index, int) or not 0 <= index < len(thresholds):
        raise ValidationError({"localisation": f"threshold_index {index!r} is not one of the thresholds"})
    anomalies = [_anomaly(a, len(thresholds)) for a in document.get("anomalies") or []]
    values = {
        "iou_limit": _number(document.get("iou_limit"), "iou_limit"),
        "threshold": thresholds[index],
        "threshold_index": index,
        "thresholds": thresholds,
        "size": int(document.get("size") or 256),
        "seed": seed,
        "anomalies": anomalies,
        "defect_summary": defect_summary(anomalies),
        "n_anomalies": len(anomalies),
        "n_localised": sum(a["localised"] for a in anomalies),
        "predictions": str(predictions or "")[:500],
    }
    localisation, _ = Localisation.objects.update_or_create(result=result, defaults=values)
    return localisation

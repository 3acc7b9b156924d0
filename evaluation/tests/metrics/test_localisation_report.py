"""The PL explanation's plain form and PL recomputed from stored IoUs, pinned exactly.

``LocalisationReport.to_dict`` is what the site stores and shows per anomaly (its image id and
defect type); ``proportion_localised_from_ious`` gives PL at any IoU limit from those stored IoUs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.metrics.localisation import AnomalyLocalisation, LocalisationReport, proportion_localised_from_ious


def _anomaly(image_index: int, iou: float) -> AnomalyLocalisation:
    return AnomalyLocalisation(
        image_index=image_index, center_x=10.5, center_y=4.0, width=3.0, height=2.0, angle=0.0, best_iou=iou,
        iou=iou, localised=iou > 0.3, ious=(0.0, iou),
    )  # fmt: skip


REPORT = LocalisationReport(
    pl=0.5, iou_limit=0.3, threshold=0.25, threshold_index=1, thresholds=(0.5, 0.25),
    anomalies=(_anomaly(2, 0.4), _anomaly(0, 0.1)),
)  # fmt: skip


def test_to_dict_names_each_anomaly_by_its_image_id_and_defect_type():
    data = REPORT.to_dict(ids=["a.png", "b.png", "c.png"], defect_types=np.array(["good", "crack", "hole"]))
    assert [(a["image_index"], a["image_id"], a["defect_type"]) for a in data["anomalies"]] == [
        (2, "c.png", "hole"),
        (0, "a.png", "good"),
    ]
    assert data["thresholds"] == [0.5, 0.25] and data["anomalies"][0]["ious"] == [0.0, 0.4]
    assert json.loads(json.dumps(data)) == data  # plain JSON values only
    assert {type(a["defect_type"]) for a in data["anomalies"]} == {str}  # numpy strings become str


def test_to_dict_adds_names_only_when_given():
    plain = REPORT.to_dict()
    assert all("image_id" not in a and "defect_type" not in a for a in plain["anomalies"])
    only_ids = REPORT.to_dict(ids=[7, 8, 9])
    assert [a["image_id"] for a in only_ids["anomalies"]] == ["9", "7"]
    assert all("defect_type" not in a for a in only_ids["anomalies"])


@pytest.mark.parametrize(
    ("ious", "limit", "pl"),
    [
        ([[0.3, 0.31]], None, 1.0),  # the default limit 0.3 must be exceeded
        ([[0.3]], None, 0.0),
        ([[0.0, 0.1], [0.0, 0.0]], 0.0, 0.5),  # a limit of 0 is allowed: any overlap counts
        ([[1.0], [1.0]], 1.0, 0.0),  # IoU 1 is valid; nothing exceeds a limit of 1
        ([[1.0, 0.2], [0.0, 0.9]], 0.5, 0.5),
        ([[1, 0]], 0.5, 1.0),  # integers are IoUs too
    ],
)
def test_pl_from_ious_exactly(ious, limit, pl):
    kwargs = {} if limit is None else {"iou_limit": limit}
    assert proportion_localised_from_ious(ious, **kwargs) == pl


@pytest.mark.parametrize(
    ("ious", "limit", "message"),
    [
        ([[0.5]], -1, "iou_limit must lie in [0, 1], got -1"),
        ([0.5], 0.3, "ious must be a non-empty (anomalies, thresholds) table, got shape (1,)"),
        (np.zeros((0, 3)), 0.3, "ious must be a non-empty (anomalies, thresholds) table, got shape (0, 3)"),
        ([[float("nan"), 0.5]], 0.3, "ious must be finite values in [0, 1]"),
        ([[-0.1, 0.5]], 0.3, "ious must be finite values in [0, 1]"),
        ([[0.5, 1.5]], 0.3, "ious must be finite values in [0, 1]"),
    ],
)
def test_pl_from_ious_refuses_exactly(ious, limit, message):
    with pytest.raises(ValueError) as raised:
        proportion_localised_from_ious(ious, iou_limit=limit)
    assert str(raised.value) == message

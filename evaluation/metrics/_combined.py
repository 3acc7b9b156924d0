"""All four metrics at once, sharing the validation, the region labelling and the pixel sort."""

from __future__ import annotations

import numpy as np

from ._validate import check_fraction, check_labels, check_maps, check_masks, check_same_shape, check_scores
from .aupro import _aupro_from_sorted, _check_aupro_inputs, _image_region_pixels
from .classification import _auroc_from_sorted, image_auroc
from .localisation import _pl_score, _pl_table

__all__ = ["evaluate"]


def evaluate(masks: object, maps: object, labels: object, scores: object, *,
             fpr_limit: float = 0.3, iou_limit: float = 0.3) -> dict[str, float]:
    """Image AUROC, pixel AUROC, AUPRO and PL in one pass.

    One sort of the normal pixels' values and one of the anomalous pixels' values serve both
    pixel AUROC and AUPRO; each anomalous image is labelled once for AUPRO and PL.

    Parameters
    ----------
    masks : array_like of shape (N, H, W)
        Binary ground truth.
    maps : array_like of shape (N, H, W)
        Anomaly maps; higher means more anomalous.
    labels : array_like of shape (N,)
        Image labels, 1 for anomalous.
    scores : array_like of shape (N,)
        Image anomaly scores.
    fpr_limit : float, default 0.3
        AUPRO's false-positive-rate limit, in (0, 1].
    iou_limit : float, default 0.3
        PL's IoU limit, in [0, 1].

    Returns
    -------
    dict of str to float
        ``{"image_auroc", "pixel_auroc", "aupro", "pl"}``, each equal to what the single
        metric functions return.

    Raises
    ------
    ValueError
        Whenever one of the four would raise; nothing is computed before all inputs pass.
    """
    fpr = check_fraction(fpr_limit, "fpr_limit", allow_zero=False)
    iou = check_fraction(iou_limit, "iou_limit", allow_zero=True)
    masks_b = check_masks(masks)
    maps_f = check_maps(maps)
    check_same_shape(masks_b, maps_f, ("masks", "maps"))
    labels_b = check_labels(labels)
    scores_f = check_scores(scores)
    check_same_shape(labels_b, scores_f, ("labels", "scores"))
    if labels_b.shape[0] != masks_b.shape[0]:
        raise ValueError(f"labels/scores describe {labels_b.shape[0]} images but masks/maps hold {masks_b.shape[0]}")
    _check_aupro_inputs(masks_b)
    i_auc = image_auroc(labels_b, scores_f)

    anomalous = np.flatnonzero(masks_b.reshape(masks_b.shape[0], -1).any(axis=1))
    pos_values: list[np.ndarray] = []
    pos_weights: list[np.ndarray] = []
    n_regions = 0

    def region_pixels(index: int, region_labels: np.ndarray, count: int) -> None:
        nonlocal n_regions
        values, weights, _ = _image_region_pixels(masks_b[index], maps_f[index], region_labels, count)
        pos_values.append(values)
        pos_weights.append(weights)
        n_regions += count

    pl = _pl_score(_pl_table(masks_b, maps_f, anomalous, visit=region_pixels).ious, iou)[0]

    values = np.concatenate(pos_values)
    weights = np.concatenate(pos_weights)
    pos_values.clear()
    pos_weights.clear()
    order = np.argsort(values, kind="stable")
    values = values[order]
    weights = weights[order]
    del order
    negatives = maps_f[~masks_b]
    negatives.sort()
    p_auc = _auroc_from_sorted(negatives, values)
    pro = _aupro_from_sorted(negatives, values, weights, n_regions, fpr)
    return {"image_auroc": i_auc, "pixel_auroc": p_auc, "aupro": pro, "pl": pl}

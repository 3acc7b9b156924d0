"""Image- and pixel-level ROC AUC (ties counted as half, exactly as scikit-learn counts them).

The AUC is the Mann-Whitney statistic: the probability that a random positive scores
higher than a random negative, a tie counting one half. With the negatives sorted once,
each positive's count of lower and of equal negatives comes from two binary searches, and
the sum is an exact integer; the single final division is the only rounding.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_labels, check_maps, check_masks, check_same_shape, check_scores

__all__ = ["image_auroc", "pixel_auroc"]


def _auroc_from_sorted(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC from ascending-sorted negative scores and (preferably sorted) positive scores.

    Parameters
    ----------
    negatives : numpy.ndarray
        1-D scores of the negative samples, sorted ascending.
    positives : numpy.ndarray
        1-D scores of the positive samples; sorting them ascending makes the search faster.

    Returns
    -------
    float
        ``(#(pos > neg) + 0.5 * #(pos == neg)) / (n_pos * n_neg)``.
    """
    below = np.searchsorted(negatives, positives, side="left")
    below_or_equal = np.searchsorted(negatives, positives, side="right")
    twice_wins = int(below.sum(dtype=np.int64)) + int(below_or_equal.sum(dtype=np.int64))
    return twice_wins / (2 * positives.size * negatives.size)


def image_auroc(labels: object, scores: object) -> float:
    """Image-level ROC AUC.

    Parameters
    ----------
    labels : array_like of shape (N,)
        1 (or True) for anomalous images, 0 for normal ones.
    scores : array_like of shape (N,)
        Image anomaly scores; higher means more anomalous. Never flipped.

    Returns
    -------
    float
        The area under the ROC curve, in [0, 1]; ties count one half, as in
        ``sklearn.metrics.roc_auc_score``.

    Raises
    ------
    ValueError
        On shape mismatch, non-binary labels, non-finite scores, empty input, or when
        only one class is present (the AUC is then undefined).

    Examples
    --------
    >>> image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    labels_b = check_labels(labels)
    scores_f = check_scores(scores)
    check_same_shape(labels_b, scores_f, ("labels", "scores"))
    positives = np.sort(scores_f[labels_b])
    negatives = np.sort(scores_f[~labels_b])
    if positives.size == 0 or negatives.size == 0:
        missing = "anomalous (label 1)" if positives.size == 0 else "normal (label 0)"
        raise ValueError(f"image AUROC is undefined: there is no {missing} image")
    return _auroc_from_sorted(negatives, positives)


def pixel_auroc(masks: object, maps: object) -> float:
    """Pixel-level ROC AUC over every pixel of every image (normal images included).

    Parameters
    ----------
    masks : array_like of shape (N, H, W)
        Binary ground truth (bool or 0/1 integers).
    maps : array_like of shape (N, H, W)
        Anomaly maps (float16/32/64); higher means more anomalous. Compared in their own dtype.

    Returns
    -------
    float
        The area under the pixel ROC curve; ties count one half.

    Raises
    ------
    ValueError
        On shape mismatch, wrong ndim, non-binary masks, non-finite maps, empty input, or when
        the masks have no positive or no negative pixel.
    """
    masks_b = check_masks(masks)
    maps_f = check_maps(maps)
    check_same_shape(masks_b, maps_f, ("masks", "maps"))
    positives = maps_f[masks_b]
    if positives.size == 0:
        raise ValueError("pixel AUROC is undefined: the masks have no anomalous (positive) pixel")
    if positives.size == masks_b.size:
        raise ValueError("pixel AUROC is undefined: the masks have no normal (negative) pixel")
    positives.sort()
    negatives = maps_f[~masks_b]
    negatives.sort()
    return _auroc_from_sorted(negatives, positives)

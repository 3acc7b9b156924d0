"""Publication defaults of each algorithm's run entry, importable and overridable.

A model entry of a config is a dict:

``algorithm``
    registered name (``python -m algorithms list``);
``params``
    hyperparameter overrides (``{}`` = the publication's defaults, built into each class);
``epochs``, ``train_time_limit_s``
    the training schedule and wall-clock budget (the paper: two hours per algorithm and category);
``evaluate_every``
    also evaluate every n epochs (``None``: only at the end);
``batch_size``
    training and test batch size;
optional ``name`` (to run one algorithm twice), ``save_predictions``, ``save_checkpoint``.

Override in Python, never by mutating these dicts::

    from algorithms.configs.defaults import PATCHCORE
    models = [dict(PATCHCORE, params={"coreset_ratio": 0.01}, name="patchcore_1pct")]
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULTS",
    "EFFICIENT_AD",
    "FASTFLOW",
    "PAPER_TIME_LIMIT_S",
    "PATCHCORE",
    "RANDOM",
    "REVERSE_DISTILLATION",
    "model_defaults",
]

#: The VisionAD paper's training budget per algorithm and category (seconds).
PAPER_TIME_LIMIT_S = 7200


def _entry(algorithm: str, *, epochs: int, batch_size: int, **extra: Any) -> MappingProxyType:
    entry = {
        "algorithm": algorithm,
        "params": {},
        "epochs": epochs,
        "train_time_limit_s": PAPER_TIME_LIMIT_S,
        "evaluate_every": None,
        "batch_size": batch_size,
    }
    entry.update(extra)
    return MappingProxyType(entry)  # read-only: copy with dict(ENTRY, ...) to change it


#: PatchCore: one-shot (memory bank), coreset ratio 0.1 as in the PatchCore paper (VisionAD ran 0.01).
PATCHCORE = _entry("patchcore", epochs=1, batch_size=8)
#: Reverse Distillation: 200 epochs, batch 16 (the VisionAD schedule).
REVERSE_DISTILLATION = _entry("reverse_distillation", epochs=200, batch_size=16)
#: FastFlow: 500 epochs, batch 32 (the VisionAD schedule).
FASTFLOW = _entry("fastflow", epochs=500, batch_size=32)
#: EfficientAD: 100 epochs, batch 1 (the VisionAD schedule).
EFFICIENT_AD = _entry("efficient_ad", epochs=100, batch_size=1)
#: The random baseline: nothing to train.
RANDOM = _entry("random", epochs=1, batch_size=8)

DEFAULTS: dict[str, MappingProxyType] = {
    e["algorithm"]: e for e in (PATCHCORE, REVERSE_DISTILLATION, FASTFLOW, EFFICIENT_AD, RANDOM)
}


def model_defaults(algorithm: str) -> dict[str, Any]:
    """A fresh, mutable copy of the default run entry of ``algorithm``.

    Algorithms without an entry here get one built from their registry metadata
    (``default_epochs``, batch size 8, the paper's two-hour budget).
    """
    if algorithm in DEFAULTS:
        entry = dict(DEFAULTS[algorithm])
    else:
        from algorithms.registry import get_algorithm_info

        entry = dict(_entry(algorithm, epochs=get_algorithm_info(algorithm).default_epochs, batch_size=8))
    entry["params"] = dict(entry["params"])
    return entry

"""The metadata record of an algorithm: ``AlgorithmInfo``, its ``Family`` and publication ``Schedule``.

Pure Python (no torch, nothing else of ours), so that the registry, the run specification, the
leaderboard and the web process can read everything an algorithm declares without building a
model. Each algorithm package declares one record in its ``__init__.py``::

    INFO = AlgorithmInfo(
        key="patchcore",
        display_name="PatchCore",
        family=Family.MEMORY_BANK,
        schedule=Schedule(epochs=1, batch_size=8, optimizer="none", input_size=256),
        ...
    )

and its ``detector.py`` registers the ``AnomalyDetector`` subclass with ``@register_algorithm(INFO)``.
Nothing here is written anywhere else: the run defaults (``algorithms.runspec``), the CPU demo
config, the conformance tests and the method pages of the leaderboard all read this record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = ["FAMILY_CHOICES", "VISIONAD_PAPER_ALGORITHMS", "AlgorithmInfo", "Family", "Schedule"]

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


#: The 16 algorithms the VisionAD paper benchmarks (section 3, "The algorithms currently
#: implemented are: ..."; MSPBA is named there although its folder is missing from the paper's
#: code), by our registry keys. The site says how many of them the library holds.
VISIONAD_PAPER_ALGORITHMS = frozenset({
    "fastflow", "patchcore", "simplenet", "ppdm", "msflow", "pfm", "pefm", "cflow", "mspba", "memseg",
    "fastflow_altub", "cdo", "cfa", "reverse_distillation", "efficient_ad", "ast",
})  # fmt: skip


class Family(StrEnum):
    """The families of the field (VisionAD paper, section 2; Liu et al.'s survey taxonomy).

    The value is the stable identifier stored in databases and JSON; ``display_name`` is shown.
    """

    MEMORY_BANK = "memory_bank"
    NORMALIZING_FLOW = "normalizing_flow"
    KNOWLEDGE_DISTILLATION = "knowledge_distillation"
    RECONSTRUCTION = "reconstruction"
    SYNTHETIC_ANOMALIES = "synthetic_anomalies"
    OTHER = "other"

    @property
    def display_name(self) -> str:
        """Human-readable name, e.g. ``"Memory bank"``."""
        return _FAMILY_NAMES[self]


_FAMILY_NAMES = {
    Family.MEMORY_BANK: "Memory bank",
    Family.NORMALIZING_FLOW: "Normalizing flow",
    Family.KNOWLEDGE_DISTILLATION: "Knowledge distillation",
    Family.RECONSTRUCTION: "Reconstruction",
    Family.SYNTHETIC_ANOMALIES: "Synthetic anomalies",
    Family.OTHER: "Other",
}

#: ``(value, display name)`` pairs in declaration order, for Django ``choices``.
FAMILY_CHOICES: list[tuple[str, str]] = [(family.value, family.display_name) for family in Family]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _family(value: Any, what: str) -> Family:
    try:
        return Family(value)
    except ValueError:
        known = ", ".join(f.value for f in Family)
        raise ValueError(f"{what} must be one of {known} (algorithms.info.Family), got {value!r}") from None


def _frozen_json_dict(value: Any, what: str) -> Mapping[str, Any]:
    """A read-only copy of a JSON-serialisable dict with string keys; ``ValueError`` otherwise."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        copy = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold JSON values only (numbers, strings, lists, dicts): {exc}") from None
    return MappingProxyType(copy)


@dataclass(frozen=True)
class Schedule:
    """The publication's training schedule: what the paper trained with, and our run defaults.

    Exactly one of ``epochs`` and ``iterations`` (optimiser steps) is given.

    Parameters
    ----------
    epochs, iterations : int, optional
        Length of the schedule (one-shot methods: ``epochs=1``).
    batch_size : int
        Training batch size.
    optimizer : str
        One-line summary of the optimiser, e.g. ``"Adam, lr 1e-3, weight decay 1e-5"``.
    input_size : int
        Side of the square input images in pixels; the default of the ``input_size`` hyperparameter.
    """

    batch_size: int
    epochs: int | None = None
    iterations: int | None = None
    optimizer: str = ""
    input_size: int = 256

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError(f"a schedule has exactly one of epochs and iterations, got {self.epochs!r} and "
                             f"{self.iterations!r}")  # fmt: skip
        length = self.epochs if self.epochs is not None else self.iterations
        if not _is_int(length) or length < 1:
            raise ValueError(f"schedule {self.unit} must be a positive integer, got {length!r}")
        for name in ("batch_size", "input_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"schedule {name} must be a positive integer, got {value!r}")
        if not isinstance(self.optimizer, str):
            raise ValueError(f"schedule optimizer must be a string, got {type(self.optimizer).__name__}")

    @property
    def unit(self) -> str:
        """``"epochs"`` or ``"iterations"``."""
        return "epochs" if self.epochs is not None else "iterations"

    @property
    def length(self) -> int:
        """The number of epochs or iterations."""
        return int(self.epochs if self.epochs is not None else self.iterations)  # type: ignore[arg-type]

    def summary(self) -> str:
        """One line for people, e.g. ``"500 epochs, batch 32, 256 px; Adam, lr 1e-3"``."""
        unit = self.unit[:-1] if self.length == 1 else self.unit
        text = f"{self.length:,} {unit}, batch {self.batch_size}, {self.input_size} px"
        return f"{text}; {self.optimizer}" if self.optimizer else text

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class AlgorithmInfo:
    """Everything an algorithm declares, in one record (see the module docstring).

    Parameters
    ----------
    key : str
        snake_case registry key, used by configs, the CLI and the leaderboard (``"patchcore"``).
        Name the package folder after it: ``algorithms/<key>/``.
    display_name : str
        Name shown to people (``"PatchCore"``).
    family, secondary_family : Family
        Primary family and an optional second one (e.g. a distillation method built on a flow).
    schedule : Schedule
        The publication's schedule; a run that does not say otherwise uses it.
    paper_title, paper_url : str
        The publication.
    code_url, code_licence : str
        The official code (or the implementation the field uses when the authors released none;
        say so in ``deviations``) and its licence as an SPDX identifier, or ``"none"`` when the
        repository has no licence file.
    description : str
        One or two plain sentences: how the method finds anomalies.
    deviations : str
        Known deviations of our implementation from the publication (free text, shown on the
        method page); empty when there are none.
    map_variants : tuple of str
        Names of the anomaly maps ``predict`` returns, in order; the first is the primary one
        (the one ranked). The conformance test checks them against the real outputs.
    one_shot : bool
        Training is a single pass (memory banks): the runner trains one epoch.
    is_baseline : bool
        A floor for comparison, not a method (listed apart on the site).
    tiny : dict
        Hyperparameters of a seconds-fast CPU configuration for tests: a small backbone,
        ``pretrained=False`` (tests never download), ``input_size`` 64 or less.
    tiny_epochs : int
        Epochs the conformance test trains ``tiny`` for.
    demo : dict
        The CPU demo's run settings (``algorithms/configs/synthetic_cpu.py``): a config entry
        without ``algorithm`` (``params``, ``epochs``, ``train_time_limit_s``, ``batch_size``...),
        validated like any run. Empty: the demo runs ``tiny`` for ``tiny_epochs`` epochs.
    """

    key: str
    display_name: str
    family: Family
    schedule: Schedule
    secondary_family: Family | None = None
    paper_title: str = ""
    paper_url: str = ""
    code_url: str = ""
    code_licence: str = ""
    description: str = ""
    deviations: str = ""
    map_variants: tuple[str, ...] = ("anomaly_map",)
    one_shot: bool = False
    is_baseline: bool = False
    tiny: Mapping[str, Any] = field(default_factory=dict)
    tiny_epochs: int = 1
    demo: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            raise ValueError(f"algorithm keys are snake_case identifiers, got {self.key!r}")
        where = f"AlgorithmInfo {self.key!r}"
        if not isinstance(self.display_name, str) or not self.display_name.strip():
            raise ValueError(f"{where}: display_name must be a non-empty string")
        object.__setattr__(self, "family", _family(self.family, f"{where}: family"))
        if self.secondary_family is not None:
            secondary = _family(self.secondary_family, f"{where}: secondary_family")
            if secondary == self.family:
                raise ValueError(f"{where}: secondary_family repeats the family {secondary.value!r}")
            object.__setattr__(self, "secondary_family", secondary)
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"{where}: schedule must be an algorithms.info.Schedule, got {self.schedule!r}")
        for name in ("paper_title", "paper_url", "code_url", "code_licence", "description", "deviations"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{where}: {name} must be a string")
        variants = tuple(self.map_variants) if isinstance(self.map_variants, list | tuple) else ()
        if not variants or not all(isinstance(v, str) and v for v in variants) or len(set(variants)) != len(variants):
            raise ValueError(f"{where}: map_variants must be distinct non-empty names, primary first; "
                             f"got {self.map_variants!r}")  # fmt: skip
        object.__setattr__(self, "map_variants", variants)
        if self.one_shot and self.schedule.epochs != 1:
            raise ValueError(f"{where}: a one-shot method's schedule is epochs=1, got {self.schedule.summary()}")
        if not _is_int(self.tiny_epochs) or self.tiny_epochs < 1 or (self.one_shot and self.tiny_epochs != 1):
            raise ValueError(f"{where}: tiny_epochs must be a positive integer (1 for one-shot methods), "
                             f"got {self.tiny_epochs!r}")  # fmt: skip
        object.__setattr__(self, "tiny", _frozen_json_dict(self.tiny, f"{where}: tiny"))
        object.__setattr__(self, "demo", _frozen_json_dict(self.demo, f"{where}: demo"))
        if "algorithm" in self.demo:
            raise ValueError(f"{where}: demo is a run entry without 'algorithm' (it is {self.key!r})")

    def __hash__(self) -> int:
        return hash((self.key, self.display_name))

    @property
    def primary_variant(self) -> str:
        """The map variant that is ranked."""
        return self.map_variants[0]

    @property
    def input_size(self) -> int:
        """The publication's input size (= the default of the ``input_size`` hyperparameter)."""
        return self.schedule.input_size

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (enums as their values), for ``python -m algorithms list --json``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Family):
                value = value.value
            elif isinstance(value, Schedule):
                value = value.to_json()
            elif isinstance(value, Mapping):
                value = json.loads(json.dumps(dict(value)))
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["family_display"] = self.family.display_name
        out["schedule_summary"] = self.schedule.summary()
        return out


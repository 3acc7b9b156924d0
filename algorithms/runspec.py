"""The run specification: one frozen, JSON-serialisable ``RunSpec`` describes a run. Torch-free.

A run is one algorithm with its hyperparameters, trained on some categories under a schedule,
for one or more seeds. Every way of asking for a run builds a ``RunSpec`` with
:meth:`RunSpec.from_entry` (config files, the CLI, the leaderboard's re-benchmarks from the admin,
the staff API and ``manage.py rebenchmark``), and everything downstream takes it whole: the
runner (``run_category(spec, category)``), the benchmark workers (``BenchmarkRun.config``), the
results JSON (``"spec"``). The keys of a run are the fields of ``RunSpec`` and nothing else;
their defaults are the dataclass defaults below plus the algorithm's publication schedule
(``AlgorithmInfo.schedule``: epochs or iterations, batch size).

Nothing here imports torch or an algorithm's model code, so the web process validates runs as
the CLI does. Only :meth:`RunSpec.check_params` (hyperparameter names against the algorithm's
constructor) imports the algorithm; the runner calls it before training.

A config file is plain Python that defines ``models`` (a list of entries: dicts of run keys with
at least ``algorithm``) and, shared by every entry, any of ``categories`` (suite names or
category keys), ``seeds``, ``train_time_limit_s``, ``evaluate_every``, ``device``,
``save_predictions``, ``save_checkpoint``; plus, for the CLI only, dataset ``roots``, and
``algorithm_packages``: import paths of algorithm packages outside ``algorithms/`` to register
first (the same layout; see ``docs/adding-an-algorithm.md``)::

    models = [
        {"algorithm": "patchcore", "params": {"coreset_ratio": 0.01}, "name": "patchcore_1pct"},
        {"algorithm": "fastflow", "epochs": 50},        # batch size: FastFlow's publication (32)
    ]
    categories = ["synthetic"]
    seeds = [0]

A mistake raises ``ConfigError`` naming the file, the entry and the key, before anything runs.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from .registry import (
    AlgorithmPackageError,
    UnknownAlgorithmError,
    add_algorithm_package,
    get_algorithm_class,
    get_algorithm_info,
)

__all__ = [
    "PAPER_TIME_LIMIT_S",
    "RUN_KEYS",
    "SHARED_KEYS",
    "ConfigError",
    "RunConfig",
    "RunSpec",
    "expand_categories",
    "load_run_config",
]

#: The VisionAD paper's wall-clock training cap per algorithm and category (seconds).
PAPER_TIME_LIMIT_S = 7200.0

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_CATEGORY_KEY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A run specification or config file is invalid; the message names the file, entry and key.

    Raised before anything is run or written.
    """


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(key: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{key!r} must be a positive integer, got {value!r}")
    return int(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key!r} must be True or False, got {value!r}")
    return value


def _unknown_keys_message(unknown: Iterable[str], known: Sequence[str], *, what: str = "key") -> str:
    parts = []
    for key in sorted(unknown):
        close = difflib.get_close_matches(key, known, n=1)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown {what}{'s' if len(parts) > 1 else ''} {', '.join(parts)}; known: {', '.join(known)}"


@dataclass(frozen=True)
class RunSpec:
    """One run: an algorithm, its hyperparameters, categories, schedule, seeds, device, outputs.

    Build it with :meth:`from_entry` (fills the defaults) or :meth:`from_json` (a complete
    record); both validate, and so does every constructor call: an instance is always valid.

    Attributes
    ----------
    algorithm : str
        Registered algorithm key (``python -m algorithms list``).
    categories : tuple of str
        Category keys (``"synthetic/woven"``), sorted, without repeats. Config files may name
        suites; :meth:`from_entry` expands them.
    batch_size : int
        Training and test batch size (default: the publication's).
    epochs, iterations : int
        The schedule: exactly one of them (default: the publication's). Iterations count
        optimiser steps (training batches) over all epochs. One-shot methods: ``epochs=1``.
    params : mapping
        Hyperparameter overrides of the publication defaults (JSON values only; read-only).
    train_time_limit_s : float
        Wall-clock safety cap of the training (``fit_epoch`` plus ``pre_eval``) in seconds; a run
        that reaches it stops early and records ``timings.budget_exhausted``.
    evaluate_every : int, optional
        Also evaluate after every n epochs (or iterations, checked at the end of each epoch);
        ``None``: only at the end.
    seeds : tuple of int
        Seeds; each one is a separate, repeatable run.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    save_predictions, save_checkpoint : bool
        Write ``predictions.npz`` (for bundles) and ``checkpoint/`` next to ``results.json``.
    name : str
        Label of the run's output folder (default: the algorithm key); lets one config run an
        algorithm twice.
    """

    algorithm: str
    categories: tuple[str, ...]
    batch_size: int
    epochs: int | None = None
    iterations: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    train_time_limit_s: float = PAPER_TIME_LIMIT_S
    evaluate_every: int | None = None
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    save_predictions: bool = False
    save_checkpoint: bool = False
    name: str = ""

    # -- the validator --------------------------------------------------------------------
    def __post_init__(self) -> None:
        def set_(key: str, value: Any) -> None:
            object.__setattr__(self, key, value)

        if not isinstance(self.algorithm, str) or not self.algorithm:
            raise ConfigError(f"'algorithm' must be a registered algorithm key, got {self.algorithm!r}")
        try:
            info = get_algorithm_info(self.algorithm)
        except UnknownAlgorithmError as exc:
            raise ConfigError(f"'algorithm': {exc}") from None

        categories = [self.categories] if isinstance(self.categories, str) else self.categories
        if not isinstance(categories, list | tuple) or not categories:
            raise ConfigError(f"'categories' must be a non-empty list of category keys, got {self.categories!r}")
        for key in categories:
            if not isinstance(key, str) or not _CATEGORY_KEY.match(key):
                raise ConfigError(f"'categories' holds {key!r}, which is not a category key like 'mvtec/bottle'")
        set_("categories", tuple(sorted(set(categories))))

        if self.epochs is not None and self.iterations is not None:
            raise ConfigError(f"give 'epochs' or 'iterations', not both (got {self.epochs!r} and {self.iterations!r})")
        if self.epochs is None and self.iterations is None:
            raise ConfigError("the schedule needs 'epochs' or 'iterations'")
        if self.epochs is not None:
            _positive_int("epochs", self.epochs)
        else:
            _positive_int("iterations", self.iterations)
        if info.one_shot and self.epochs != 1:
            raise ConfigError(f"{self.algorithm} is one-shot: its schedule is 'epochs': 1, got "
                              f"{'epochs' if self.epochs is not None else 'iterations'} "
                              f"{self.epochs if self.epochs is not None else self.iterations!r}")  # fmt: skip
        _positive_int("batch_size", self.batch_size)

        if not isinstance(self.params, Mapping):
            raise ConfigError(f"'params' must be a dict of hyperparameters, got {type(self.params).__name__}")
        for key in self.params:
            if not isinstance(key, str) or not _IDENTIFIER.match(key):
                raise ConfigError(f"'params' keys must be hyperparameter names, got {key!r}")
        try:
            params = json.loads(json.dumps(dict(self.params), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"'params' must hold JSON values only (numbers, strings, lists, dicts): {exc}") from None
        set_("params", MappingProxyType(params))

        limit = self.train_time_limit_s
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(limit) or limit <= 0:
            raise ConfigError(f"'train_time_limit_s' must be a positive number of seconds, got {limit!r}")
        set_("train_time_limit_s", float(limit))
        if self.evaluate_every is not None:
            _positive_int("evaluate_every", self.evaluate_every)

        seeds = [self.seeds] if _is_int(self.seeds) else self.seeds
        if not isinstance(seeds, list | tuple) or not seeds:
            raise ConfigError(f"'seeds' must be a non-empty list of non-negative integers, got {self.seeds!r}")
        for seed in seeds:
            if not _is_int(seed) or seed < 0:
                raise ConfigError(f"'seeds' must hold non-negative integers, got {seed!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"'seeds' repeats a seed: {list(seeds)}")
        set_("seeds", tuple(seeds))

        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ConfigError(f"'device' must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        _bool("save_predictions", self.save_predictions)
        _bool("save_checkpoint", self.save_checkpoint)
        name = self.name or self.algorithm
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"'name' must be letters, digits, '_', '.' or '-', got {self.name!r}")
        set_("name", name)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_entry(
        cls,
        entry: Mapping[str, Any],
        *,
        shared: Mapping[str, Any] | None = None,
        expand: Any = None,
    ) -> RunSpec:
        """Validate a config entry and fill in the defaults: the one way to build a run.

        Parameters
        ----------
        entry : mapping
            Run keys (:data:`RUN_KEYS`); ``algorithm`` is required.
        shared : mapping, optional
            Keys shared by every entry of a config (:data:`SHARED_KEYS`); the entry wins.
        expand : callable, optional
            Turns ``categories`` (suite names and category keys) into category keys; default
            :func:`expand_categories` (the suites of ``algorithms.data``).

        Returns
        -------
        RunSpec
            With the algorithm's publication schedule and batch size where the entry gives none.

        Raises
        ------
        ConfigError
            An unknown key, a bad value, an unknown algorithm or suite (the message names the key).
        """
        if not isinstance(entry, Mapping):
            raise ConfigError(f"an entry must be a dict of run keys, got {type(entry).__name__}")
        unknown = set(entry) - set(RUN_KEYS)
        if unknown:
            raise ConfigError(_unknown_keys_message(unknown, RUN_KEYS))
        values = {**dict(shared or {}), **dict(entry)}
        algorithm = values.get("algorithm")
        if not isinstance(algorithm, str) or not algorithm:
            raise ConfigError("an entry needs an 'algorithm' (a registered key: python -m algorithms list)")
        try:
            schedule = get_algorithm_info(algorithm).schedule
        except UnknownAlgorithmError as exc:
            raise ConfigError(f"'algorithm': {exc}") from None
        if "epochs" not in values and "iterations" not in values:
            values[schedule.unit] = schedule.length
        values.setdefault("batch_size", schedule.batch_size)
        if "categories" not in values:
            raise ConfigError("'categories' is missing: name suites or category keys")
        categories = values["categories"]
        if isinstance(categories, str):
            categories = [categories]
        values["categories"] = (expand or expand_categories)(categories)
        return cls(**values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        """Rebuild a spec from :meth:`to_json` (as stored by the leaderboard); validates it again."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a run specification must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - set(RUN_KEYS)
        if unknown:
            raise ConfigError(_unknown_keys_message(unknown, RUN_KEYS))
        missing = [f.name for f in fields(cls) if f.name not in data]
        required = {"algorithm", "categories", "batch_size"}
        if required & set(missing):
            raise ConfigError(f"a stored run specification lacks {sorted(required & set(missing))}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with ``changes`` (validated again); e.g. the categories a re-benchmark asked for."""
        unknown = set(changes) - set(RUN_KEYS)
        if unknown:
            raise ConfigError(_unknown_keys_message(unknown, RUN_KEYS))
        return replace(self, **changes)

    # -- reading --------------------------------------------------------------------------
    @property
    def schedule_unit(self) -> str:
        """``"epochs"`` or ``"iterations"``."""
        return "epochs" if self.epochs is not None else "iterations"

    @property
    def schedule_length(self) -> int:
        return int(self.epochs if self.epochs is not None else self.iterations)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, every key present (``from_json`` inverts it)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = json.loads(json.dumps(dict(value)))
            out[f.name] = value
        return out

    def fingerprint(self) -> str:
        """16 hex digits identifying what a run computes per category.

        Covers the algorithm, hyperparameters, schedule, time cap, evaluation schedule, batch
        size and seeds; not the categories (compared separately), the device, the outputs saved
        or the name.
        """
        ignored = {"categories", "device", "save_predictions", "save_checkpoint", "name"}
        core = {k: v for k, v in self.to_json().items() if k not in ignored}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]

    def check_params(self) -> None:
        """Check the hyperparameter names against the algorithm's constructor.

        Imports the algorithm's detector (and so torch): the runner calls it before training,
        the CLI before running anything. Raises ``ConfigError`` naming the unknown names.
        """
        signature = inspect.signature(get_algorithm_class(self.algorithm).__init__)
        parameters = signature.parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return
        known = sorted(p.name for p in parameters if p.name != "self")
        unknown = set(self.params) - set(known)
        if unknown:
            message = _unknown_keys_message(unknown, known, what="hyperparameter")
            raise ConfigError(f"'params': {self.algorithm}: {message}")


#: The keys of a run: the fields of ``RunSpec`` (the only list of them).
RUN_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RunSpec))
#: Keys a config file may set once for all its entries (the rest belong to each entry).
SHARED_KEYS: tuple[str, ...] = tuple(
    k for k in RUN_KEYS if k not in ("algorithm", "name", "params", "epochs", "iterations", "batch_size")
)


def expand_categories(entries: Iterable[str]) -> tuple[str, ...]:
    """Suite names (``"synthetic"``, ``"vadi"``) and category keys to a de-duplicated key list.

    Raises ``ConfigError`` for an unknown suite (naming the known ones).
    """
    from .data import SUITES, list_categories

    if isinstance(entries, str) or not isinstance(entries, Iterable):
        raise ConfigError(f"'categories' must be a list of suite names or category keys, got {entries!r}")
    keys: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"'categories' must hold suite names or category keys, got {entry!r}")
        if "/" in entry:
            found = [entry]
        elif entry in SUITES:
            found = list_categories(entry)
        else:
            suites = ", ".join(sorted(SUITES))
            raise ConfigError(f"'categories': unknown suite {entry!r} (suites: {suites}); "
                              "category keys look like 'mvtec/bottle'")  # fmt: skip
        keys.extend(k for k in found if k not in keys)
    if not keys:
        raise ConfigError("'categories' is empty: name suites or category keys")
    return tuple(keys)


# -- config files -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """A loaded config: its runs, in file order, and where each came from."""

    name: str
    source: str
    specs: tuple[RunSpec, ...]
    locations: tuple[str, ...]
    roots: Mapping[str, str] | None = None

    def spec_for(self, algorithm: str) -> RunSpec:
        """The one run of ``algorithm``; ``ConfigError`` when the config has none or several."""
        found = [spec for spec in self.specs if spec.algorithm == algorithm]
        if len(found) == 1:
            return found[0]
        if not found:
            configured = ", ".join(sorted({s.algorithm for s in self.specs})) or "none"
            raise ConfigError(f"{self.source}: no entry for algorithm {algorithm!r} (it configures: {configured})")
        names = ", ".join(s.name for s in found)
        raise ConfigError(f"{self.source}: {len(found)} entries for algorithm {algorithm!r} ({names}); "
                          "a re-benchmark needs exactly one")  # fmt: skip

    def check_params(self) -> None:
        """:meth:`RunSpec.check_params` for every run, naming the entry (imports the algorithms)."""
        for spec, where in zip(self.specs, self.locations, strict=True):
            try:
                spec.check_params()
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None


def display_path(path: str | Path) -> str:
    """``path`` relative to the project root when inside it (the same text on every machine)."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(_PROJECT_ROOT).as_posix()
    except ValueError:
        return str(resolved)


def _import_config(config: str | Path) -> ModuleType:
    text = str(config)
    path = Path(text)
    if text.endswith(".py") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {display_path(path)}")
        spec = importlib.util.spec_from_file_location(f"_vadi_config_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import config file {display_path(path)}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"{display_path(path)}: failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(text)
    except ImportError as exc:
        raise ConfigError(f"config {text!r} is neither a .py file nor an importable module ({exc})") from exc


_CONFIG_ONLY_KEYS = ("models", "roots", "algorithm_packages")


def _read_json_config(path: Path) -> dict[str, Any]:
    """A ``.json`` config: a dict of config names (with ``models``), or one run specification
    (``RunSpec.to_json()``, as a run's evidence page offers it), or a list of them."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {display_path(path)}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{display_path(path)}: not readable JSON: {exc}") from None
    if isinstance(data, Mapping) and "algorithm" in data:
        data = [data]
    if isinstance(data, list):
        return {"models": data, "name": path.stem}
    if isinstance(data, Mapping) and "models" in data:
        return {"name": path.stem, **data}
    raise ConfigError(f"{display_path(path)}: a JSON config is a run specification, a list of them, "
                      "or an object with 'models'")  # fmt: skip


def load_run_config(config: str | Path | ModuleType | Mapping[str, Any], *, expand: Any = None) -> RunConfig:
    """Read a config (a ``.py`` or ``.json`` path, a dotted module name, a module or a dict) into ``RunSpec``s.

    A ``.json`` file holds one run specification as recorded (``RunSpec.to_json()``; a
    benchmark run's page offers it), a list of them, or the names of a config file as JSON.

    Top-level names of a config file: ``models`` (required), the :data:`SHARED_KEYS`,
    ``roots`` and ``algorithm_packages``; other lower-case names are refused as likely typos
    (name helpers ``_like_this`` or in capitals). Imports, functions and classes are ignored.

    Raises
    ------
    ConfigError
        Naming the file, the entry (``models[i] (algorithm)``) and the key, before anything runs.
    """
    if isinstance(config, str | Path) and str(config).endswith(".json"):
        config = _read_json_config(Path(config))
    if isinstance(config, Mapping):
        namespace, name = dict(config), str(config.get("name", "config"))
        source = name
    else:
        module = config if isinstance(config, ModuleType) else _import_config(config)
        file = getattr(module, "__file__", None)
        source = display_path(file) if file else module.__name__
        name = Path(file).stem if file else module.__name__.rpartition(".")[2]
        namespace = {
            k: v
            for k, v in vars(module).items()
            if not k.startswith("_") and not isinstance(v, ModuleType) and not callable(v)
        }
        allowed = (*_CONFIG_ONLY_KEYS, *SHARED_KEYS)
        unknown = [k for k in namespace if k == k.lower() and k not in allowed]
        if unknown:
            raise ConfigError(f"{source}: {_unknown_keys_message(unknown, allowed, what='top-level name')} "
                              "(name helpers _like_this or in CAPITALS)")  # fmt: skip
    packages = namespace.get("algorithm_packages") or []
    if isinstance(packages, str) or not isinstance(packages, list | tuple):
        raise ConfigError(f"{source}: 'algorithm_packages' must be a list of import paths, got {packages!r}")
    for package in packages:
        try:
            add_algorithm_package(package)
        except (ImportError, AlgorithmPackageError) as exc:
            raise ConfigError(f"{source}: 'algorithm_packages': {package!r}: {type(exc).__name__}: {exc}") from None
    models = namespace.get("models")
    if not isinstance(models, list | tuple) or not models:
        raise ConfigError(f"{source}: 'models' must be a non-empty list of entries (dicts with an 'algorithm')")
    shared = {k: namespace[k] for k in SHARED_KEYS if k in namespace}
    roots = namespace.get("roots")
    if roots is not None and not isinstance(roots, Mapping):
        raise ConfigError(f"{source}: 'roots' must be a dict of dataset name -> folder, got {roots!r}")
    specs, locations = [], []
    for i, entry in enumerate(models):
        label = entry.get("algorithm") if isinstance(entry, Mapping) else None
        where = f"{source}: models[{i}]" + (f" ({label})" if isinstance(label, str) and label else "")
        try:
            spec = RunSpec.from_entry(entry, shared=shared, expand=expand)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"{where}: two entries are named {spec.name!r}; give them distinct 'name's")
        specs.append(spec)
        locations.append(where)
    return RunConfig(
        name=name,
        source=source,
        specs=tuple(specs),
        locations=tuple(locations),
        roots=MappingProxyType({str(k): str(v) for k, v in roots.items()}) if roots else None,
    )

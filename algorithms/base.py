"""The standard algorithm API (the paper's six-method contract, made Pythonic).

An algorithm is an ``AnomalyDetector`` subclass in its package's ``detector.py``, registered with
``@register_algorithm(INFO)`` (see ``algorithms/registry.py`` for the package layout):

* ``__init__(*, ...)``: keyword-only hyperparameters whose defaults are the publication's;
  it calls ``super().__init__(**hparams_from_locals(locals()))`` so the config round-trips.
  Every algorithm has an ``input_size`` hyperparameter (square side in pixels).
* ``fit_epoch(train_loader) -> dict``: train one epoch. ``train_loader`` yields float tensors
  ``(B, 3, S, S)``, ImageNet-normalised, of defect-free training images, nothing else.
* ``pre_eval(train_loader)``: optional hook run before each evaluation, may use training data
  (PatchCore builds its memory bank here).
* ``_predict(images) -> (scores, maps)``: scores ``(B,)``, maps ``{name: (B, H, W)}``; the
  first map is the primary variant. ``predict`` wraps it (eval mode, no grad) and checks the
  contract, naming the algorithm that broke it.
* ``save(path)``: a directory holding ``config.json`` and ``state.pt`` (a ``state_dict``,
  loaded with ``weights_only=True``); ``algorithms.registry.load_algorithm(path)`` rebuilds any
  saved algorithm, ``MyDetector.load(path)`` one of its own class. Learned state must live in
  parameters or buffers; buffers whose size depends on data (memory banks) are resized on load.

Algorithms never see ground truth, test labels or file paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .checkpoint import CONFIG_FILE, SAVE_FORMAT, STATE_FILE, read_checkpoint_config

__all__ = ["AnomalyDetector", "ContractError", "Prediction", "hparams_from_locals", "validate_prediction"]



class ContractError(RuntimeError):
    """An algorithm returned outputs that break the API contract."""


@dataclass(frozen=True)
class Prediction:
    """Outputs of ``predict`` for a batch: image scores and one or more named anomaly maps."""

    scores: np.ndarray  # (N,) float32
    maps: dict[str, np.ndarray]  # name -> (N, H, W) float32; first key is the primary variant

    @property
    def primary_map(self) -> str:
        return next(iter(self.maps))


def hparams_from_locals(values: dict[str, Any]) -> dict[str, Any]:
    """The ``__init__`` arguments from ``locals()``: drops ``self`` and ``__class__``."""
    return {k: v for k, v in values.items() if k not in ("self", "__class__")}


def _to_numpy(name: str, what: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float32).numpy()
    if not isinstance(value, np.ndarray):
        raise ContractError(f"{name}: {what} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    if not np.issubdtype(value.dtype, np.floating) and not np.issubdtype(value.dtype, np.integer):
        raise ContractError(f"{name}: {what} must be numeric, got dtype {value.dtype}")
    return np.ascontiguousarray(value, dtype=np.float32)


def validate_prediction(name: str, n_images: int, scores: Any, maps: Any) -> Prediction:
    """Check one batch of outputs and convert them to float32 numpy arrays."""
    scores_np = _to_numpy(name, "scores", scores)
    if scores_np.ndim == 2 and scores_np.shape[1] == 1:
        scores_np = scores_np[:, 0]
    if scores_np.shape != (n_images,):
        raise ContractError(f"{name}: expected one score per image, shape ({n_images},), got {scores_np.shape}")
    if not np.isfinite(scores_np).all():
        raise ContractError(f"{name}: scores contain NaN or infinity")
    if not isinstance(maps, dict) or not maps:
        raise ContractError(f"{name}: maps must be a non-empty dict of name -> (N, H, W) arrays")
    out: dict[str, np.ndarray] = {}
    for key, value in maps.items():
        if not isinstance(key, str) or not key:
            raise ContractError(f"{name}: map names must be non-empty strings, got {key!r}")
        arr = _to_numpy(name, f"map {key!r}", value)
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3 or arr.shape[0] != n_images or min(arr.shape[1:]) < 1:
            raise ContractError(f"{name}: map {key!r} must have shape ({n_images}, H, W), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ContractError(f"{name}: map {key!r} contains NaN or infinity")
        out[key] = arr
    return Prediction(scores=scores_np, maps=out)


class AnomalyDetector(nn.Module):
    """Base class of every algorithm. See the module docstring for the contract."""

    algorithm_name: ClassVar[str] = ""  # set by @register_algorithm

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        if "input_size" not in hparams:
            raise TypeError(f"{type(self).__name__} must have an 'input_size' hyperparameter")
        self.hparams: dict[str, Any] = dict(hparams)

    # -- the contract ---------------------------------------------------------------------
    def fit_epoch(self, train_loader) -> dict[str, float]:
        """Train one epoch; return a dict of scalars to log (e.g. ``{"loss": 0.1}``)."""
        raise NotImplementedError(f"{self.name}: fit_epoch is not implemented")

    def pre_eval(self, train_loader) -> None:
        """Optional hook before evaluation; may use the training data."""

    def _predict(self, images: torch.Tensor) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError(f"{self.name}: _predict is not implemented")

    # -- provided -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.algorithm_name or type(self).__name__

    @property
    def input_size(self) -> int:
        return int(self.hparams["input_size"])

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters: ``create_algorithm(name, **get_config())`` rebuilds it."""
        return json.loads(json.dumps(self.hparams))

    def predict(self, images: torch.Tensor) -> Prediction:
        """Score a batch ``(B, 3, S, S)``: eval mode, no gradients, outputs checked."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.name}: predict expects a (B, 3, H, W) tensor, got {shape}")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                scores, maps = self._predict(images.to(self.device))
        finally:
            self.train(was_training)
        return validate_prediction(self.name, images.shape[0], scores, maps)

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``state.pt`` into the directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {"format": SAVE_FORMAT, "algorithm": self.algorithm_name, "hparams": self.get_config()}
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save(state, path / STATE_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> AnomalyDetector:
        """Rebuild a saved instance of this class (``algorithms.registry.load_algorithm`` loads any).

        Raises ``FileNotFoundError`` when ``path`` holds no saved algorithm, ``TypeError`` when
        called on the base class, ``ValueError`` when the directory holds another algorithm.
        """
        if cls is AnomalyDetector:
            raise TypeError("AnomalyDetector.load needs a concrete class; algorithms.registry.load_algorithm(path) "
                            "finds the class of any saved algorithm")  # fmt: skip
        path = Path(path)
        config = read_checkpoint_config(path)
        if cls.algorithm_name and config.get("algorithm") != cls.algorithm_name:
            raise ValueError(f"{path} holds a saved {config.get('algorithm')!r}, not {cls.algorithm_name!r}")
        hparams = dict(config["hparams"])
        if "pretrained" in hparams:  # the weights come from state.pt, never from the hub
            hparams["pretrained"] = False
        model = cls(**hparams)
        model.hparams = dict(config["hparams"])  # keep the saved config verbatim
        state = torch.load(path / STATE_FILE, map_location=map_location, weights_only=True)
        model._resize_buffers_for(state)
        model.load_state_dict(state)
        return model.to(map_location)

    def _resize_buffers_for(self, state: dict[str, torch.Tensor]) -> None:
        """Give data-sized buffers (e.g. memory banks) the saved shape before loading."""
        for key, value in state.items():
            module_path, _, buffer_name = key.rpartition(".")
            module = self.get_submodule(module_path) if module_path else self
            current = module._buffers.get(buffer_name)
            if buffer_name in module._buffers and (current is None or current.shape != value.shape):
                module._buffers[buffer_name] = torch.empty_like(value)

"""The on-disk layout of a saved algorithm, readable without torch.

``AnomalyDetector.save(path)`` writes a directory holding ``config.json`` (``{"format": 1,
"algorithm": <key>, "hparams": {...}}``) and ``state.pt`` (a ``state_dict``). The registry's
``load_algorithm`` reads the key here to find the class, then the class loads the state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_FILE", "SAVE_FORMAT", "STATE_FILE", "read_checkpoint_config"]

CONFIG_FILE = "config.json"
STATE_FILE = "state.pt"
SAVE_FORMAT = 1


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the saved algorithm in the directory ``path``.

    Raises
    ------
    FileNotFoundError
        When ``path`` holds no saved algorithm (the message names the file expected).
    ValueError
        When the file is not a saved algorithm's configuration (no key, no hyperparameters).
    """
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"no saved algorithm at {path}: expected {config_path}")
    config = json.loads(config_path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("algorithm"), str) or "hparams" not in config:
        raise ValueError(f"{config_path} is not a saved algorithm's configuration (no 'algorithm' and 'hparams')")
    return config

"""The paper's benchmark: every registered algorithm with its publication defaults on the VADI suite.

Pretrained ImageNet backbones (hub cache or ``weights_path``), 256 px, two hours of training per
algorithm and category (``train_time_limit_s=7200``), evaluated once at the end. Run on a GPU::

    python -m algorithms run --config algorithms/configs/paper.py --device cuda:0 --out var/runs/paper
"""

from algorithms.configs.defaults import RANDOM, model_defaults
from algorithms.registry import list_algorithms

models = [dict(model_defaults(name), save_predictions=True) for name in list_algorithms(include_baselines=False)]
models.append(dict(RANDOM, save_predictions=True))
categories = ["vadi"]
seed = 0

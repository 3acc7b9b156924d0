"""The paper's benchmark: every registered algorithm with its publication defaults on the VADI suite.

Pretrained ImageNet backbones (hub cache or ``weights_path``), 256 px, each algorithm's
publication schedule (``AlgorithmInfo.schedule``) under the VisionAD cap of two hours of training
per algorithm and category (``train_time_limit_s``, the ``RunSpec`` default), evaluated once at
the end. Run on a GPU::

    python -m algorithms run --config algorithms/configs/paper.py --device cuda:0 --out var/runs/paper
"""

from algorithms.registry import get_algorithm_info, list_algorithms

# Methods first, then the baselines.
models = [{"algorithm": key} for key in sorted(list_algorithms(), key=lambda k: get_algorithm_info(k).is_baseline)]
categories = ["vadi"]
seeds = [0]
save_predictions = True

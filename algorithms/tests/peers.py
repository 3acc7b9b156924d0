"""anomalib 2.7 counterparts of our models with the same weights (test oracle; tests and benchmarks).

Each ``*_pair`` function builds one of our detectors and anomalib's torch model at the same
configuration and copies the weights across with the documented name mapping, so that both
compute the same function. ``benchmarks/peer_*.py`` time the pairs; ``test_anomalib_peers.py``
compares their outputs.
"""

from __future__ import annotations

import warnings

import torch

from algorithms.registry import create_algorithm

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from anomalib.models.image.fastflow.loss import FastflowLoss
    from anomalib.models.image.fastflow.torch_model import FastflowModel as AnomalibFastflow

__all__ = ["FastflowLoss", "fastflow_pair"]


def fastflow_pair(size: int = 64, steps: int = 4, conv3x3_only: bool = False, backbone: str = "resnet18"):
    """Ours (tiny resnet18) and anomalib's ``FastflowModel`` with our weights copied in.

    Mapping: ``model.extractor.model.*`` -> ``feature_extractor.*`` (the same timm
    ``features_only`` resnet18, out indices 1-3); ``model.norms.i`` -> ``norms.i``;
    ``model.flows.i.steps.j.{subnet.*, global_scale, global_offset}`` ->
    ``fast_flow_blocks.i.module_list.j.*`` (FrEIA ``AllInOneBlock``, ``permute_soft=False``);
    our ``permutation`` ``p`` -> the permutation matrix ``w_perm[k, p[k]] = 1`` (and its transpose).
    """
    ours = create_algorithm(
        "fastflow", tiny=True, backbone=backbone, input_size=size, flow_steps=steps, conv3x3_only=conv3x3_only, seed=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = AnomalibFastflow(
            input_size=(size, size), backbone=backbone, pre_trained=False, flow_steps=steps,
            conv3x3_only=conv3x3_only, hidden_ratio=1.0,
        )  # fmt: skip
    state = {}
    for key, value in ours.model.state_dict().items():
        if key.startswith("extractor.model."):
            state["feature_extractor." + key.removeprefix("extractor.model.")] = value
        elif key.startswith("norms."):
            state[key] = value
        else:
            _, scale, _, step, name = key.split(".", 4)
            prefix = f"fast_flow_blocks.{scale}.module_list.{step}."
            if name == "permutation":
                w = torch.zeros(len(value), len(value))
                w[torch.arange(len(value)), value] = 1.0
                state[prefix + "w_perm"] = w[:, :, None, None]
                state[prefix + "w_perm_inv"] = w.t().contiguous()[:, :, None, None]
            elif name != "inverse_permutation":
                state[prefix + name] = value
    missing, unexpected = theirs.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    return ours, theirs

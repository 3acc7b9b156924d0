"""anomalib 2.7's CFA with the same weights as ours (test oracle; ``test_cfa.py`` and ``benchmarks/peer_cfa.py``).

anomalib's ``CfaModel`` loads torchvision's ImageNet weights when built; offline, ``cfa_pair``
builds it around a random-initialised torchvision backbone instead (only the weight source is
replaced). Then anomalib's weights are copied into ours with this mapping:

* ``feature_extractor.<name>`` (torchvision ``resnet18`` truncated after ``layer3``) ->
  ``model.extractor.model.<name>`` (timm ``resnet18`` ``features_only``, out indices 1-3: the same
  parameter and buffer names);
* ``descriptor.layer.conv2d.{weight, bias}`` (the convolution CoordConv2d applies to the input
  plus the row and column channels) -> ``model.descriptor.conv.{weight, bias}`` (same channel
  order). anomalib's ``descriptor.layer.{weight, bias}`` (the ``Conv2d`` that ``CoordConv2d``
  subclasses, never used in ``forward``; the official code has it too) has no counterpart;
* the memory is built by each model from the same batches and compared, not copied.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import torch

from algorithms.registry import create_algorithm

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import torchvision
    from anomalib.models.image.cfa import torch_model as anomalib_cfa
    from anomalib.models.image.cfa.loss import CfaLoss
    from torchvision.models.feature_extraction import create_feature_extractor

__all__ = ["CfaLoss", "anomalib_memory", "cfa_pair"]


def _offline_feature_extractor(backbone: str, return_nodes: list[str]):
    model = getattr(torchvision.models, backbone)(weights=None)
    return create_feature_extractor(model=model, return_nodes=return_nodes).eval()


def cfa_pair(size: int = 64, seed: int = 0, **params):
    """``(ours, theirs)``: our tiny ``cfa`` (resnet18, random init) and anomalib's ``CfaModel``, same weights."""
    torch.manual_seed(seed)
    original = anomalib_cfa.get_feature_extractor
    anomalib_cfa.get_feature_extractor = _offline_feature_extractor
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = anomalib_cfa.CfaModel(
                backbone="resnet18", gamma_c=1, gamma_d=1, num_nearest_neighbors=3,
                num_hard_negative_features=3, radius=1e-5,
            )  # fmt: skip
    finally:
        anomalib_cfa.get_feature_extractor = original
    ours = create_algorithm("cfa", tiny=True, input_size=size, seed=seed, **params)
    state = {f"extractor.model.{k}": v for k, v in theirs.feature_extractor.state_dict().items()}
    state["descriptor.conv.weight"] = theirs.descriptor.layer.conv2d.weight.detach().clone()
    state["descriptor.conv.bias"] = theirs.descriptor.layer.conv2d.bias.detach().clone()
    state["radius"] = ours.model.radius.detach().clone()
    state["memory"] = ours.model.memory
    missing, unexpected = ours.model.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    return ours, theirs


def anomalib_memory(theirs, batches: list[torch.Tensor]) -> None:
    """anomalib's ``initialize_centroid`` over ``batches`` (its loader yields objects with ``.image``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.initialize_centroid([SimpleNamespace(image=b) for b in batches])

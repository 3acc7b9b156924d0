"""anomalib 2.7's UniNet with our weights (test oracle: ``test_uninet_anomalib.py``, ``benchmarks/peer_uninet.py``).

anomalib's ``UniNetModel`` loads torchvision's ImageNet weights for both teachers when built;
offline, :func:`uninet_pair` builds them around random-initialised torchvision backbones instead
(only the weight source is replaced, through ``Teachers._get_teacher``). anomalib hard-codes the
ResNet-50 channel counts (DFS thetas of 256/512/1024 channels, a bottleneck for 256*4 inputs), so
the pair uses a ResNet-50-family backbone: ``resnet50`` (anomalib's bottleneck and ours are then
the same layout) or ``wide_resnet50_2`` (the publication's; anomalib's bottleneck is not wide
there, so ours is built non-wide for the comparison: see the test). Then our weights are copied
into anomalib's with this mapping:

* teachers: ``model.source.model.<name>`` / ``model.target.model.<name>`` (timm ``features_only``,
  out indices 1-3) -> ``teachers.source_teacher.<name>`` / ``teachers.target_teacher.<name>``
  (torchvision truncated after ``layer3``: the same parameter and buffer names);
* bottleneck fusion: ``down1.{0, 1, 3, 4}`` -> ``conv1, bn1, conv2, bn2``; ``down2.{0, 1}`` -> ``conv3, bn3``;
* bottleneck blocks ``embed.<i>`` -> ``bn_layer.0.<i>``: ``branch_a.{0, 1, 3, 4}`` -> ``conv3x3, bn2,
  conv3x3_, bn5``; ``branch_b.{0, 1, 3, 4}`` -> ``conv7x7, bn4, conv7x7_, bn6`` (3x3 with bias after
  ``merge_kernel``); ``fuse.{0, 1}`` -> ``conv3, bn3``; ``shortcut.{0, 1}`` -> ``downsample.{0, 1}``;
* student: ``stage<4-k>.<j>.body.{0, 1, 3, 4, 6, 7}`` -> ``layer<k>.<j>.{conv1, bn1, conv2, bn2, conv3, bn3}``
  (``body.{0, 1, 3, 4}`` -> ``conv1, bn1, conv2, bn2`` for basic blocks); ``shortcut.{0, 1}`` -> ``upsample.{0, 1}``;
* DFS: ``dfs.weights.<l>`` -> ``dfs.theta<l+1>``.

anomalib's parameters without counterpart keep their random values: the bottleneck's
``conv4``/``bn4`` and each block's ``bn7`` (unused in ``forward``, as in the official code), and
``fc`` (anomalib's extra classification head, used only by its training loss).
"""

from __future__ import annotations

import re
import warnings

import torch

from algorithms.components.distillation import OneClassBottleneck
from algorithms.registry import create_algorithm

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import torchvision
    from anomalib.models.image.uninet import torch_model as anomalib_uninet
    from anomalib.models.image.uninet.components import UniNetLoss
    from torchvision.models.feature_extraction import create_feature_extractor

__all__ = ["UniNetLoss", "anomalib_training_loss", "map_to_anomalib", "uninet_pair"]

_BOTTLENECK = {"down1.0": "conv1", "down1.1": "bn1", "down1.3": "conv2", "down1.4": "bn2", "down2.0": "conv3",
               "down2.1": "bn3"}  # fmt: skip
_BLOCK = {
    "branch_a.0": "conv3x3", "branch_a.1": "bn2", "branch_a.3": "conv3x3_", "branch_a.4": "bn5",
    "branch_b.0": "conv7x7", "branch_b.1": "bn4", "branch_b.3": "conv7x7_", "branch_b.4": "bn6",
    "fuse.0": "conv3", "fuse.1": "bn3", "shortcut.0": "downsample.0", "shortcut.1": "downsample.1",
}  # fmt: skip
_DECODER = {"body.0": "conv1", "body.1": "bn1", "body.3": "conv2", "body.4": "bn2", "body.6": "conv3",
            "body.7": "bn3", "shortcut.0": "upsample.0", "shortcut.1": "upsample.1"}  # fmt: skip


def _offline_teacher(backbone: str):
    model = getattr(torchvision.models, backbone)(weights=None)
    return create_feature_extractor(model, return_nodes=["layer3", "layer2", "layer1"])


def map_to_anomalib(key: str) -> str:
    """anomalib's name of one of our ``UniNetModel`` state keys (the mapping in the module docstring)."""
    for ours, theirs in (("source.model.", "teachers.source_teacher."), ("target.model.", "teachers.target_teacher.")):
        if key.startswith(ours):
            return theirs + key.removeprefix(ours)
    if m := re.fullmatch(r"bottleneck\.(down\d\.\d)\.(\w+)", key):
        return f"bottleneck.{_BOTTLENECK[m[1]]}.{m[2]}"
    if m := re.fullmatch(r"bottleneck\.embed\.(\d+)\.(\w+\.\d)\.(\w+)", key):
        return f"bottleneck.bn_layer.0.{m[1]}.{_BLOCK[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"student\.stage(\d)\.(\d+)\.(\w+\.\d)\.(\w+)", key):
        return f"student.layer{4 - int(m[1])}.{m[2]}.{_DECODER[m[3]]}.{m[4]}"
    if m := re.fullmatch(r"dfs\.weights\.(\d)", key):
        return f"dfs.theta{int(m[1]) + 1}"
    raise KeyError(f"no anomalib counterpart for {key}")


def uninet_pair(
    size: int = 64, backbone: str = "resnet50", temperature: float = 2.0, narrow_bottleneck: bool = False, **kwargs
):
    """Ours (``backbone``, random init, publication blocks) and anomalib's ``UniNetModel`` with our weights.

    Returns ``(ours, theirs)``: our ``UniNet`` detector and anomalib's torch model, in eval mode,
    computing the same function (``test_uninet_anomalib.py``). ``kwargs`` go to our detector.
    ``narrow_bottleneck``: replace our bottleneck by one of inner width factor 1 (anomalib's layout
    for ``wide_resnet50_2``, where the official code's is wide).
    """
    ours = create_algorithm(
        "uninet", input_size=size, backbone=backbone, pretrained=False, temperature=temperature, seed=3, **kwargs
    )
    if narrow_bottleneck:
        with torch.random.fork_rng():
            torch.manual_seed(3)
            ours.model.bottleneck = OneClassBottleneck(
                ours.model.channels, blocks=ours.hparams["bottleneck_blocks"], kind="split", width_factor=1
            )
    original = anomalib_uninet.Teachers._get_teacher
    anomalib_uninet.Teachers._get_teacher = staticmethod(_offline_teacher)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = anomalib_uninet.UniNetModel(backbone, backbone, UniNetLoss(temperature=temperature))
    finally:
        anomalib_uninet.Teachers._get_teacher = original
    their_state = theirs.state_dict()
    state = dict(their_state)
    for key, value in ours.model.state_dict().items():
        name = map_to_anomalib(key)
        if name not in their_state or their_state[name].shape != value.shape:
            shape = tuple(their_state[name].shape) if name in their_state else None
            raise AssertionError(f"{key} {tuple(value.shape)} does not map to {name} {shape}")
        state[name] = value.clone()
    theirs.load_state_dict(state, strict=True)
    return ours.eval(), theirs.eval()


def anomalib_training_loss(theirs, images: torch.Tensor) -> torch.Tensor:
    """anomalib's UniNet training loss without its extra classification term.

    ``UniNetModel.forward`` in training adds ``BCE(fc(avgpool(student level 1)), label)`` for both
    halves to the contrastive loss (anomalib's addition; the official code has no such head).
    This runs the same forward (teachers, bottleneck, student, DFS) and returns ``UniNetLoss``
    alone (``mask=None``: the unsupervised setting of the official code).
    """
    teachers, inputs = theirs.teachers(images)
    decoded = [d.chunk(dim=0, chunks=2) for d in theirs.student(theirs.bottleneck(inputs))]
    students = [decoded[0][0], decoded[1][0], decoded[2][0], decoded[0][1], decoded[1][1], decoded[2][1]]
    students = theirs.dfs(students, teachers, maximize=True)
    return theirs.loss(students, teachers, mask=None)

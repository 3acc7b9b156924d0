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
    from anomalib.models.image.cflow.torch_model import CflowModel as AnomalibCflow
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel as AnomalibEfficientAd
    from anomalib.models.image.fastflow.loss import FastflowLoss
    from anomalib.models.image.fastflow.torch_model import FastflowModel as AnomalibFastflow
    from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode
    from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
    from anomalib.models.image.reverse_distillation.torch_model import (
        ReverseDistillationModel as AnomalibReverseDistillation,
    )

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FastflowLoss",
    "ReverseDistillationLoss",
    "cflow_pair",
    "copy_cflow_decoders",
    "efficient_ad_pair",
    "fastflow_pair",
    "reverse_distillation_pair",
    "sync_efficient_ad",
]

#: anomalib's PDNs and autoencoder normalise ``[0, 1]`` images themselves (``imagenet_norm_batch``);
#: ours take ImageNet-normalised images: feed anomalib ``x * IMAGENET_STD + IMAGENET_MEAN``.
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


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


def copy_cflow_decoders(ours, theirs, *, mixing: bool = True) -> None:
    """Copy our CFlow-AD decoder weights into anomalib's ``CflowModel`` (in place).

    Mapping: ``model.decoders.i.steps.j.coupling.subnet.{0,2}.*`` -> ``decoders.i.module_list.j.subnet.*``
    (``subnet_fc``); ``...affine.global_scale / global_offset (C,)`` -> ``...global_scale / global_offset
    (1, C)``; the frozen ``...permute.weight`` -> ``w_perm`` (and its transpose ``w_perm_inv``) when ``mixing``.
    """
    with torch.no_grad():
        for our_decoder, their_decoder in zip(ours.model.decoders, theirs.decoders, strict=True):
            for step, block in zip(our_decoder.steps, their_decoder.module_list, strict=True):
                block.subnet.load_state_dict(step.coupling.subnet.state_dict())
                block.global_scale.copy_(step.affine.global_scale.view_as(block.global_scale))
                block.global_offset.copy_(step.affine.global_offset.view_as(block.global_offset))
                if mixing:
                    block.w_perm.copy_(step.permute.weight)
                    block.w_perm_inv.copy_(step.permute.weight.t())


def cflow_pair(
    size: int = 64,
    *,
    backbone: str = "resnet18",
    layers: tuple[str, ...] = ("layer2", "layer3"),
    cond_channels: int = 16,
    coupling_blocks: int = 2,
    fibre_batch: int = 64,
    seed: int = 2,
):
    """Ours and anomalib's ``CflowModel`` at the same configuration (random-init encoder) with our weights.

    The encoder is the same timm ``features_only`` network on both sides
    (``model.extractor.model.*`` -> ``encoder.feature_extractor.*``); the decoders are copied by
    :func:`copy_cflow_decoders`. anomalib's default ``permute_soft=False`` is set to the official
    (and our) ``True``. Defaults: the tiny configuration of the differential test.
    """
    ours = create_algorithm(
        "cflow", tiny=True, input_size=size, backbone=backbone, layers=list(layers), cond_channels=cond_channels,
        coupling_blocks=coupling_blocks, fibre_batch=fibre_batch, seed=seed,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = AnomalibCflow(
            backbone=backbone, layers=list(layers), pre_trained=False, fiber_batch_size=fibre_batch,
            condition_vector=cond_channels, coupling_blocks=coupling_blocks, clamp_alpha=1.9, permute_soft=True,
        )  # fmt: skip
    theirs.encoder.feature_extractor.load_state_dict(ours.model.extractor.model.state_dict())
    copy_cflow_decoders(ours, theirs)
    return ours, theirs.eval()


def _rd_their_order(key: str) -> tuple[int, str] | None:
    """anomalib's RD parameter names in the order of ours (``None``: no counterpart)."""
    if key.startswith("encoder.feature_extractor."):
        return None  # handled by name
    if key.startswith("bottleneck.conv4") or key.startswith("bottleneck.bn4"):
        return None  # defined but unused by anomalib's OCBE.forward
    if key.startswith("bottleneck.bn_layer."):
        return (2, key)  # our bottleneck.embed comes after down1 and down2 in our state order
    if key.startswith("bottleneck."):
        return (1, key)
    return (3, key)  # decoder.layer1 (deepest) .. layer3 = our decoder.stage3 .. stage1


def reverse_distillation_pair(size: int = 64, backbone: str = "resnet18"):
    """Ours (default blocks for ``backbone``, random init) and anomalib's RD model with our weights.

    Mapping: ``model.encoder.model.*`` -> ``encoder.feature_extractor.*`` (the same timm
    encoder); bottleneck ``down1.{0,1,3,4}`` -> ``conv1, bn1, conv2, bn2``, ``down2.{0,1}`` ->
    ``conv3, bn3``, ``embed.i.{body.0, body.1, body.3, body.4, shortcut.0, shortcut.1}`` ->
    ``bn_layer.i.{conv1, bn1, conv2, bn2, downsample.0, downsample.1}`` (body.6/7 -> conv3/bn3 for
    bottleneck blocks); decoder ``stage{4-k}.j.*`` -> ``layer{k}.j.*`` with ``shortcut`` ->
    ``upsample``. Matched in state order with every shape checked. anomalib's unused ``conv4``/``bn4``
    keep their random values. For ``wide_resnet50_2`` anomalib's OCBE is not wide, so no pair
    exists there (see the test).
    """
    ours = create_algorithm(
        "reverse_distillation", tiny=True, backbone=backbone, input_size=size, bottleneck_blocks=None,
        decoder_blocks=None, seed=3,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = AnomalibReverseDistillation(
            backbone=backbone, input_size=(size, size), layers=["layer1", "layer2", "layer3"],
            anomaly_map_mode=AnomalyMapGenerationMode.ADD, pre_trained=False,
        )  # fmt: skip
    their_state = theirs.state_dict()
    our_state = ours.model.state_dict()
    state = {}
    for key, value in our_state.items():
        if key.startswith("encoder.model."):
            state["encoder.feature_extractor." + key.removeprefix("encoder.model.")] = value
    ours_rest = [k for k in our_state if not k.startswith("encoder.")]
    ours_rest = sorted(ours_rest, key=lambda k: (0 if k.startswith("bottleneck.down") else 1, ours_rest.index(k)))
    theirs_rest = [k for k in their_state if _rd_their_order(k) is not None]
    theirs_rest = sorted(theirs_rest, key=lambda k: (_rd_their_order(k)[0], theirs_rest.index(k)))
    if len(ours_rest) != len(theirs_rest):
        raise AssertionError(f"{len(ours_rest)} of our tensors against {len(theirs_rest)} of anomalib's")
    for mine, their in zip(ours_rest, theirs_rest, strict=True):
        if our_state[mine].shape != their_state[their].shape or mine.rsplit(".", 1)[1] != their.rsplit(".", 1)[1]:
            raise AssertionError(f"{mine} {tuple(our_state[mine].shape)} does not map to {their}")
        state[their] = our_state[mine]
    for key in their_state:
        state.setdefault(key, their_state[key])
    theirs.load_state_dict(state, strict=True)
    return ours, theirs


def _convs(module: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def efficient_ad_pair(size: int = 256, model_size: str = "small", out_channels: int = 64):
    """Ours (full width, random teacher) and anomalib's ``EfficientAdModel`` with our weights.

    Mapping: the convolutions in order -- teacher and student PDN ``Sequential`` convs ->
    ``conv1..conv4`` (small) / ``conv1..conv6`` (medium); autoencoder ``encoder`` convs ->
    ``ae.encoder.enconv1..6``, ``up_convs.0..5`` -> ``ae.decoder.deconv1..6``, the two final convs ->
    ``deconv7, deconv8``; ``teacher_mean`` / ``teacher_std`` -> ``mean_std``; ``map_quantiles`` ->
    ``quantiles`` (only when ours has them). anomalib's ``pad_maps=True`` (the official padding).
    anomalib's decoder needs ``size >= 128`` (its first upsampling is to ``size // 64 - 1``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = create_algorithm(
            "efficient_ad", tiny=True, input_size=size, model_size=model_size, width=1.0, out_channels=out_channels,
            seed=3,
        )  # fmt: skip
        theirs = AnomalibEfficientAd(teacher_out_channels=out_channels, model_size=model_size, pad_maps=True)
    sync_efficient_ad(ours, theirs)
    return ours, theirs


def sync_efficient_ad(ours, theirs) -> None:
    """Copy our current weights, teacher statistics and (when set) map quantiles into anomalib's model."""
    with torch.no_grad():
        for mine, their in [(ours.teacher, theirs.teacher), (ours.student, theirs.student),
                            (ours.autoencoder, theirs.ae)]:  # fmt: skip
            pairs = list(zip(_convs(mine), _convs(their), strict=True))
            for a, b in pairs:
                if a.weight.shape != b.weight.shape:
                    raise AssertionError(f"conv shapes differ: {tuple(a.weight.shape)} vs {tuple(b.weight.shape)}")
                b.weight.copy_(a.weight)
                b.bias.copy_(a.bias)
        theirs.mean_std["mean"].copy_(ours.teacher_mean)
        theirs.mean_std["std"].copy_(ours.teacher_std)
        if bool(ours.map_quantiles_ready):
            for name, value in zip(("qa_st", "qb_st", "qa_ae", "qb_ae"), ours.map_quantiles, strict=True):
                theirs.quantiles[name].copy_(value)

"""anomalib 2.7's INP-Former with the same weights as ours (test oracle; ``test_inp_former_anomalib.py`` and
``benchmarks/peer_inp_former.py``).

anomalib's ``InpFormerModel`` hard-codes ``pre_trained=True`` for its timm encoder and reads the
encoder's width from its name (``DINOV2_ARCHITECTURES``); offline, :func:`inp_former_pair` builds it
around a random-initialised timm DINOv2-with-registers ViT (``pretrained=False``, the width and heads
asked for; only the weight source and the width are replaced, both restored afterwards). Then
anomalib's weights are copied into ours with this mapping (anomalib name -> ours):

* encoder: ``encoder.feature_extractor.<timm name>`` -> ``model.encoder.model.<timm name>`` (the blocks
  past the last tapped one dropped, the unused final norm kept; the positional embedding resampled to
  our grid as timm's ``dynamic_img_size`` resamples it at each of anomalib's calls, bicubic without
  antialiasing);
* ``prototype_token.0`` -> ``model.prototype_token``;
* ``bottleneck.0.fc1/fc2`` -> ``model.bottleneck.fc1/fc2``;
* ``aggregation.i.{norm1, attn.q, attn.kv, attn.proj, norm2, mlp.fc1, mlp.fc2}`` and
  ``decoder.i.{norm1, attn.learn_scale, attn.q, attn.kv, attn.proj, norm2, mlp.fc1, mlp.fc2}`` -> the
  same names under ``model.``. anomalib's extractor and decoder MLPs have no biases (the official
  ``Mlp`` has them): ours stay at 0, their initial value, so both networks compute the same function.
"""

from __future__ import annotations

import warnings

import torch

from algorithms.inp_former.detector import InpFormer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import timm
    from anomalib.models.image.inp_former import torch_model as anomalib_inp_former
    from timm.layers import resample_abs_pos_embed

__all__ = ["inp_former_pair"]


def inp_former_pair(
    size: int = 56, width: int = 32, heads: int = 2, seed: int = 0
) -> tuple[torch.nn.Module, InpFormer]:
    """``(anomalib's InpFormerModel, our InpFormer)``, both in eval mode, with the same weights.

    A random-initialised ``vit_small_patch14_reg4_dinov2`` layout of ``width`` channels and ``heads``
    heads (depth 12, blocks 2-9 tapped, 8 decoder blocks, 6 INPs); ``size``-pixel inputs; our map at
    the input size (``map_size=None``). anomalib's ``remove_class_token=True`` is the official
    single-class script's setting (and anomalib's Lightning default).
    """
    small = {"embed_dim": width, "num_heads": heads, "target_layers": [2, 3, 4, 5, 6, 7, 8, 9]}
    saved_arch, create = anomalib_inp_former.DINOV2_ARCHITECTURES["small"], timm.create_model
    anomalib_inp_former.DINOV2_ARCHITECTURES["small"] = small
    timm.create_model = lambda name, pretrained=False, **kw: create(
        name, pretrained=False, embed_dim=width, num_heads=heads, **kw
    )
    try:
        torch.manual_seed(seed)
        theirs = anomalib_inp_former.InpFormerModel(
            encoder_name="vit_small_patch14_reg4_dinov2", remove_class_token=True
        ).eval()
    finally:
        anomalib_inp_former.DINOV2_ARCHITECTURES["small"], timm.create_model = saved_arch, create
    ours = InpFormer(
        input_size=size,
        pretrained=False,
        backbone="vit_small_patch14_reg4_dinov2.lvd142m",
        model_kwargs={"embed_dim": width, "num_heads": heads},
        map_size=None,
    ).eval()
    encoder = {k: v for k, v in theirs.encoder.feature_extractor.state_dict().items() if not k.startswith("head")}
    grid = size // 14
    encoder["pos_embed"] = resample_abs_pos_embed(
        encoder["pos_embed"], (grid, grid), num_prefix_tokens=0, antialias=False
    )
    encoder = {k: v for k, v in encoder.items() if not k.startswith(("blocks.10.", "blocks.11."))}
    missing, unexpected = ours.model.encoder.model.load_state_dict(encoder, strict=False)
    if missing or unexpected:
        raise AssertionError(f"encoder mapping: missing {missing}, unexpected {unexpected}")
    state = {
        k.replace("prototype_token.0", "prototype_token").replace("bottleneck.0.", "bottleneck."): v
        for k, v in theirs.state_dict().items()
        if not k.startswith(("encoder.", "gaussian_blur."))
    }
    missing, unexpected = ours.model.load_state_dict(state, strict=False)
    expected_missing = {
        f"{block}.mlp.{fc}.bias"
        for block in ["aggregation.0", *[f"decoder.{i}" for i in range(8)]]
        for fc in ("fc1", "fc2")
    }
    if unexpected or {k for k in missing if not k.startswith("encoder.")} != expected_missing:
        raise AssertionError(f"trainable mapping: missing {missing}, unexpected {unexpected}")
    return theirs, ours

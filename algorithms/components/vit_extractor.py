"""Intermediate transformer blocks of a timm Vision Transformer, as token sequences or patch maps.

DINOv2-based methods read the outputs of chosen transformer blocks rather than a CNN's stages:
AnomalyDINO (Damm et al., WACV 2025) the last block of DINOv2 ViT-S/14 after the final
LayerNorm (``get_intermediate_layers(x, n=1)`` of the official DINOv2 code, norm on), Dinomaly
(Guo et al., CVPR 2025) the raw outputs of blocks 2-9 of DINOv2-with-registers ViT-B/14.
:class:`ViTFeatureExtractor` runs timm's own modules in the order of
``VisionTransformer.forward_intermediates`` (patch embedding, positional embedding with class
and register tokens, ``norm_pre``, blocks), stops after the deepest block asked for, and returns

* :meth:`~ViTFeatureExtractor.forward_tokens`: the whole token sequences ``(B, P + h w, C)``
  (``P`` prefix tokens: class token then registers, as in DINOv2 and timm), or
* :meth:`~ViTFeatureExtractor.forward`: the patch tokens only, as maps ``(B, C, h, w)`` with
  ``h = H / patch``, ``w = W / patch`` (class and register tokens dropped).

Pretrained weights are handled as by the CNN :class:`~.feature_extractor.FeatureExtractor`: a
local file (``weights_path``, ``.pth`` or ``.safetensors``, e.g. the official
``dinov2_vits14_pretrain.pth`` converted by timm or a timm ``model.safetensors``), timm's
pretrained weights from the Hugging Face cache (``HF_HOME``), or none (``pretrained=False``, tests);
:class:`~.feature_extractor.PretrainedWeightsUnavailable` says how to provide them. Positional
embeddings are resampled to the input grid by timm (``img_size=input_size`` at creation: bicubic,
once, when the weights are loaded); DINOv2's own code interpolates them at every call with a
slightly different rule (a ``+0.1`` scale offset, no antialiasing), a small numerical difference.

Random-initialised ViTs of any width and depth are built through timm's keyword arguments
(``model_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2}``): a seconds-fast stand-in for
tests and the CPU demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .feature_extractor import PretrainedWeightsUnavailable, _load_weights_file

__all__ = ["ViTFeatureExtractor"]


class ViTFeatureExtractor(nn.Module):
    """Outputs of chosen blocks of a timm ViT; frozen (eval mode, no gradients) by default.

    Parameters
    ----------
    backbone : str
        timm ViT name with its explicit pretrained tag, e.g. ``vit_small_patch14_dinov2.lvd142m``
        (AnomalyDINO) or ``vit_base_patch14_reg4_dinov2.lvd142m`` (Dinomaly).
    blocks : sequence of int
        0-based indices of the transformer blocks to tap (negative counts from the end,
        ``-1`` = the last block); returned in the order given.
    input_size : int
        Side of the square inputs; a multiple of the patch size. The positional embedding is
        built (random init) or resampled (pretrained) for this grid.
    pretrained : bool
        Load pretrained weights (hub cache or ``weights_path``); ``False`` only for tests.
    weights_path : str, optional
        Local weights file (``.pth`` or ``.safetensors``) used instead of the hub.
    norm : bool
        Apply the backbone's final LayerNorm to every tapped output (AnomalyDINO: yes, as
        DINOv2's ``get_intermediate_layers``; Dinomaly: no, raw block outputs).
    frozen : bool
        No gradients and eval mode for the backbone (default).
    model_kwargs : mapping, optional
        Extra timm ``create_model`` arguments (``depth``, ``embed_dim``, ``num_heads``, ...) for
        small random-initialised ViTs.

    Attributes
    ----------
    embed_dim : int
        Channels ``C`` of every token.
    patch_size : int
        Pixels per patch side.
    num_prefix_tokens : int
        Class plus register tokens ``P`` at the start of each token sequence.
    grid_size : tuple of int
        Patch grid ``(h, w)`` at ``input_size``.
    block_indices : list of int
        The tapped blocks as non-negative indices.

    Raises
    ------
    ValueError
        No blocks, a block index outside the model's depth, or an ``input_size`` that is not a
        positive multiple of the patch size.
    PretrainedWeightsUnavailable
        Weights were asked for but are neither cached nor in ``weights_path``.
    """

    def __init__(
        self,
        backbone: str,
        blocks: Sequence[int],
        *,
        input_size: int,
        pretrained: bool = True,
        weights_path: str | None = None,
        norm: bool = False,
        frozen: bool = True,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import timm

        blocks = list(blocks)
        if not blocks:
            raise ValueError(f"{backbone}: name at least one transformer block to tap")
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"{backbone}: input_size must be a positive integer, got {input_size!r}")
        kwargs = {"img_size": input_size, "num_classes": 0, **dict(model_kwargs or {})}
        self.backbone_name = backbone
        if pretrained and not weights_path:
            try:
                model = timm.create_model(backbone, pretrained=True, **kwargs)
            except Exception as exc:  # hub unreachable, not cached, unknown tag, ...
                raise PretrainedWeightsUnavailable(
                    f"pretrained weights for {backbone!r} are not available ({type(exc).__name__}: {exc}). "
                    "Provide them by (a) putting them in the Hugging Face cache (run once with network "
                    "access, or copy a cache and set HF_HOME), (b) naming a local weights file with "
                    "weights_path=/path/to/weights.(pth|safetensors), or (c) passing pretrained=False "
                    "(random initialisation, for tests only)."
                ) from exc
        else:
            try:
                model = timm.create_model(backbone, pretrained=False, **kwargs)
            except TypeError as exc:  # a CNN does not take img_size
                raise ValueError(f"{backbone!r} is not a timm VisionTransformer ({exc})") from exc
            if pretrained and weights_path:
                _load_weights_file(model, Path(weights_path).expanduser(), backbone)
        if not hasattr(model, "blocks") or not hasattr(model, "patch_embed"):
            raise ValueError(f"{backbone!r} is not a timm VisionTransformer (no patch_embed / blocks)")
        depth = len(model.blocks)
        indices = []
        for index in blocks:
            if not isinstance(index, int) or isinstance(index, bool) or not -depth <= index < depth:
                raise ValueError(f"{backbone}: block index {index!r} is outside the model's {depth} blocks")
            indices.append(index % depth)
        patch = model.patch_embed.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, tuple | list) else patch)
        if input_size % self.patch_size:
            raise ValueError(
                f"{backbone}: input_size {input_size} is not a multiple of the patch size {self.patch_size} "
                f"(e.g. {max(1, input_size // self.patch_size) * self.patch_size})"
            )
        self.block_indices = indices
        self.last_block = max(indices)
        self.norm = bool(norm)
        self.frozen = bool(frozen)
        self.input_size = input_size
        self.embed_dim = int(model.embed_dim)
        self.num_prefix_tokens = int(model.num_prefix_tokens)
        self.grid_size = (input_size // self.patch_size, input_size // self.patch_size)
        # Blocks past the deepest tapped one are never run: drop them (and the classifier head).
        model.blocks = model.blocks[: self.last_block + 1]
        self.model = model
        if frozen:
            for parameter in self.model.parameters():
                parameter.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> ViTFeatureExtractor:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # no dropout / drop-path in a frozen encoder
        return self

    def _tokens(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.backbone_name}: expected images (B, 3, H, W), got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"{self.backbone_name}: expected {self.input_size} x {self.input_size} images (input_size), "
                f"got {tuple(images.shape[-2:])}"
            )
        model = self.model
        x = model.patch_embed(images)
        x = model._pos_embed(x)
        x = model.patch_drop(x)
        x = model.norm_pre(x)
        taps: dict[int, torch.Tensor] = {}
        wanted = set(self.block_indices)
        for i, block in enumerate(model.blocks):
            x = block(x)
            if i in wanted:
                taps[i] = model.norm(x) if self.norm else x
        return [taps[i] for i in self.block_indices]

    def forward_tokens(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Token sequences ``(B, P + h w, C)`` after each tapped block (prefix tokens first).

        Parameters
        ----------
        images : torch.Tensor
            ``(B, 3, input_size, input_size)`` float images (ImageNet-normalised).

        Returns
        -------
        list of torch.Tensor
            One ``(B, num_prefix_tokens + h * w, embed_dim)`` tensor per tapped block, in the
            order of ``blocks``; the final LayerNorm applied when ``norm=True``.
        """
        if self.frozen:
            with torch.no_grad():
                return self._tokens(images)
        return self._tokens(images)

    def to_maps(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens of one ``(B, P + h w, C)`` sequence as a ``(B, C, h, w)`` map (prefix dropped)."""
        b, n, c = tokens.shape
        h, w = self.grid_size
        if n != self.num_prefix_tokens + h * w:
            raise ValueError(f"expected {self.num_prefix_tokens + h * w} tokens, got {n}")
        return tokens[:, self.num_prefix_tokens :].transpose(1, 2).reshape(b, c, h, w)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Patch-token maps ``(B, C, h, w)`` of each tapped block (class and register tokens dropped)."""
        return [self.to_maps(tokens) for tokens in self.forward_tokens(images)]

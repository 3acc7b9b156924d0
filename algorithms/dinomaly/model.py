"""Dinomaly's network: frozen DINOv2-register encoder, noisy bottleneck, linear-attention decoder.

A pure ``torch.nn.Module`` plus the loss and map functions (no training loop; ``detector.py``
trains it). Guo et al., "Dinomaly: The Less Is More Philosophy in Multi-Class Unsupervised Anomaly
Detection", CVPR 2025, sec. 3; official code guojiajeremy/Dinomaly (``models/uad.py`` ``ViTill``,
``models/vision_transformer.py`` ``bMlp`` / ``Block`` / ``LinearAttention2``, ``utils.py``
``global_cosine_hm_percent``; the map, blur, schedule, bottleneck and initialisation shared with
INP-Former are in ``algorithms.components.vit_reconstruction``). Module and
parameter names follow the official ones (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``; bottleneck ``fc1``, ``fc2``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..components.vit_extractor import ViTFeatureExtractor
from ..components.vit_reconstruction import (
    FeedForward,
    NoisyBottleneck,
    box_gaussian_blur,
    count_parameters,
    init_reconstruction_weights,
    scale_gradient,
    warm_cosine_lr,
)
from ..components.vit_reconstruction import cosine_anomaly_map as anomaly_map

__all__ = [
    "DecoderBlock",
    "DinomalyModel",
    "LinearAttention",
    "NoisyBottleneck",
    "anomaly_map",
    "box_gaussian_blur",
    "count_parameters",
    "hard_mining_cosine_loss",
    "scale_gradient",
    "warm_cosine_lr",
]


class LinearAttention(nn.Module):
    """Multi-head linear attention with the ``elu + 1`` feature map (Katharopoulos et al. 2020).

    ``phi(x) = elu(x) + 1``; per head, ``out_i = phi(q_i) (sum_j phi(k_j)^T v_j) / (phi(q_i) . sum_j phi(k_j))``
    (no softmax, no scaling: the official ``LinearAttention2``). ``(B, N, C)`` to ``(B, N, C)``.
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = F.elu(qkv[0]) + 1.0, F.elu(qkv[1]) + 1.0, qkv[2]  # (B, heads, N, d)
        kv = k.transpose(-2, -1) @ v  # (B, heads, d, d)
        normaliser = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, heads, N, 1)
        out = (q @ kv) / normaliser
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DecoderBlock(nn.Module):
    """Pre-norm ViT block with linear attention: ``x + attn(norm1 x)``, then ``x + mlp(norm2 x)``.

    LayerNorm eps 1e-8, qkv bias, MLP ratio 4 with GELU, no dropout or drop-path (the official
    decoder blocks). Parameters per block at width ``C``: ``12 C^2 + 13 C``.
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = LinearAttention(dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def hard_mining_cosine_loss(
    encoder: Sequence[torch.Tensor], decoder: Sequence[torch.Tensor], *, p: float, factor: float = 0.1
) -> torch.Tensor:
    """Dinomaly's loose-reconstruction loss with gradient-scaling hard mining (``global_cosine_hm_percent``).

    For each group ``g`` (encoder map ``e``, decoder map ``d``, both ``(B, C, h, w)``):
    ``L_g = mean_b (1 - cos(flatten(e_b), flatten(d_b)))`` (one cosine per image over all of
    ``C h w``: the "global" cosine, paper eq. 4), the encoder side detached. Hard mining (paper
    eq. 5): the point distances ``1 - cos`` over channels are ranked over the whole batch; the
    threshold is the ``k``-th largest, ``k = max(1, int(B h w (1 - p)))``; the gradient reaching
    ``d`` at points below it is multiplied by ``factor``. Returns ``mean_g L_g``.
    """
    if len(encoder) != len(decoder) or not encoder:
        raise ValueError(
            f"need as many encoder as decoder groups (at least one), got {len(encoder)} and {len(decoder)}"
        )
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    total = encoder[0].new_zeros(())
    for e, d in zip(encoder, decoder):
        e = e.detach()
        with torch.no_grad():
            point = 1.0 - F.cosine_similarity(e, d, dim=1)  # (B, h, w)
            k = max(1, int(point.numel() * (1.0 - p)))
            threshold = point.reshape(-1).topk(k).values[-1]
            scale = torch.where(point < threshold, factor, 1.0).to(d.dtype)[:, None]
        d = scale_gradient(d, scale)
        total = total + (1.0 - F.cosine_similarity(e.flatten(1), d.flatten(1), dim=1)).mean()
    return total / len(encoder)


class DinomalyModel(nn.Module):
    """Encoder taps, bottleneck, decoder and the grouped (loose) reconstruction targets.

    Parameters
    ----------
    backbone, input_size, pretrained, weights_path, model_kwargs
        The frozen encoder (:class:`~algorithms.components.vit_extractor.ViTFeatureExtractor`,
        raw block outputs, no final norm).
    target_layers : sequence of int
        Encoder blocks tapped (official ViT-B: 2-9).
    fuse_layer_encoder, fuse_layer_decoder : sequence of sequence of int
        The groups: indices into the tapped encoder outputs and into the **reversed** decoder
        outputs (official: ``[[0, 1, 2, 3], [4, 5, 6, 7]]`` for both).
    decoder_depth : int
        Decoder blocks (official: 8).
    num_heads : int, optional
        Decoder heads (default: the encoder's).
    dropout : float
        Bottleneck dropout (official: 0.2).
    """

    def __init__(
        self,
        *,
        backbone: str,
        input_size: int,
        pretrained: bool,
        weights_path: str | None,
        model_kwargs: Mapping[str, Any] | None,
        target_layers: Sequence[int],
        fuse_layer_encoder: Sequence[Sequence[int]],
        fuse_layer_decoder: Sequence[Sequence[int]],
        decoder_depth: int,
        num_heads: int | None,
        dropout: float,
    ) -> None:
        super().__init__()
        self.encoder = ViTFeatureExtractor(
            backbone,
            list(target_layers),
            input_size=input_size,
            pretrained=pretrained,
            weights_path=weights_path,
            norm=False,
            model_kwargs=model_kwargs,
        )
        n_taps = len(self.encoder.block_indices)
        for group in fuse_layer_encoder:
            if not group or any(not 0 <= i < n_taps for i in group):
                raise ValueError(f"fuse_layer_encoder group {list(group)} must index the {n_taps} target layers")
        for group in fuse_layer_decoder:
            if not group or any(not 0 <= i < decoder_depth for i in group):
                raise ValueError(
                    f"fuse_layer_decoder group {list(group)} must index the {decoder_depth} decoder blocks"
                )
        if len(fuse_layer_encoder) != len(fuse_layer_decoder) or not fuse_layer_encoder:
            raise ValueError("fuse_layer_encoder and fuse_layer_decoder must have the same (non-zero) number of groups")
        dim = self.encoder.embed_dim
        heads = int(num_heads or self.encoder.model.blocks[0].attn.num_heads)
        self.fuse_layer_encoder = [list(g) for g in fuse_layer_encoder]
        self.fuse_layer_decoder = [list(g) for g in fuse_layer_decoder]
        self.bottleneck = NoisyBottleneck(dim, 4 * dim, dropout)
        self.decoder = nn.ModuleList(DecoderBlock(dim, heads) for _ in range(decoder_depth))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation of the trainable part: Linear weights trunc-normal(0, 0.01) cut at
        +-0.03, biases 0; LayerNorm weight 1, bias 0."""
        init_reconstruction_weights([self.bottleneck, self.decoder])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The bottleneck's and the decoder's parameters (the encoder is frozen)."""
        return [*self.bottleneck.parameters(), *self.decoder.parameters()]

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Grouped encoder and decoder maps, each a list of ``(B, C, h, w)`` (prefix tokens dropped)."""
        taps = self.encoder.forward_tokens(images)  # (B, P + hw, C) each, no gradient
        x = torch.stack(taps, dim=1).mean(dim=1)  # the mean of all tapped layers, every token
        x = self.bottleneck(x)
        outputs = []
        for block in self.decoder:
            x = block(x)
            outputs.append(x)
        outputs = outputs[::-1]
        fuse = lambda seq, idx: torch.stack([seq[i] for i in idx], dim=1).mean(dim=1)  # noqa: E731
        encoder = [self.encoder.to_maps(fuse(taps, g)) for g in self.fuse_layer_encoder]
        decoder = [self.encoder.to_maps(fuse(outputs, g)) for g in self.fuse_layer_decoder]
        return encoder, decoder

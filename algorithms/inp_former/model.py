"""INP-Former's network: frozen DINOv2 encoder, INP Extractor, bottleneck, INP-guided decoder; its losses.

A pure ``torch.nn.Module`` plus the two losses (no training loop; ``detector.py`` trains it).
Luo, Cao, Yao, Zhang, Lou, Cheng, Shen & Yu, "Exploring Intrinsic Normal Prototypes within a Single
Image for Universal Anomaly Detection", CVPR 2025 (arXiv 2503.02424); official code
luow23/INP-Former (MIT): ``models/uad.py`` ``INP_Former``, ``models/vision_transformer.py``
``Aggregation_Block`` / ``Prototype_Block``, ``utils.py`` ``global_cosine_hm_adaptive``. Written
from those equations; the blocks INP-Former shares with Dinomaly (bottleneck MLP, map, blur,
schedule, initialisation) come from ``algorithms.components.vit_reconstruction``.

Shapes at the publication's size (ViT-B/14 with 4 registers, 392 px, so ``N = 28 x 28 = 784``
patch tokens of ``C = 768``; ``M = 6`` INPs): encoder taps ``(B, 5 + N, C)`` -> prefix tokens
dropped -> fused (mean of the 8 taps) ``(B, N, C)`` -> INP Extractor ``(B, M, C)``; bottleneck
``(B, N, C)``; 8 decoder blocks ``(B, N, C)`` each; two groups of ``(B, C, 28, 28)`` maps per side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..components.vit_extractor import ViTFeatureExtractor
from ..components.vit_reconstruction import FeedForward, NoisyBottleneck, init_reconstruction_weights, scale_gradient

__all__ = [
    "InpExtractorBlock",
    "InpFormerModel",
    "InpGuidedDecoderBlock",
    "PrototypeAttention",
    "inp_coherence_loss",
    "soft_mining_cosine_loss",
]


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, T, C)`` to ``(B, heads, T, C / heads)``."""
    b, t, c = x.shape
    return x.reshape(b, t, num_heads, c // num_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, T, d)`` to ``(B, T, heads d)``."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


class _CrossAttention(nn.Module):
    """Softmax cross-attention: queries from ``x`` (``q``), keys and values from ``y`` (``kv``), ``proj``.

    ``softmax(q k^T / sqrt(d)) v`` per head (the official ``Aggregation_Attention``).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        q = _heads(self.q(x), self.num_heads)
        k, v = (_heads(t, self.num_heads) for t in self.kv(y).chunk(2, dim=-1))
        return self.proj(_merge(F.scaled_dot_product_attention(q, k, v)))


class InpExtractorBlock(nn.Module):
    """One INP Extractor block (the paper's "INP Extractor"; official ``Aggregation_Block``).

    ``P <- P + CrossAttn(norm1 P, norm1 F)``, then ``P <- P + MLP(norm2 P)``: the ``M`` learnable
    queries ``P`` (``(B, M, C)``) attend over the image's fused patch tokens ``F`` (``(B, N, C)``)
    with softmax weights, so each INP is a convex combination of the image's own (projected)
    tokens. The **same** LayerNorm ``norm1`` normalises queries and tokens (official). LayerNorm
    eps 1e-8, MLP ratio 4, qkv biases. ``12 C^2 + 13 C`` parameters.
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, prototypes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = prototypes + self.attn(self.norm1(prototypes), self.norm1(tokens))
        return x + self.mlp(self.norm2(x))


class PrototypeAttention(nn.Module):
    """INP-guided attention (official ``Prototype_Attention``): patch queries, INP keys and values.

    Per head ``h``: ``A = ReLU(s_h * normalize(q) normalize(k)^T)``, output ``A v`` (no softmax, no
    normalisation over the INPs), then ``proj``. ``s_h`` is a learnable scale per head, initialised
    to 1 (``learn_scale``, shape ``(heads, 1, 1)``); ``q = x W_q``, ``(k, v) = P W_kv``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.learn_scale = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        q = F.normalize(_heads(self.q(x), self.num_heads), dim=-1)
        k, v = (_heads(t, self.num_heads) for t in self.kv(prototypes).chunk(2, dim=-1))
        weights = F.relu((q @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.learn_scale)  # (B, heads, N, M)
        return self.proj(_merge(weights @ v))


class InpGuidedDecoderBlock(nn.Module):
    """One INP-guided decoder block (the paper's "INP-Guided Decoder"; official ``Prototype_Block``).

    ``x <- Attn(norm1 x, norm1 P)`` **without the first residual connection** (the paper: so that
    the output lies in the span of the INPs' values and an anomalous query cannot pass through),
    then ``x <- x + MLP(norm2 x)``. ``norm1`` is shared by the queries and the INPs (official).
    ``12 C^2 + 13 C + heads`` parameters.
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = PrototypeAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x), self.norm1(prototypes))
        return x + self.mlp(self.norm2(x))


def inp_coherence_loss(tokens: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """The paper's INP Coherence Loss (official ``gather_loss``).

    ``L_c = mean_{b, i} min_m (1 - cos(F_{b,i}, P_{b,m}))``: every fused patch token ``F`` of
    ``(B, N, C)`` is pulled towards its nearest INP of ``(B, M, C)``.
    """
    distance = 1.0 - F.cosine_similarity(tokens[:, :, None], prototypes[:, None], dim=-1)  # (B, N, M)
    return distance.min(dim=2).values.mean()


def soft_mining_cosine_loss(
    encoder: Sequence[torch.Tensor], decoder: Sequence[torch.Tensor], *, power: float = 3.0
) -> torch.Tensor:
    """The paper's Soft Mining Loss (official ``global_cosine_hm_adaptive``, ``y=3``).

    For each group (encoder map ``e``, decoder map ``d``, both ``(B, C, h, w)``), the value is
    Dinomaly's global cosine ``mean_b (1 - cos(flatten(e_b), flatten(d_b)))``, the encoder side
    detached; the gradient reaching ``d`` at each point is multiplied by ``(D / mean(D))^power``,
    ``D`` the point's channel-wise ``1 - cos`` (constant, no gradient) and the mean taken over the
    whole batch's points. Returns the mean over groups.
    """
    if len(encoder) != len(decoder) or not encoder:
        raise ValueError(
            f"need as many encoder as decoder groups (at least one), got {len(encoder)} and {len(decoder)}"
        )
    total = encoder[0].new_zeros(())
    for e, d in zip(encoder, decoder):
        e = e.detach()
        with torch.no_grad():
            point = 1.0 - F.cosine_similarity(e, d, dim=1)[:, None]  # (B, 1, h, w)
            weight = (point / point.mean()) ** power
        d = scale_gradient(d, weight.to(d.dtype))
        total = total + (1.0 - F.cosine_similarity(e.flatten(1), d.flatten(1), dim=1)).mean()
    return total / len(encoder)


class InpFormerModel(nn.Module):
    """Encoder taps, INP Extractor, bottleneck, INP-guided decoder and the grouped reconstruction.

    Parameters
    ----------
    backbone, input_size, pretrained, weights_path, model_kwargs
        The frozen encoder (:class:`~algorithms.components.vit_extractor.ViTFeatureExtractor`,
        raw block outputs, no final norm).
    target_layers : sequence of int
        Encoder blocks tapped (official ViT-B: 2-9).
    fuse_layer_encoder, fuse_layer_decoder : sequence of sequence of int
        Groups: indices into the tapped encoder outputs and into the **reversed** decoder outputs
        (official: ``[[0, 1, 2, 3], [4, 5, 6, 7]]`` both).
    decoder_depth : int
        INP-guided decoder blocks (official: 8).
    inp_num : int
        INPs per image ``M`` (official: 6).
    extractor_depth : int
        INP Extractor blocks (official: 1).
    num_heads : int, optional
        Heads of the extractor and decoder (default: the encoder's).
    dropout : float
        Bottleneck dropout (official INP-Former: 0).
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
        inp_num: int,
        extractor_depth: int,
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
        if inp_num < 1 or extractor_depth < 1:
            raise ValueError(f"need inp_num >= 1 and extractor_depth >= 1, got {inp_num} and {extractor_depth}")
        dim = self.encoder.embed_dim
        heads = int(num_heads or self.encoder.model.blocks[0].attn.num_heads)
        self.fuse_layer_encoder = [list(g) for g in fuse_layer_encoder]
        self.fuse_layer_decoder = [list(g) for g in fuse_layer_decoder]
        # the learnable INP queries: standard normal, untouched by the Linear/LayerNorm initialisation (official)
        self.prototype_token = nn.Parameter(torch.randn(inp_num, dim))
        self.aggregation = nn.ModuleList(InpExtractorBlock(dim, heads) for _ in range(extractor_depth))
        self.bottleneck = NoisyBottleneck(dim, 4 * dim, dropout)
        self.decoder = nn.ModuleList(InpGuidedDecoderBlock(dim, heads) for _ in range(decoder_depth))
        init_reconstruction_weights([self.aggregation, self.bottleneck, self.decoder])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The bottleneck's, the decoder's, the extractor's parameters and the INP queries (encoder frozen)."""
        return [*self.bottleneck.parameters(), *self.decoder.parameters(), *self.aggregation.parameters(),
                self.prototype_token]  # fmt: skip

    def _maps(self, tokens: torch.Tensor) -> torch.Tensor:
        b, _, c = tokens.shape
        h, w = self.encoder.grid_size
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Grouped encoder and decoder maps (lists of ``(B, C, h, w)``) and the INP coherence loss."""
        prefix = self.encoder.num_prefix_tokens
        taps = [t[:, prefix:] for t in self.encoder.forward_tokens(images)]  # patch tokens only (official)
        x = torch.stack(taps, dim=1).mean(dim=1)  # (B, N, C): the mean of all tapped layers
        prototypes = self.prototype_token.expand(x.shape[0], -1, -1)
        for block in self.aggregation:
            prototypes = block(prototypes, x)
        coherence = inp_coherence_loss(x, prototypes)
        x = self.bottleneck(x)
        outputs = []
        for block in self.decoder:
            x = block(x, prototypes)
            outputs.append(x)
        outputs = outputs[::-1]
        fuse = lambda seq, idx: torch.stack([seq[i] for i in idx], dim=1).mean(dim=1)  # noqa: E731
        encoder = [self._maps(fuse(taps, g)) for g in self.fuse_layer_encoder]
        decoder = [self._maps(fuse(outputs, g)) for g in self.fuse_layer_decoder]
        return encoder, decoder, coherence

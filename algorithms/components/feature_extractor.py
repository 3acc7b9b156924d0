"""A timm ``features_only`` backbone with explicit, offline-friendly pretrained-weight loading.

Weights come from (in order): a local file named by ``weights_path``; timm's pretrained
weights, i.e. the Hugging Face hub cache (``HF_HOME``) or a download where the network allows
it; nothing at all with ``pretrained=False`` (tests). When weights are asked for but cannot be
had, ``PretrainedWeightsUnavailable`` says how to provide them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["FeatureExtractor", "PretrainedWeightsUnavailable", "resolve_layer_indices"]


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were requested but are neither cached nor downloadable."""


def resolve_layer_indices(layers: Sequence[str | int]) -> list[int]:
    """Map layer names (``"layer2"``) or timm feature indices (``2``) to feature indices."""
    indices = []
    for layer in layers:
        if isinstance(layer, int):
            indices.append(layer)
        elif isinstance(layer, str) and layer.startswith("layer") and layer[5:].isdigit():
            indices.append(int(layer[5:]))
        elif isinstance(layer, str) and layer.isdigit():
            indices.append(int(layer))
        else:
            raise ValueError(f"unknown layer {layer!r}: use 'layerN' (ResNet-style) or a timm feature index")
    return indices


def _load_weights_file(model: nn.Module, weights_path: Path, backbone: str) -> None:
    if not weights_path.is_file():
        raise PretrainedWeightsUnavailable(f"weights file for {backbone!r} not found: {weights_path}")
    if weights_path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights_path))
    else:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in usable]
    if missing:
        raise PretrainedWeightsUnavailable(
            f"weights file {weights_path} does not fit backbone {backbone!r}: missing {len(missing)} tensors "
            f"(first: {missing[0]})"
        )
    model.load_state_dict(usable, strict=True)


class FeatureExtractor(nn.Module):
    """Multi-scale features from a timm backbone; frozen (eval mode, no gradients) by default."""

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str | int],
        *,
        pretrained: bool = True,
        weights_path: str | None = None,
        frozen: bool = True,
    ) -> None:
        super().__init__()
        import timm

        self.backbone_name = backbone
        self.layer_indices = resolve_layer_indices(layers)
        self.frozen = frozen
        kwargs = {"features_only": True, "out_indices": tuple(self.layer_indices)}
        if pretrained and not weights_path:
            try:
                self.model = timm.create_model(backbone, pretrained=True, **kwargs)
            except Exception as exc:  # hub unreachable, not cached, unknown tag, ...
                raise PretrainedWeightsUnavailable(
                    f"pretrained weights for {backbone!r} are not available ({type(exc).__name__}: {exc}). "
                    "Provide them by (a) putting them in the Hugging Face cache (run once with network "
                    "access, or copy a cache and set HF_HOME), (b) naming a local weights file with "
                    "weights_path=/path/to/weights.(pth|safetensors), or (c) passing pretrained=False "
                    "(random initialisation, for tests only)."
                ) from exc
        else:
            self.model = timm.create_model(backbone, pretrained=False, **kwargs)
            if pretrained and weights_path:
                _load_weights_file(self.model, Path(weights_path).expanduser(), backbone)
        self.channels: list[int] = list(self.model.feature_info.channels())
        self.reductions: list[int] = list(self.model.feature_info.reduction())
        if frozen:
            for parameter in self.model.parameters():
                parameter.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # batch-norm statistics of a frozen backbone never change
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.frozen:
            with torch.no_grad():
                return list(self.model(images))
        return list(self.model(images))

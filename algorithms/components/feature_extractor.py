"""A timm ``features_only`` backbone with explicit, offline-friendly pretrained-weight loading.

Weights come from (in order): a local file named by ``weights_path``; timm's pretrained
weights, i.e. the Hugging Face hub cache (``HF_HOME``) or a download where the network allows
it; nothing at all with ``pretrained=False`` (tests). When weights are asked for but cannot be
had, ``PretrainedWeightsUnavailable`` says how to provide them.

Random-initialised backbones (``pretrained=False``) keep BatchNorm running statistics of mean 0
and variance 1, which do not match the activations real images produce: deeper features drift
to arbitrary scales and a few channels (often global brightness) dominate distances. The opt-in
:meth:`FeatureExtractor.calibrate_batchnorm` re-estimates those statistics from training images
(a data-dependent initialisation, the standard trick for random-feature baselines; the same
re-estimation as AdaBN / "BN recalibration"), so every channel of every stage is standardised on
the normal data. Call it with training images only, never test images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["FeatureExtractor", "PretrainedWeightsUnavailable", "calibrate_batchnorm", "resolve_layer_indices"]


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


_BATCHNORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


def _as_image_batches(images: torch.Tensor | Iterable) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"expected an image batch (B, C, H, W), got shape {tuple(images.shape)}")
        return (images,)
    from ..utils import batch_images

    return (batch_images(batch) for batch in images)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, images: torch.Tensor | Iterable, *, max_images: int | None = None) -> int:
    """Re-estimate the BatchNorm running statistics of ``model`` from ``images`` (in place).

    Every BatchNorm layer's running mean and variance are reset and replaced by the average of
    their per-batch values over the given batches (cumulative average, ``momentum=None``; the
    same estimate as ``torch.optim.swa_utils.update_bn``), computed in one forward pass with
    the BatchNorm layers in training mode and no gradients; the affine parameters and all
    weights are untouched. Afterwards the model is back in its previous training mode. Deterministic:
    the same images in the same batches give the same statistics.

    Parameters
    ----------
    model : torch.nn.Module
        A network with BatchNorm layers (for example a random-initialised timm backbone).
    images : torch.Tensor or iterable
        One ``(B, 3, H, W)`` batch, or an iterable of batches (a ``DataLoader`` over the
        **training** images; batches may be tensors or ``(images, ...)`` tuples).
    max_images : int, optional
        Stop after this many images (default: all).

    Returns
    -------
    int
        The number of images used.

    Raises
    ------
    ValueError
        No images were given, or ``model`` has no BatchNorm layer.
    """
    norms = [m for m in model.modules() if isinstance(m, _BATCHNORM_TYPES)]
    if not norms:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer to calibrate")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    was_training = model.training
    saved = [(m, m.momentum, m.training) for m in norms]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches seen
    model.eval()
    for m in norms:
        m.train()
    seen = 0
    try:
        for batch in _as_image_batches(images):
            if max_images is not None:
                batch = batch[: max_images - seen]
            if batch.shape[0] == 0:
                break
            model(batch.to(device))
            seen += int(batch.shape[0])
            if max_images is not None and seen >= max_images:
                break
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
    if seen == 0:
        raise ValueError("calibrate_batchnorm: no images were given")
    return seen


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

    def calibrate_batchnorm(self, images: torch.Tensor | Iterable, *, max_images: int | None = None) -> int:
        """Re-estimate the backbone's BatchNorm statistics from training images.

        Meant for random-initialised backbones (``pretrained=False``); see
        :func:`calibrate_batchnorm`. The backbone stays frozen (eval mode) afterwards.

        Parameters
        ----------
        images : torch.Tensor or iterable
            A batch, or an iterable of batches, of **training** images.
        max_images : int, optional
            Use at most this many images.

        Returns
        -------
        int
            The number of images used.
        """
        seen = calibrate_batchnorm(self.model, images, max_images=max_images)
        if self.frozen:
            self.model.eval()
        return seen

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.frozen:
            with torch.no_grad():
                return list(self.model(images))
        return list(self.model(images))

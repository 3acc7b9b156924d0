"""A complete example algorithm: distance of each pixel's colour to the training mean colour.

Copy this file into ``algorithms/<your_algorithm>.py`` (or a package), add its module name to
``BUILTIN_MODULES`` in ``algorithms/registry.py``, and it is listed by ``python -m algorithms
list``, checked by the conformance test, runnable from configs and benchmarked by the workers.
"""

from __future__ import annotations

import torch

from algorithms.base import AnomalyDetector, hparams_from_locals
from algorithms.components.blur import gaussian_blur
from algorithms.registry import register_algorithm


@register_algorithm(
    "mean_colour",
    display_name="Mean colour distance",
    family="other",
    description="Per-pixel distance to the mean training colour; a teaching example.",
    default_input_size=256,
    tiny={"input_size": 64},
    one_shot=True,
)
class MeanColour(AnomalyDetector):
    """Per-pixel Euclidean distance to the mean training colour.

    Parameters
    ----------
    input_size : int
        Side of the square input images.
    sigma : float
        Gaussian smoothing of the anomaly map (0 disables it).
    """

    def __init__(self, *, input_size: int = 256, sigma: float = 4.0) -> None:
        super().__init__(**hparams_from_locals(locals()))
        # learned state lives in buffers or parameters, so save/load round-trips it
        self.register_buffer("mean", torch.zeros(3))

    def fit_epoch(self, train_loader) -> dict[str, float]:
        total, count = torch.zeros(3), 0
        for images in train_loader:  # (B, 3, S, S) float tensors, defect-free images only
            total += images.sum(dim=(0, 2, 3)).cpu()
            count += images.shape[0] * images.shape[2] * images.shape[3]
        self.mean = (total / max(count, 1)).to(self.mean.device)
        return {"mean_norm": float(self.mean.norm())}

    def _predict(self, images: torch.Tensor):
        maps = torch.linalg.vector_norm(images - self.mean[None, :, None, None], dim=1)  # (B, S, S)
        if self.hparams["sigma"] > 0:
            maps = gaussian_blur(maps, self.hparams["sigma"])
        scores = maps.flatten(1).amax(dim=1)  # (B,)
        return scores, {"anomaly_map": maps}

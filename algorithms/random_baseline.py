"""A trivial baseline: random scores and maps. Any real method must beat it clearly.

It is also the smallest complete example of the API (see ``docs/adding-an-algorithm.md``).
"""

from __future__ import annotations

import torch

from .base import AnomalyDetector, hparams_from_locals
from .registry import register_algorithm


@register_algorithm(
    "random",
    display_name="Random baseline",
    family="baseline",
    description="Uniform random image scores and anomaly maps; the floor every method must beat.",
    default_input_size=256,
    tiny={"input_size": 64},
    one_shot=True,
    is_baseline=True,
)
class RandomBaseline(AnomalyDetector):
    def __init__(self, *, input_size: int = 256, seed: int = 0) -> None:
        super().__init__(**hparams_from_locals(locals()))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def fit_epoch(self, train_loader) -> dict[str, float]:
        return {}

    def _predict(self, images: torch.Tensor):
        # Seeded by the call count so that repeated runs give identical outputs.
        generator = torch.Generator().manual_seed(int(self.hparams["seed"]) * 1_000_003 + int(self.calls))
        self.calls += 1
        n, _, h, w = images.shape
        maps = torch.rand((n, h, w), generator=generator)
        scores = torch.rand((n,), generator=generator)
        return scores, {"anomaly_map": maps}

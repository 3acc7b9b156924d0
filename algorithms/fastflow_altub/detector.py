"""The registered FastFlow + AltUB detector: FastFlow's detector with AltUB's base and schedule."""

from __future__ import annotations

import inspect

import torch

from ..components.training import iter_images, local_seed
from ..fastflow.detector import Fastflow
from ..registry import register_algorithm
from . import INFO
from .model import AltubModel

__all__ = ["FastflowAltub"]


@register_algorithm(INFO)
class FastflowAltub(Fastflow):
    """FastFlow (every hyperparameter of :class:`~algorithms.fastflow.detector.Fastflow`, same
    defaults) with AltUB's learnable base distribution and alternating updates.

    Parameters
    ----------
    base_lr : float
        Learning rate of the base-only steps (VisionAD: 0.05).
    alt_interval : int
        Every ``alt_interval``-th optimisation step updates only the base ``mu``, ``log sigma``
        (the "freezing interval", VisionAD: 5); the other steps update flows and base with
        FastFlow's optimiser. 1 would never train the flows and is refused.
    grad_clip : float
        Gradient-norm clip on the parameters each step updates (VisionAD: 100; 0 disables).
    **fastflow_params
        FastFlow's hyperparameters (``input_size``, ``backbone``, ``lr``, ...).

    Notes
    -----
    The step counter ``steps_done`` is a buffer, so the alternation continues across epochs and
    after save/load. A base step back-propagates only to ``mu`` and ``log sigma`` (which the flows'
    latents do not depend on), so it costs a forward pass and a cheap backward.
    """

    def __init__(self, *, base_lr: float = 0.05, alt_interval: int = 5, grad_clip: float = 100.0, **fastflow_params):
        super().__init__(**fastflow_params)
        if base_lr <= 0 or grad_clip < 0:
            raise ValueError(f"{self.name}: base_lr must be positive and grad_clip non-negative, got {base_lr}, "
                             f"{grad_clip}")  # fmt: skip
        if not isinstance(alt_interval, int) or alt_interval < 2:
            raise ValueError(f"{self.name}: alt_interval must be an integer >= 2, got {alt_interval!r}")
        self.hparams.update(base_lr=base_lr, alt_interval=alt_interval, grad_clip=grad_clip)
        self.model = AltubModel(self.model)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._base_optimizer: torch.optim.Optimizer | None = None

    def _get_base_optimizer(self) -> torch.optim.Optimizer:
        if self._base_optimizer is None:
            self._base_optimizer = torch.optim.Adam(self.model.base.parameters(), lr=self.hparams["base_lr"])
        return self._base_optimizer

    def is_base_step(self, step: int) -> bool:
        """Whether optimisation step ``step`` (0-based, counted over the whole training) is a base-only step."""
        return (step + 1) % self.hparams["alt_interval"] == 0

    def fit_epoch(self, train_loader) -> dict[str, float]:
        """One pass, alternating flow steps and base-only steps (seeded like every gradient epoch)."""
        self.train()
        flow_optimizer, base_optimizer = self._get_optimizer(), self._get_base_optimizer()
        flow_params = [p for group in flow_optimizer.param_groups for p in group["params"]]
        base_params = list(self.model.base.parameters())
        clip = float(self.hparams["grad_clip"])
        device, epoch = self.device, int(self.epochs_done)
        total, batches, base_steps = 0.0, 0, 0
        with local_seed(self.hparams["seed"] * 1_000_003 + epoch, device):
            for images in iter_images(self.name, train_loader, self.input_size, device):
                loss = self.model.negative_log_likelihood(self.model(images))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.name}: the training loss became {loss.item()} (epoch {epoch + 1}); try a lower lr"
                    )
                base_step = self.is_base_step(int(self.steps_done))
                params, optimizer = (base_params, base_optimizer) if base_step else (flow_params, flow_optimizer)
                optimizer.zero_grad(set_to_none=True)
                loss.backward(inputs=params)
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                optimizer.step()
                self.steps_done += 1
                base_steps += int(base_step)
                total += float(loss.detach())
                batches += 1
        self.epochs_done += 1
        return {"loss": total / max(batches, 1), "base_steps": float(base_steps)}


def _signature() -> inspect.Signature:
    """FastFlow's keyword parameters plus AltUB's, for config checks (``RunSpec.check_params``)."""
    own = inspect.signature(FastflowAltub.__init__)
    mine = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    inherited = [p for name, p in inspect.signature(Fastflow.__init__).parameters.items() if name != "self"]
    return own.replace(parameters=[mine[0], *inherited, *mine[1:]])


FastflowAltub.__init__.__signature__ = _signature()

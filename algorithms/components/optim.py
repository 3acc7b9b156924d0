"""Optimisers the publications use that ``torch.optim`` lacks: StableAdamW.

StableAdamW (Wortsman et al., "Stable and low-precision training for large-scale vision-language
models", NeurIPS 2023, Algorithm 2) is AdamW whose step size is divided, per tensor, by
``max(1, RMS(g / (sqrt(v_hat) + eps)))``: the "update clipping" that replaces gradient clipping.
Dinomaly (Guo et al., CVPR 2025) trains with it, INP-Former too. We follow the update rule of
Dinomaly's official ``optimizers/StableAdamW.py`` (guojiajeremy/Dinomaly, Apache-2.0), which is the
rule those results were obtained with; written here from its equations:

for each parameter ``p`` with gradient ``g`` at step ``t`` (from 1)::

    p     <- p * (1 - lr * weight_decay)                 # decoupled decay, with the unclipped lr
    m     <- beta1 m + (1 - beta1) g
    v     <- beta2 v + (1 - beta2) g^2
    v_max <- max(v_max, v)                               # amsgrad only; then v := v_max below
    d     =  sqrt(v) / sqrt(1 - beta2^t) + eps
    s     =  max(1, RMS(g / d) / clip_threshold)         # RMS(x) = |x|_2 / sqrt(numel)
    p     <- p - lr / (1 - beta1^t) / s * m / d

(Wortsman et al. also scale the weight decay by ``1 / s``; the official Dinomaly rule does not.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

__all__ = ["StableAdamW"]


class StableAdamW(torch.optim.Optimizer):
    """AdamW with per-tensor update clipping (see the module docstring for the exact rule).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float
        Learning rate (``>= 0``).
    betas : tuple of float
        Moment coefficients, each in ``[0, 1)``.
    eps : float
        Added to the denominator (``>= 0``).
    weight_decay : float
        Decoupled weight decay coefficient (``>= 0``).
    amsgrad : bool
        Use the running maximum of the second moment (AMSGrad).
    clip_threshold : float
        The RMS above which the step is shrunk (``> 0``; 1 in the paper and in Dinomaly).

    Raises
    ------
    ValueError
        A hyperparameter outside its range; a sparse gradient at ``step``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        clip_threshold: float = 1.0,
    ) -> None:
        if lr < 0:
            raise ValueError(f"StableAdamW: lr must be >= 0, got {lr}")
        if eps < 0:
            raise ValueError(f"StableAdamW: eps must be >= 0, got {eps}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"StableAdamW: betas must be two values in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"StableAdamW: weight_decay must be >= 0, got {weight_decay}")
        if clip_threshold <= 0:
            raise ValueError(f"StableAdamW: clip_threshold must be > 0, got {clip_threshold}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "clip_threshold": clip_threshold,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise ValueError("StableAdamW does not support sparse gradients")
                p.mul_(1.0 - lr * group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                second = exp_avg_sq
                if group["amsgrad"]:
                    torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                    second = state["max_exp_avg_sq"]
                denom = (second.sqrt() / math.sqrt(1.0 - beta2**t)).add_(eps)
                rms = float((grad / denom).norm(2)) / math.sqrt(grad.numel())
                scale = max(1.0, rms / group["clip_threshold"])
                p.addcdiv_(exp_avg, denom, value=-lr / (1.0 - beta1**t) / scale)
        return loss

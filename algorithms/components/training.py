"""Training helpers for the gradient-trained algorithms: local seeding, batch checks, quantiles.

Used by Reverse Distillation, FastFlow and EfficientAD. They make each algorithm deterministic
under its own ``seed`` hyperparameter whatever the caller did to the global random state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["check_images", "gradient_epoch", "iter_images", "local_seed", "quantile"]

#: ``torch.quantile`` refuses inputs with more elements than this.
_TORCH_QUANTILE_LIMIT = 2**24


@contextmanager
def local_seed(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with the torch RNG seeded to ``seed``, restoring the previous state afterwards.

    Parameters
    ----------
    seed : int
        Seed for the CPU generator (and the CUDA generator of ``device`` when it is a GPU).
    device : torch.device or str, optional
        The device whose generator state is saved and restored alongside the CPU one.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) % (2**63))
        yield


def check_images(name: str, images: object, size: int) -> torch.Tensor:
    """Return ``images`` if it is a float ``(B, 3, size, size)`` tensor; raise ``ValueError`` otherwise.

    Parameters
    ----------
    name : str
        Algorithm name used in the error message.
    images : object
        The batch to check.
    size : int
        The algorithm's ``input_size``.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name}: expected a batch tensor (B, 3, {size}, {size}), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
        raise ValueError(
            f"{name}: expected images of shape (B, 3, {size}, {size}) (input_size={size}), got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected float (ImageNet-normalised) images, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name}: got an empty batch")
    return images


def iter_images(name: str, loader: Iterable, size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Yield checked training batches from ``loader`` on ``device``; raise if it yields nothing."""
    seen = False
    for batch in loader:
        seen = True
        if isinstance(batch, tuple | list) and batch:  # tolerate (images, ...) batches
            batch = batch[0]
        yield check_images(name, batch, size).to(device, torch.float32)
    if not seen:
        raise ValueError(f"{name}: the training loader yielded no images")


def quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile`` (linear interpolation) of all elements, also for inputs above its size limit.

    Parameters
    ----------
    values : torch.Tensor
        Any shape; flattened.
    q : float
        Quantile in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        A 0-d tensor on the device of ``values``.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    flat = values.reshape(-1)
    if flat.numel() == 0:
        raise ValueError("cannot take a quantile of an empty tensor")
    if flat.numel() <= _TORCH_QUANTILE_LIMIT:
        return torch.quantile(flat, q)
    # Same definition (linear interpolation between order statistics) via kthvalue.
    position = q * (flat.numel() - 1)
    low = int(position)
    high = min(low + 1, flat.numel() - 1)
    v_low = torch.kthvalue(flat, low + 1).values
    v_high = torch.kthvalue(flat, high + 1).values if high != low else v_low
    return v_low + (v_high - v_low) * (position - low)


def gradient_epoch(detector, train_loader: Iterable, optimizer: torch.optim.Optimizer, loss_fn) -> dict[str, float]:
    """One seeded pass of plain gradient descent: ``loss_fn(images)`` per batch, then a step.

    Shared by the algorithms whose epoch is "minimise one loss over the training images"
    (Reverse Distillation, FastFlow). The epoch's randomness is seeded from the detector's
    ``seed`` and its ``epochs_done`` counter, which this increments. A non-finite loss stops
    training with an error naming the algorithm and the epoch.
    """
    detector.train()
    total, batches = 0.0, 0
    device = detector.device
    epoch = int(detector.epochs_done)
    with local_seed(detector.hparams["seed"] * 1_000_003 + epoch, device):
        for images in iter_images(detector.name, train_loader, detector.input_size, device):
            loss = loss_fn(images)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{detector.name}: the training loss became {loss.item()} (epoch {epoch + 1}); try a lower lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
    detector.epochs_done += 1
    return {"loss": total / max(batches, 1)}

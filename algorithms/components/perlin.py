"""Perlin-noise anomaly masks, seeded by a ``torch.Generator`` (SuperSimpleNet, GLASS, MemSeg).

The synthetic-anomaly methods draw the *shape* of a defect as a thresholded 2-D Perlin noise
(gradient noise; Perlin, "Improving noise", SIGGRAPH 2002). The recipe shared by DRAEM (Zavrtanik
et al., ICCV 2021), SuperSimpleNet (Rolih et al., ICPR 2024, section 3.3), GLASS and MemSeg:

1. per mask, the lattice resolution of each axis is ``2**k`` with ``k`` uniform in ``{0, ..., 5}``,
   drawn independently per axis;
2. the noise is generated on a power-of-two canvas (at least the target size, so the lattice
   divides it) and bilinearly resized to the target, so any output size works;
3. optionally (GLASS, MemSeg) the noise is rotated by a random angle in ``[-90, 90]`` degrees
   (imgaug ``Affine(rotate=(-90, 90))`` in their code; the uncovered corners are 0);
4. the mask is ``noise > threshold`` (0.5 for GLASS and MemSeg; 0.2 for SuperSimpleNet on
   MVTec AD, 0.6 on VisA).

Every random number comes from the ``generator`` argument (on the CPU, whatever the output
device), so masks are reproducible under a seed and equal across devices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["next_power_of_two", "perlin_masks", "perlin_noise"]

#: Largest exponent ``k`` of the lattice resolution ``2**k`` (DRAEM and its successors: 0..5).
MAX_SCALE_EXPONENT = 5


def next_power_of_two(n: int) -> int:
    """The smallest power of two ``>= n`` (``n >= 1``)."""
    if n < 1:
        raise ValueError(f"expected a positive size, got {n}")
    return 1 << (int(n) - 1).bit_length()


def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic interpolant ``6 t^5 - 15 t^4 + 10 t^3``."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def _lattice_noise(size: tuple[int, int], res: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Perlin noise ``(H, W)`` on a canvas whose sides are multiples of the lattice ``res``.

    Unit gradient vectors at uniformly random angles sit on the ``(res_y + 1) x (res_x + 1)``
    lattice; each pixel blends the four corner dot products with the quintic fade. The result
    is scaled by ``sqrt(2)`` so that its range is ``[-1, 1]``.
    """
    (height, width), (res_y, res_x) = size, res
    angles = 2 * math.pi * torch.rand(res_y + 1, res_x + 1, generator=generator, dtype=torch.float64)
    grad_y, grad_x = torch.sin(angles), torch.cos(angles)
    pos_y = torch.arange(height, dtype=torch.float64) * (res_y / height)
    pos_x = torch.arange(width, dtype=torch.float64) * (res_x / width)
    cell_y, cell_x = pos_y.floor().long(), pos_x.floor().long()
    fy, fx = (pos_y - cell_y)[:, None], (pos_x - cell_x)[None, :]
    iy, ix = cell_y[:, None], cell_x[None, :]

    def corner(dy: int, dx: int) -> torch.Tensor:
        return grad_y[iy + dy, ix + dx] * (fy - dy) + grad_x[iy + dy, ix + dx] * (fx - dx)

    wy, wx = _fade(fy), _fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), wx)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), wx)
    return math.sqrt(2.0) * torch.lerp(top, bottom, wy)


def _rotate(noise: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate ``(H, W)`` about its centre (bilinear); positions from outside the canvas are 0."""
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    height, width = noise.shape
    # affine_grid works in normalised coordinates; correct for the aspect ratio of the canvas.
    matrix = torch.tensor(
        [[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]], dtype=noise.dtype
    )[None]
    grid = F.affine_grid(matrix, [1, 1, height, width], align_corners=False)
    return F.grid_sample(noise[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]


def perlin_noise(
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    res: tuple[int, int] | None = None,
    rotate: bool = False,
) -> torch.Tensor:
    """One Perlin noise field ``(height, width)``, float32 on the CPU, values in ``[-1, 1]``.

    Parameters
    ----------
    height, width : int
        Output size in pixels (any positive size: generated on the next power-of-two canvas,
        then bilinearly resized, ``align_corners=False``).
    generator : torch.Generator
        CPU generator supplying every random number (lattice resolution, gradients, angle).
    res : (int, int), optional
        Lattice resolution ``(res_y, res_x)``, each a power of two; drawn as ``2**k``, ``k``
        uniform in ``{0, ..., 5}`` per axis (DRAEM's rule) when omitted. Capped at the canvas side.
    rotate : bool
        Rotate the canvas by a uniform random angle in ``[-90, 90]`` degrees (GLASS, MemSeg).

    Raises
    ------
    ValueError
        On a non-positive size or a lattice resolution that is not a power of two.
    """
    if height < 1 or width < 1:
        raise ValueError(f"perlin_noise: size must be positive, got {height} x {width}")
    canvas = (next_power_of_two(height), next_power_of_two(width))
    if res is None:
        k = torch.randint(0, MAX_SCALE_EXPONENT + 1, (2,), generator=generator)
        res = (2 ** int(k[0]), 2 ** int(k[1]))
    if any(r < 1 or r & (r - 1) for r in res):
        raise ValueError(f"perlin_noise: the lattice resolution must be powers of two, got {res}")
    res = (min(res[0], canvas[0]), min(res[1], canvas[1]))
    noise = _lattice_noise(canvas, res, generator)
    if rotate:
        angle = float(torch.rand((), generator=generator, dtype=torch.float64)) * 180.0 - 90.0
        noise = _rotate(noise, angle)
    noise = noise.to(torch.float32)
    if canvas != (height, width):
        noise = F.interpolate(noise[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return noise


def perlin_masks(
    n: int,
    height: int,
    width: int,
    *,
    threshold: float,
    generator: torch.Generator,
    rotate: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``n`` binary Perlin masks ``(n, 1, height, width)``: 1.0 where the noise exceeds ``threshold``.

    Each mask has its own lattice resolution and gradients (see :func:`perlin_noise`). Higher
    thresholds give smaller blobs; a threshold of 1 or more gives empty masks, below -1 full ones.

    Parameters
    ----------
    n : int
        Number of masks (``>= 0``).
    height, width : int
        Mask size (e.g. the feature-map size for feature-level noise).
    threshold : float
        Binarisation threshold on the noise (values in ``[-1, 1]``).
    generator : torch.Generator
        CPU generator; the same seed gives the same masks.
    rotate : bool
        Random rotation in ``[-90, 90]`` degrees before thresholding.
    device : torch.device or str
        Where the returned float32 masks live.
    """
    if n < 0:
        raise ValueError(f"perlin_masks: n must be >= 0, got {n}")
    if not math.isfinite(threshold):
        raise ValueError(f"perlin_masks: threshold must be finite, got {threshold}")
    masks = torch.zeros(n, 1, height, width)
    for i in range(n):
        masks[i, 0] = (perlin_noise(height, width, generator=generator, rotate=rotate) > threshold).float()
    return masks.to(device)

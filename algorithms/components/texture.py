"""Texture source for image-level synthetic anomalies (GLASS, MemSeg, DRAEM-style synthesis).

The originals paste textures from DTD (the Describable Textures Dataset, Cimpoi et al. 2014,
5,640 images) into Perlin-masked regions of normal images. DTD is optional here:

* ``texture_dir=`` a folder of images (DTD or any other): a random image, resized to the canvas
  and passed through 3 random augmentations out of GLASS's 9 (:func:`augment`; GLASS,
  Chen et al. ECCV 2024, ``datasets/mvtec.py``: contrast, brightness, saturation/hue, horizontal
  and vertical flip, greyscale, autocontrast, equalise, rotation of up to 45 degrees).
* otherwise a **documented fallback** (an algorithm using it records it in ``INFO.deviations``):

  - ``"procedural"``: random coloured stripes, checkers or blobs, built from a sum of random
    oriented sinusoids through a random two-colour palette plus fine noise (the "procedural
    textures" fallback of ``shared/reference/algorithms-next.md`` section 0.2), then augmented;
  - ``"structure"``: MemSeg's second texture source (Yang et al. 2022, section 3.2): the image
    itself (or another image of the same category), augmented, cut into an ``8 x 8`` grid of
    tiles and shuffled (:func:`shuffle_tiles`).

Every random choice comes from the ``torch.Generator`` passed in, so a seeded generator gives
the same textures on every run. Textures are ``(n, 3, size, size)`` float32 RGB in ``[0, 1]``
(not ImageNet-normalised).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["AUGMENTATIONS", "TEXTURE_FALLBACKS", "TextureSource", "augment", "procedural_textures", "shuffle_tiles"]

#: The fallbacks used when no ``texture_dir`` is given.
TEXTURE_FALLBACKS = ("procedural", "structure")

#: GLASS's nine texture augmentations, in its order; :func:`augment` applies ``k`` distinct ones.
AUGMENTATIONS = (
    "contrast",
    "brightness",
    "saturation_hue",
    "hflip",
    "vflip",
    "grayscale",
    "autocontrast",
    "equalize",
    "rotate",
)

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(
        maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return h, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel histogram equalisation on 256 levels (PIL's ``ImageOps.equalize`` idea)."""
    levels = (x * 255).round().long().clamp(0, 255)
    b, c = x.shape[:2]
    flat = levels.reshape(b * c, -1)
    hist = torch.zeros(b * c, 256, dtype=x.dtype).scatter_add_(1, flat, torch.ones_like(flat, dtype=x.dtype))
    cdf = hist.cumsum(dim=1)
    cdf_min = torch.where(hist > 0, cdf, torch.full_like(cdf, float("inf"))).amin(dim=1, keepdim=True)
    total = cdf[:, -1:]
    span = (total - cdf_min).clamp_min(1.0)
    lut = ((cdf - cdf_min) / span).clamp(0, 1)
    constant = total == cdf_min  # a single level: leave the channel unchanged
    out = torch.where(constant, flat.to(x.dtype) / 255, lut.gather(1, flat))
    return out.reshape(x.shape)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    angle = degrees * math.pi / 180
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _apply(name: str, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    if name == "contrast":  # factor in [0.5, 2.0] around the mean grey level
        f = _uniform(n, 0.5, 2.0, generator).view(n, 1, 1, 1)
        return (f * x + (1 - f) * _gray(x).mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    if name == "brightness":  # factor in [0.8, 1.2]
        return (x * _uniform(n, 0.8, 1.2, generator).view(n, 1, 1, 1)).clamp(0, 1)
    if name == "saturation_hue":  # saturation x[0.5, 1.5], hue shift in [-0.5, 0.5] turns
        h, s, v = _rgb_to_hsv(x)
        s = (s * _uniform(n, 0.5, 1.5, generator).view(n, 1, 1)).clamp(0, 1)
        h = (h + _uniform(n, -0.5, 0.5, generator).view(n, 1, 1)) % 1.0
        return _hsv_to_rgb(h, s, v).clamp(0, 1)
    if name == "hflip":
        return x.flip(-1)
    if name == "vflip":
        return x.flip(-2)
    if name == "grayscale":
        return _gray(x).expand_as(x).clone()
    if name == "autocontrast":  # per image and channel, stretch [min, max] to [0, 1]
        lo = x.amin(dim=(2, 3), keepdim=True)
        hi = x.amax(dim=(2, 3), keepdim=True)
        return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), x)
    if name == "equalize":
        return _equalize(x)
    if name == "rotate":  # up to 45 degrees either way, reflection at the border
        return _rotate(x, _uniform(n, -45.0, 45.0, generator)).clamp(0, 1)
    raise ValueError(f"unknown augmentation {name!r}; expected one of {AUGMENTATIONS}")


def augment(
    images: torch.Tensor, generator: torch.Generator, *, k: int = 3, names: tuple[str, ...] = AUGMENTATIONS
) -> torch.Tensor:
    """``k`` distinct random augmentations of ``names`` (one draw for the batch), in random order.

    GLASS draws 3 of its 9 augmentations for each DTD texture; the strengths above follow it
    (contrast 0.5-2, brightness 0.8-1.2, saturation 0.5-1.5, hue +-0.5, rotation +-45 deg).

    Parameters
    ----------
    images : torch.Tensor
        ``(B, 3, H, W)`` float RGB in ``[0, 1]`` (CPU).
    generator : torch.Generator
        Source of every random choice.
    k : int
        Number of augmentations, ``0 <= k <= len(names)``.
    names : tuple of str
        The candidates (a subset of :data:`AUGMENTATIONS`).

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` float in ``[0, 1]`` (a new tensor).

    Raises
    ------
    ValueError
        For a bad shape, ``k`` out of range or an unknown augmentation name.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; expected names from {AUGMENTATIONS}")
    if not 0 <= k <= len(names):
        raise ValueError(f"k must be in [0, {len(names)}], got {k}")
    out = images.float()
    for index in torch.randperm(len(names), generator=generator)[:k].tolist():
        out = _apply(names[index], out, generator)
    return out.clone() if k == 0 else out


def shuffle_tiles(images: torch.Tensor, generator: torch.Generator, *, grid: int = 8) -> torch.Tensor:
    """Cut each image into a ``grid x grid`` array of tiles and shuffle them (MemSeg's structure texture).

    ``(B, C, H, W)`` with ``H`` and ``W`` divisible by ``grid``; one permutation per image.
    Raises ``ValueError`` otherwise.
    """
    if images.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got {tuple(images.shape)}")
    b, c, h, w = images.shape
    if grid < 1 or h % grid or w % grid:
        raise ValueError(f"the image side ({h} x {w}) must be divisible by grid={grid}")
    th, tw = h // grid, w // grid
    tiles = images.reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, c, th, tw)
    order = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(b)])
    shuffled = tiles[torch.arange(b)[:, None], order]
    return shuffled.reshape(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def procedural_textures(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random procedural colour textures ``(n, 3, size, size)`` in ``[0, 1]``.

    Each is a sum of 1-3 oriented sinusoids (wavelengths 4 px to a quarter of the side; one
    alone gives stripes, two crossed ones checkers, three blobs), squashed through a random
    sharpness and mapped onto a random two-colour palette, plus Gaussian grain (sigma 0.03).
    """
    if n < 0 or size < 1:
        raise ValueError(f"need n >= 0 and size >= 1, got {n} and {size}")
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    out = []
    for _ in range(n):
        waves = int(torch.randint(1, 4, (1,), generator=generator))
        field = torch.zeros(size, size)
        for _ in range(waves):
            wavelength = float(_uniform(1, 4.0, max(4.0, size / 4), generator))
            angle = float(_uniform(1, 0.0, math.pi, generator))
            phase = float(_uniform(1, 0.0, 2 * math.pi, generator))
            field += torch.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / wavelength + phase)
        sharpness = float(_uniform(1, 1.0, 8.0, generator))
        t = torch.sigmoid(sharpness * field / waves)  # (size, size) in (0, 1)
        colours = torch.rand(2, 3, generator=generator)
        texture = colours[0].view(3, 1, 1) * (1 - t) + colours[1].view(3, 1, 1) * t
        texture = texture + 0.03 * torch.randn(3, size, size, generator=generator)
        out.append(texture.clamp(0, 1))
    return torch.stack(out) if out else torch.empty(0, 3, size, size)


class TextureSource:
    """Textures for image-level synthetic anomalies: DTD (``texture_dir``) or a documented fallback.

    Parameters
    ----------
    texture_dir : str or Path, optional
        Folder of texture images (searched recursively: ``.png .jpg .jpeg .bmp .tif .tiff .webp``),
        e.g. DTD's ``images/``. ``None`` uses ``fallback``.
    fallback : {"procedural", "structure"}
        What to use without ``texture_dir`` (module docstring).
    augmentations : int
        Random augmentations per texture (GLASS: 3 of 9).
    grid : int
        Tiles per side of the ``"structure"`` fallback (MemSeg: 8).

    Raises
    ------
    FileNotFoundError
        If ``texture_dir`` is not a directory.
    ValueError
        If it holds no images, or ``fallback`` is unknown.
    """

    def __init__(
        self,
        texture_dir: str | Path | None = None,
        *,
        fallback: str = "procedural",
        augmentations: int = 3,
        grid: int = 8,
    ) -> None:
        if fallback not in TEXTURE_FALLBACKS:
            raise ValueError(f"fallback must be one of {TEXTURE_FALLBACKS}, got {fallback!r}")
        if not 0 <= augmentations <= len(AUGMENTATIONS):
            raise ValueError(f"augmentations must be in [0, {len(AUGMENTATIONS)}], got {augmentations}")
        self.fallback = fallback
        self.augmentations = int(augmentations)
        self.grid = int(grid)
        self.files: list[Path] = []
        if texture_dir is not None:
            root = Path(texture_dir).expanduser()
            if not root.is_dir():
                raise FileNotFoundError(f"texture_dir {root} is not a directory")
            self.files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not self.files:
                raise ValueError(f"texture_dir {root} holds no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")

    @property
    def kind(self) -> str:
        """``"folder"`` when textures come from ``texture_dir``, else the fallback's name."""
        return "folder" if self.files else self.fallback

    def _from_folder(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        import cv2

        from ..data import read_image

        batch = []
        for _ in range(n):
            path = self.files[int(torch.randint(len(self.files), (1,), generator=generator))]
            image = cv2.resize(read_image(path), (size, size), interpolation=cv2.INTER_AREA)
            batch.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
        return torch.stack(batch) if batch else torch.empty(0, 3, size, size)

    def sample(
        self, n: int, size: int, generator: torch.Generator, *, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` textures ``(n, 3, size, size)``, float32 RGB in ``[0, 1]``, on the CPU.

        ``images`` (``(B, 3, size, size)`` in ``[0, 1]``, B >= 1) feeds the ``"structure"``
        fallback: texture ``i`` is built from ``images[i % B]``; the other sources ignore it.
        Raises ``ValueError`` when the structure fallback gets no images, or for bad sizes.
        """
        if n < 0 or size < 1:
            raise ValueError(f"need n >= 0 and size >= 1, got {n} and {size}")
        if self.files:
            textures = self._from_folder(n, size, generator)
        elif self.fallback == "procedural":
            textures = procedural_textures(n, size, generator)
        else:
            if images is None or images.ndim != 4 or images.shape[0] < 1 or images.shape[1:] != (3, size, size):
                shape = None if images is None else tuple(images.shape)
                raise ValueError(f"the structure fallback needs images of shape (B, 3, {size}, {size}), got {shape}")
            source = images.detach().float().cpu()[torch.arange(n) % images.shape[0]]
            textures = shuffle_tiles(augment(source, generator, k=self.augmentations), generator, grid=self.grid)
            return textures.clamp(0, 1)
        return augment(textures, generator, k=self.augmentations) if n else textures

"""Decoding images and ground-truth masks, with the rules that keep ground truth what it says.

Images: decoded with OpenCV (``IMREAD_UNCHANGED``), grey repeated to three channels, 16-bit
scaled to 8 bits, alpha dropped, then turned upright by the file's EXIF orientation.

Masks are validated when read, so that no reader's choice silently changes the ground truth:

* **Lossless only.** PNG, BMP, GIF, TIFF (uncompressed, LZW, Deflate, PackBits, CCITT, LZMA,
  Zstandard) or lossless WebP. A JPEG (or JPEG-compressed TIFF, lossy WebP, JPEG 2000) smears the
  defect's edge into grey levels that any threshold turns into a different defect: refused, with
  what was found. The container is told by its content, not by the file name.
* **Two levels.** Background 0 and one defect value: 1, 255, 65535, or any one colour (a
  palette PNG is read through its palette, as a viewer shows it). Grey levels (anti-aliased
  edges, a resized or re-encoded mask) are refused with their count. 1-, 8- and 16-bit masks,
  grey, palette, RGB and float TIFF all follow this one rule.
* **Alpha.** When the alpha channel varies it holds the shape (transparent pixels are
  background); it must itself be two-level. If every visible pixel has the same colour (for
  example a mask drawn only in alpha, over black RGB) the defect is the visible area; otherwise
  it is the visible pixels whose colour is not black. A constant alpha is ignored.
* **Raw VisA class maps.** VisA as distributed stores per-pixel defect-class ids (0 background,
  1..9 defect classes: ``utils/id2class.py`` of amazon-science/spot-diff), so one mask may hold
  several non-zero values; spot-diff's own ``prepare_data.py`` and anomalib binarise them with
  ``!= 0``. With ``class_ids=True`` (the raw VisA layout only) a grey mask whose values are all
  at most :data:`MAX_CLASS_ID` (for a palette image: its indices, as spot-diff reads them), or a
  colour mask with at most that many defect colours, is such a class map: every non-zero pixel
  is defect. Everything else still follows the rules above.
* **Orientation.** Each mask's own EXIF orientation is applied, as for images.

The defect of a mask is every pixel that is not background (``!= 0``), as in the MVTec AD and
VisA tooling; the rules above make that threshold-free reading the only sensible one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError
from .orientation import apply_orientation, exif_orientation, image_orientation

__all__ = [
    "LOSSLESS_TIFF_COMPRESSIONS",
    "MASK_RULE",
    "MASK_SUFFIXES",
    "MAX_CLASS_ID",
    "MaskFile",
    "read_image",
    "read_image_bgr",
    "read_mask",
    "read_mask_file",
]

#: Suffixes looked at when searching for a mask (``.jpg``/``.jpeg`` too: found, then refused
#: with a clear message rather than reported missing).
MASK_SUFFIXES: frozenset[str] = frozenset({".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".jpg", ".jpeg"})
#: TIFF compressions that keep every pixel value (Pillow's names).
LOSSLESS_TIFF_COMPRESSIONS: frozenset[str] = frozenset(
    {
        "raw",
        "tiff_raw_16",
        "tiff_ccitt",
        "group3",
        "group4",
        "tiff_lzw",
        "tiff_adobe_deflate",
        "tiff_deflate",
        "packbits",
        "tiff_thunderscan",
        "lzma",
        "zstd",
    }
)
#: Largest defect-class id of raw VisA masks (spot-diff ``utils/id2class.py``: cashew and
#: pipe_fryum have ids 1..9).
MAX_CLASS_ID = 9
#: The rule quoted in every refusal.
MASK_RULE = "masks must be lossless PNG/BMP/TIFF (or GIF, lossless WebP) with two levels (0 and one defect value)"

_LOSSLESS_FORMATS = frozenset({"PNG", "BMP", "DIB", "GIF"})
_TIFF_COMPRESSION_NAMES = {
    "tiff_raw_16": "raw",
    "tiff_ccitt": "CCITT",
    "group3": "CCITT G3",
    "group4": "CCITT G4",
    "tiff_lzw": "LZW",
    "tiff_adobe_deflate": "Deflate",
    "tiff_deflate": "Deflate",
    "packbits": "PackBits",
    "tiff_thunderscan": "ThunderScan",
    "lzma": "LZMA",
    "zstd": "Zstandard",
    "jpeg": "JPEG",
    "tiff_jpeg": "JPEG",
    "webp": "WebP",
    "tiff_sgilog": "SGI LogLuv",
    "tiff_sgilog24": "SGI LogLuv",
}
_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
}


# -- images -------------------------------------------------------------------------------


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        # Keep the high byte: 0..65535 -> 0..255 (rounded), exact for 8-bit data stored as 16-bit*257.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if float(finite.max(initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    raise DatasetError(f"{path}: unsupported pixel type {array.dtype} (expected 8- or 16-bit images)")


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image as an ``H x W x 3`` uint8 RGB array, upright, at its original size.

    Grey-scale images are repeated over three channels, 16-bit images are scaled to 8 bits, an
    alpha channel is dropped and the EXIF orientation is applied (see
    :mod:`algorithms.data.orientation`).

    Parameters
    ----------
    path : str or Path
        The image file.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, RGB channel order; ``H x W`` is the upright size.

    Raises
    ------
    DatasetError
        If the file is missing or OpenCV cannot decode it.
    """
    return cv2.cvtColor(read_image_bgr(path), cv2.COLOR_BGR2RGB)


def read_image_bgr(path: str | Path) -> np.ndarray:
    """:func:`read_image` in OpenCV's ``B, G, R`` channel order (saves a copy when the caller reorders anyway).

    Parameters
    ----------
    path : str or Path
        The image file.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, BGR channel order; ``read_image(path) == read_image_bgr(path)[..., ::-1]``.

    Raises
    ------
    DatasetError
        If the file is missing or OpenCV cannot decode it.
    """
    path = Path(path)
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # ignores EXIF orientation: applied below
    if array is None:
        reason = "file not found" if not path.exists() else "OpenCV could not decode it"
        raise DatasetError(f"{path}: cannot read image ({reason})")
    array = _to_uint8(array, path)
    if array.ndim == 2:
        bgr = cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    elif array.shape[2] == 1:
        bgr = cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif array.shape[2] == 3:
        bgr = array
    elif array.shape[2] == 4:
        bgr = cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    else:
        raise DatasetError(f"{path}: unsupported number of channels {array.shape[2]} (expected 1, 3 or 4)")
    return apply_orientation(bgr, exif_orientation(path))


# -- masks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskFile:
    """A decoded, validated mask.

    Attributes
    ----------
    mask : numpy.ndarray
        ``(H, W)`` uint8 in {0, 1}, upright (EXIF orientation applied); 1 marks defect pixels.
    format : str
        What the file holds, for messages: ``"a PNG"``, ``"an LZW-compressed TIFF"``...
    stored_hw : tuple of int
        ``(height, width)`` as stored, before orientation.
    orientation : int
        The EXIF orientation applied (1 = none).
    """

    mask: np.ndarray
    format: str
    stored_hw: tuple[int, int]
    orientation: int


def _webp_lossless(path: Path) -> bool:
    """Whether a WebP file holds only lossless (``VP8L``) image data: walks its RIFF chunks."""
    with path.open("rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WEBP":
            return False
        lossless = False
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return lossless
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind == b"VP8 ":
                return False
            if kind == b"VP8L":
                lossless = True
            handle.seek(size + (size & 1), 1)


def _probe(path: Path) -> tuple[str, bool, tuple[int, int], int, str]:
    """``(description, lossless, stored (H, W), orientation, Pillow mode)`` from the header; refuses
    several frames."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            fmt = image.format or "unknown"
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
            compression = image.info.get("compression")
            orientation = image_orientation(image, path)
            mode = image.mode
    except FileNotFoundError:
        raise DatasetError(f"{path}: cannot read mask (file not found)") from None
    except Exception as exc:  # Pillow cannot parse the header (or the file is a decompression bomb)
        raise DatasetError(f"{path}: cannot read mask (not a readable image: {exc})") from exc
    fmt = "JPEG" if fmt == "MPO" else fmt  # a JPEG with extra frames (multi-picture)
    if fmt in _LOSSLESS_FORMATS:
        description, lossless = f"a {fmt}", True
    elif fmt == "JPEG":
        description, lossless = "a JPEG", False
    elif fmt == "TIFF":
        compression = compression or "raw"
        lossless = compression in LOSSLESS_TIFF_COMPRESSIONS
        name = _TIFF_COMPRESSION_NAMES.get(compression, compression)
        article = "an" if name[:1] in "AEIOLMNSX" else "a"  # as spoken: an LZW, an SGI, a JPEG
        description = "an uncompressed TIFF" if compression == "raw" else f"{article} {name}-compressed TIFF"
    elif fmt == "WEBP":
        lossless = _webp_lossless(path)
        description = "a lossless WebP" if lossless else "a lossy WebP"
    else:
        description, lossless = f"a {fmt} file", False
    if _SUFFIX_FORMATS.get(path.suffix.lower(), fmt) != fmt:
        description += f" (named {path.suffix})"
    if frames > 1:
        raise DatasetError(f"{path}: {MASK_RULE}; found {description} with {frames} frames (a mask is one image)")
    return description, lossless, (height, width), orientation, mode


def _palette_indices(path: Path) -> np.ndarray:
    """A palette image's indices, as spot-diff's ``prepare_data.py`` reads raw VisA masks."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("P") if image.mode == "PA" else image)


def _decode(path: Path) -> np.ndarray:
    """Pixels as stored: OpenCV (keeps 16-bit colour, expands palettes to colours), else Pillow."""
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is not None:
        return array
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("P", "PA"):
                image = image.convert("RGBA")
            elif image.mode == "1":
                image = image.convert("L")
            return np.asarray(image)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read mask (the pixel data cannot be decoded: {exc})") from exc


def _format_values(values: np.ndarray) -> str:
    shown = [f"{v:g}" if isinstance(v, float) else str(v) for v in values[:4].tolist()]
    if len(values) > 6:
        return ", ".join(shown) + ", ..., " + ", ".join(str(v) for v in values[-2:].tolist())
    return ", ".join(str(v) for v in values.tolist())


def _count_grey(plane: np.ndarray) -> str:
    values = np.unique(plane)
    return f"{len(values)} grey levels ({_format_values(values)})"


def _count_colours(pixels: np.ndarray) -> str:
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    shown = ", ".join(str(tuple(c)) for c in colours[:4].tolist())
    return f"{len(colours)} colours ({shown}{', ...' if len(colours) > 4 else ''})"


def _describe_levels(array: np.ndarray) -> str:
    """What a decoded mask holds, for a refusal: its grey levels, or its colours."""
    if array.ndim == 3 and (array.shape[2] == 1 or (array.shape[2] >= 3 and _is_grey(array[..., :3]))):
        array = array[..., 0]
    return _count_grey(array) if array.ndim == 2 else _count_colours(array[..., :3])


def _is_grey(colour: np.ndarray) -> bool:
    return bool((colour[..., 0] == colour[..., 1]).all() and (colour[..., 1] == colour[..., 2]).all())


def _binary_plane(plane: np.ndarray, *, class_ids: bool) -> np.ndarray | None:
    """``plane != 0`` if the plane is two-level (or a class map when allowed), else None."""
    defect = plane != 0
    values = plane[defect]
    if values.size == 0 or (values == values[0]).all():
        return defect
    if class_ids and np.issubdtype(plane.dtype, np.integer) and int(values.max()) <= MAX_CLASS_ID:
        return defect
    return None


def _binary_colour(colour: np.ndarray, where: np.ndarray | None, *, class_ids: bool) -> np.ndarray | None:
    """Defect = a non-black colour (among ``where`` pixels), if the colours there are two-level."""
    defect = (colour != 0).any(axis=-1)
    if where is not None:
        defect &= where
    values = colour[defect]
    if values.size == 0 or (values == values[0]).all():
        return defect
    if class_ids and len(np.unique(values, axis=0)) <= MAX_CLASS_ID:
        return defect
    return None


def _defect(array: np.ndarray, path: Path, found: str, *, class_ids: bool) -> np.ndarray:
    """The ``(H, W)`` bool defect area of a decoded mask, or DatasetError if it is not two-level."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        defect = _binary_plane(array, class_ids=class_ids)
        if defect is None:
            raise DatasetError(f"{path}: {MASK_RULE}; found {found} with {_count_grey(array)}")
        return defect
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DatasetError(f"{path}: {MASK_RULE}; found {found} with pixel shape {array.shape[2:]}")
    colour = array[:, :, :3]
    alpha = array[:, :, 3] if array.shape[2] == 4 else None
    if alpha is not None and alpha.min() == alpha.max():
        alpha = None  # a constant alpha says nothing about the shape
    if alpha is None:
        if _is_grey(colour):
            return _defect(colour[:, :, 0], path, found, class_ids=class_ids)
        defect = _binary_colour(colour, None, class_ids=class_ids)
        if defect is None:
            raise DatasetError(f"{path}: {MASK_RULE}; found {found} with {_count_colours(colour)}")
        return defect
    # The alpha channel holds the shape: transparent pixels are background.
    visible = _binary_plane(alpha, class_ids=False)
    if visible is None:
        raise DatasetError(
            f"{path}: {MASK_RULE}; found {found} whose alpha channel (which holds the shape) has "
            f"{_count_grey(alpha)}"
        )
    shown = colour[visible]
    if shown.size == 0 or (shown == shown[0]).all():
        return visible  # one colour where visible (e.g. drawn only in alpha, RGB black): alpha is the mask
    defect = _binary_colour(colour, visible, class_ids=class_ids)
    if defect is None:
        raise DatasetError(f"{path}: {MASK_RULE}; found {found} whose visible pixels have {_count_colours(shown)}")
    return defect


def read_mask_file(path: str | Path, *, class_ids: bool = False) -> MaskFile:
    """Decode and validate one ground-truth mask (the rules are in this module's docstring).

    Parameters
    ----------
    path : str or Path
        The mask file.
    class_ids : bool, default False
        Accept raw VisA class maps (values 1..:data:`MAX_CLASS_ID` as several defect classes).

    Returns
    -------
    MaskFile
        The upright ``(H, W)`` uint8 {0, 1} mask with what was read.

    Raises
    ------
    DatasetError
        Naming the file and what was found: missing or undecodable, lossy (JPEG, lossy WebP,
        JPEG-compressed TIFF), several frames, grey levels, more than one defect colour, or an
        alpha channel with grey levels.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: cannot read mask (file not found)")
    description, lossless, stored_hw, orientation, mode = _probe(path)
    if class_ids and lossless and mode in ("P", "PA"):
        array = _palette_indices(path)  # a class map: the indices are the class ids, whatever the colours
    else:
        array = _decode(path)
    if not lossless:
        raise DatasetError(f"{path}: {MASK_RULE}; found {description} with {_describe_levels(array)}")
    defect = _defect(array, path, description, class_ids=class_ids)
    mask = apply_orientation(defect.view(np.uint8), orientation)
    return MaskFile(mask=mask, format=description, stored_hw=stored_hw, orientation=orientation)


def read_mask(path: str | Path, *, class_ids: bool = False) -> np.ndarray:
    """Decode and validate a ground-truth mask: ``(H, W)`` uint8 in {0, 1}, upright.

    See :func:`read_mask_file` (same parameters and errors) and this module's docstring for the
    rules: lossless, two levels (or a raw VisA class map when ``class_ids``), alpha read when it
    holds the shape, EXIF orientation applied.
    """
    return read_mask_file(path, class_ids=class_ids).mask

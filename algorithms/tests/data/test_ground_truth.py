"""Ground truth is validated when read: every way a mask can be stored either gives the drawn
defect exactly or a DatasetError naming the file and what was found (issue 12)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from algorithms.data import DatasetError, load_category, read_image, read_mask
from algorithms.data.decode import MAX_CLASS_ID
from algorithms.data.orientation import apply_orientation, exif_orientation

from .conftest import coloured, write_image

HW = (24, 32)  # image and mask size, (height, width)


def reference_mask() -> np.ndarray:
    """The drawn defect: a 10 x 12 rectangle, {0, 1}."""
    mask = np.zeros(HW, np.uint8)
    mask[5:15, 8:20] = 1
    return mask


def category_root(tmp_path: Path, write_mask: Callable[[Path], Path], suffix: str = ".png") -> Path:
    """An MVTec-layout category ``mvtec/bottle`` with one anomalous image whose mask ``write_mask`` writes."""
    root = tmp_path / "mvtec"
    base = root / "bottle"
    for i in range(2):
        write_image(base / "train" / "good" / f"{i:03d}.png", coloured(10 + i, HW))
    write_image(base / "test" / "good" / "000.png", coloured(50, HW))
    write_image(base / "test" / "crack" / "003.png", coloured(100, HW))
    mask_dir = base / "ground_truth" / "crack"
    mask_dir.mkdir(parents=True)
    write_mask(mask_dir / f"003_mask{suffix}")
    return root


def square(mask: np.ndarray, size: int = 32) -> np.ndarray:
    """``mask`` as ground_truth(size) gives it: pixel-centre nearest resize to size x size."""
    return cv2.resize(np.ascontiguousarray(mask), (size, size), interpolation=cv2.INTER_NEAREST_EXACT)


def anomalous_mask(root: Path, size: int = 32) -> np.ndarray:
    category = load_category("mvtec/bottle", roots={"mvtec": root})
    truth = category.ground_truth(size=size)
    index = list(truth.ids).index("test/crack/003.png")
    return truth.masks[index]


def pil_save(image: Image.Image, **options) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        image.save(path, **options)
        return path

    return write


def cv2_save(array: np.ndarray) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        assert cv2.imwrite(str(path), array)
        return path

    return write


def _rgba(colour: np.ndarray, alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.dstack([colour, alpha]).astype(np.uint8), "RGBA")


def _accepted_encodings() -> dict[str, tuple[Callable[[Path], Path], str]]:
    m = reference_mask()
    zeros = np.zeros(HW, np.uint8)
    white = np.dstack([m * 255] * 3).astype(np.uint8)
    red = np.zeros((*HW, 3), np.uint8)
    red[..., 0] = m * 200
    two_colour_palette = Image.fromarray(m, "P")
    two_colour_palette.putpalette([0, 0, 0, 30, 200, 90] + [0, 0, 0] * 254)
    inverted_palette = Image.fromarray(white).quantize(2)
    assert inverted_palette.getpalette()[:3] == [255, 255, 255]  # the defect is index 0: read by colour
    frames = Image.fromarray(m * 255)
    return {
        "8-bit 0/255": (cv2_save(m * 255), ".png"),
        "8-bit 0/1": (cv2_save(m), ".png"),
        "8-bit 0/37": (cv2_save(m * 37), ".png"),
        "1-bit": (pil_save(Image.fromarray(m * 255).convert("1")), ".png"),
        "palette from grey": (pil_save(Image.fromarray(m * 255).convert("P")), ".png"),
        "palette, white at index 0": (pil_save(inverted_palette), ".png"),
        "palette of class colours": (pil_save(two_colour_palette), ".png"),
        "grey + alpha, shape in alpha": (pil_save(Image.fromarray(np.dstack([zeros, m * 255]), "LA")), ".png"),
        "RGBA, RGB empty, shape in alpha": (pil_save(_rgba(np.zeros((*HW, 3)), m * 255)), ".png"),
        "RGBA, white RGB everywhere, shape in alpha": (pil_save(_rgba(np.full((*HW, 3), 255), m * 255)), ".png"),
        "RGBA, white on transparent black": (pil_save(_rgba(white, m * 255)), ".png"),
        "RGBA, opaque": (pil_save(_rgba(white, np.full(HW, 255))), ".png"),
        "RGBA, opaque white on black, transparent border": (
            pil_save(_rgba(white, np.pad(np.full((HW[0] - 2, HW[1] - 2), 255), 1))),
            ".png",
        ),
        "RGB red on black": (pil_save(Image.fromarray(red)), ".png"),
        "16-bit 0/65535": (cv2_save(m.astype(np.uint16) * 65535), ".png"),
        "16-bit 0/1": (cv2_save(m.astype(np.uint16)), ".png"),
        "16-bit colour 0/1": (cv2_save(np.dstack([m.astype(np.uint16)] * 3)), ".png"),
        "BMP": (cv2_save(m * 255), ".bmp"),
        "GIF": (pil_save(frames), ".gif"),
        "TIFF uncompressed": (pil_save(frames), ".tif"),
        "TIFF LZW": (pil_save(frames, compression="tiff_lzw"), ".tiff"),
        "TIFF Deflate": (pil_save(frames, compression="tiff_adobe_deflate"), ".tif"),
        "TIFF 16-bit": (cv2_save(m.astype(np.uint16) * 1000), ".tif"),
        "TIFF float32": (cv2_save(m.astype(np.float32)), ".tif"),
        "lossless WebP": (pil_save(Image.fromarray(white), lossless=True), ".webp"),
    }


ACCEPTED = _accepted_encodings()


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_every_lossless_two_level_encoding_gives_the_drawn_defect(tmp_path, name):
    write, suffix = ACCEPTED[name]
    root = category_root(tmp_path, write, suffix)
    np.testing.assert_array_equal(anomalous_mask(root), square(reference_mask()), err_msg=name)


def _jpeg_bytes(array: np.ndarray, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _blurred() -> np.ndarray:
    return cv2.GaussianBlur(reference_mask() * 255, (5, 5), 0)


def _refused_encodings() -> dict[str, tuple[Callable[[Path], Path], str, str]]:
    m = reference_mask()
    white = np.dstack([m * 255] * 3).astype(np.uint8)
    grey_levels = m * 255
    grey_levels[5:8, 8:20] = 128
    red_and_green = np.zeros((*HW, 3), np.uint8)
    red_and_green[5:10, 8:20, 0] = 255
    red_and_green[10:15, 8:20, 1] = 255
    soft_alpha = _rgba(np.zeros((*HW, 3)), _blurred())
    frame = Image.fromarray(m * 255)

    def bytes_to(data: bytes) -> Callable[[Path], Path]:
        def write(path: Path) -> Path:
            path.write_bytes(data)
            return path

        return write

    def two_frames(fmt: str) -> Callable[[Path], Path]:
        def write(path: Path) -> Path:
            frame.save(path, format=fmt, save_all=True, append_images=[Image.fromarray(255 - m * 255)])
            return path

        return write

    return {
        "JPEG": (bytes_to(_jpeg_bytes(m * 255)), ".jpg", r"found a JPEG with \d+ grey levels"),
        "JPEG named .png": (bytes_to(_jpeg_bytes(m * 255)), ".png", r"found a JPEG \(named \.png\) with \d+ grey"),
        "JPEG of a 0/1 mask": (bytes_to(_jpeg_bytes(m, quality=50)), ".jpeg", r"found a JPEG"),
        "lossy WebP": (pil_save(Image.fromarray(white), quality=80), ".webp", "found a lossy WebP"),
        "JPEG-compressed TIFF": (pil_save(frame, compression="jpeg"), ".tif", "found a JPEG-compressed TIFF"),
        "anti-aliased PNG": (cv2_save(_blurred()), ".png", r"found a PNG with \d+ grey levels \(0, "),
        "three grey levels": (cv2_save(grey_levels), ".png", r"found a PNG with 3 grey levels \(0, 128, 255\)"),
        "16-bit grey levels": (cv2_save(_blurred().astype(np.uint16) * 257), ".png", r"PNG with \d+ grey levels"),
        "two defect colours": (pil_save(Image.fromarray(red_and_green)), ".png", r"found a PNG with 3 colours"),
        "soft alpha": (pil_save(soft_alpha), ".png", r"alpha channel \(which holds the shape\) has \d+ grey levels"),
        "animated GIF": (two_frames("GIF"), ".gif", "with 2 frames"),
        "multi-page TIFF": (two_frames("TIFF"), ".tif", "with 2 frames"),
        "not an image": (bytes_to(b"\x89PNG\r\n\x1a\n garbage"), ".png", "cannot read mask"),
    }


REFUSED = _refused_encodings()


@pytest.mark.parametrize("name", list(REFUSED))
def test_lossy_or_grey_level_masks_are_refused_naming_the_file(tmp_path, name):
    write, suffix, message = REFUSED[name]
    root = category_root(tmp_path, write, suffix)
    category = load_category("mvtec/bottle", roots={"mvtec": root})
    with pytest.raises(DatasetError, match=message) as info:
        category.ground_truth()
    assert str(root / "bottle" / "ground_truth" / "crack" / f"003_mask{suffix}") in str(info.value)
    assert "lossless" in str(info.value) or "cannot read" in str(info.value)


def test_the_issue_jpeg_mask_is_refused_instead_of_inflating_the_defect(tmp_path):
    # Issue 12: one 20 x 30 rectangle saved as JPEG quality 75 read as 5,980 pixels in 4 regions.
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 20:50] = 255
    data = _jpeg_bytes(mask, quality=75)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert int((decoded > 0).sum()) > 20 * 30  # what "> 0" made of it
    path = tmp_path / "003_mask.jpg"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as info:
        read_mask(path)
    message = str(info.value)
    assert message.startswith(f"{path}: masks must be lossless PNG/BMP/TIFF")
    n_levels = len(np.unique(decoded))
    assert f"found a JPEG with {n_levels} grey levels" in message


@pytest.mark.parametrize(
    "write",
    [
        cv2_save(np.zeros(HW, np.uint8)),
        pil_save(_rgba(np.zeros((*HW, 3)), np.full(HW, 255))),  # opaque black
        pil_save(_rgba(np.zeros((*HW, 3)), np.zeros(HW))),  # transparent black
        cv2_save(np.zeros(HW, np.uint16)),
    ],
    ids=["black", "opaque black RGBA", "transparent black RGBA", "16-bit black"],
)
def test_an_anomalous_image_with_an_empty_mask_is_refused(tmp_path, write):
    root = category_root(tmp_path, write)
    category = load_category("mvtec/bottle", roots={"mvtec": root})
    with pytest.raises(DatasetError, match="no defect pixel") as info:
        category.ground_truth()
    assert str(root / "bottle" / "test" / "crack" / "003.png") in str(info.value)
    assert "003_mask.png" in str(info.value)


def test_a_defect_only_in_the_alpha_channel_is_read(tmp_path):
    # Issue 12: "the defect drawn only in the alpha channel" used to give an empty mask.
    root = category_root(tmp_path, pil_save(_rgba(np.zeros((*HW, 3)), reference_mask() * 255)))
    np.testing.assert_array_equal(anomalous_mask(root), square(reference_mask()))


def test_a_mask_of_another_size_names_both_sizes(tmp_path):
    root = category_root(tmp_path, cv2_save(np.pad(reference_mask(), ((0, 2), (0, 0))) * 255))
    with pytest.raises(DatasetError) as info:
        anomalous_mask(root)
    message = str(info.value)
    assert "003_mask.png is 32x26 but its image" in message and "003.png is 32x24" in message


def test_a_jpeg_mask_is_found_and_refused_not_reported_missing(tmp_path):
    root = category_root(tmp_path, lambda p: p.write_bytes(_jpeg_bytes(reference_mask() * 255)), ".jpg")
    with pytest.raises(DatasetError, match="found a JPEG"):
        anomalous_mask(root)


def test_a_mask_in_an_unread_format_is_named(tmp_path):
    root = category_root(tmp_path, cv2_save(reference_mask() * 255), ".png")
    mask_dir = root / "bottle" / "ground_truth" / "crack"
    (mask_dir / "003_mask.png").rename(mask_dir / "003_mask.jp2")
    with pytest.raises(DatasetError, match="a format not read as a mask") as info:
        load_category("mvtec/bottle", roots={"mvtec": root})
    assert str(mask_dir / "003_mask.jp2") in str(info.value)


def test_ground_truth_is_read_once_and_read_only(tmp_path):
    root = category_root(tmp_path, cv2_save(reference_mask() * 255))
    category = load_category("mvtec/bottle", roots={"mvtec": root})
    first = category.ground_truth()
    assert category.ground_truth() is first
    assert category.ground_truth(size=64) is not first
    for array in (first.ids, first.labels, first.masks, first.defect_types):
        assert not array.flags.writeable
    with pytest.raises(ValueError):
        first.masks[0, 0, 0] = 1


# -- raw VisA class maps ------------------------------------------------------------------


def _visa_mask(visa_root: Path) -> Path:
    return visa_root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png"


def test_raw_visa_class_maps_are_binarised(visa_root):
    # Raw VisA masks hold defect-class ids (spot-diff id2class: 1..9); several per image.
    mask = np.zeros((16, 18), np.uint8)
    mask[1:4, 2:5] = 1
    mask[8:12, 10:15] = 3
    mask[13:15, 0:2] = MAX_CLASS_ID
    write_image(_visa_mask(visa_root), mask)
    truth = load_category("visa/candle", roots={"visa": visa_root}).ground_truth(size=18)
    index = list(truth.ids).index("Data/Images/Anomaly/001.JPG")
    np.testing.assert_array_equal(truth.masks[index], square((mask > 0).astype(np.uint8), 18))


def test_raw_visa_palette_class_maps_are_read_by_index(visa_root):
    # as spot-diff's prepare_data.py reads them: np.array(Image.open(mask)) != 0, whatever the colours
    ids = np.zeros((16, 18), np.uint8)
    ids[1:4, 2:5] = 2
    ids[8:12, 10:15] = 7
    image = Image.fromarray(ids, "P")
    image.putpalette([v for k in range(256) for v in (40 * k % 256, 200 - k % 200, 17 * k % 256)])
    image.save(_visa_mask(visa_root))
    truth = load_category("visa/candle", roots={"visa": visa_root}).ground_truth(size=18)
    index = list(truth.ids).index("Data/Images/Anomaly/001.JPG")
    np.testing.assert_array_equal(truth.masks[index], square((ids > 0).astype(np.uint8), 18))


@pytest.mark.parametrize("values", [(1, 2, 255), (0, 128, 255), (1, MAX_CLASS_ID + 1)])
def test_raw_visa_masks_with_grey_levels_are_refused(visa_root, values):
    mask = np.zeros((16, 18), np.uint8)
    for k, value in enumerate(values):
        mask[1 + 4 * k : 4 + 4 * k, 2:8] = value
    write_image(_visa_mask(visa_root), mask)
    category = load_category("visa/candle", roots={"visa": visa_root})
    with pytest.raises(DatasetError, match="grey levels") as info:
        category.ground_truth()
    assert str(_visa_mask(visa_root)) in str(info.value)


def test_class_maps_are_only_raw_visa(tmp_path):
    ids = reference_mask().copy()
    ids[10:15] *= 2  # classes 1 and 2 in an MVTec-layout mask: grey levels there
    root = category_root(tmp_path, cv2_save(ids))
    with pytest.raises(DatasetError, match=r"3 grey levels \(0, 1, 2\)"):
        anomalous_mask(root)


# -- EXIF orientation ---------------------------------------------------------------------


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _asymmetric(hw: tuple[int, int] = (6, 9)) -> np.ndarray:
    return (np.arange(hw[0] * hw[1] * 3, dtype=np.uint8).reshape(*hw, 3) * 5) % 251


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientations_match_pillow_exif_transpose(tmp_path, orientation):
    path = tmp_path / "o.png"
    Image.fromarray(_asymmetric()).save(path, exif=_exif(orientation))
    assert exif_orientation(path) == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(apply_orientation(_asymmetric(), orientation), expected)
    np.testing.assert_array_equal(read_image(path), expected)


def _png_with_exif_after_pixels(array: np.ndarray, orientation: int) -> bytes:
    """A PNG whose eXIf chunk follows the image data (allowed by the PNG extensions 1.5.0)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    data = buffer.getvalue()
    payload = _exif(orientation)
    if payload.startswith(b"Exif\x00\x00"):
        payload = payload[6:]
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def test_exif_after_the_pixel_data_of_a_png_is_read(tmp_path):
    path = tmp_path / "late.png"
    path.write_bytes(_png_with_exif_after_pixels(_asymmetric(), 8))
    assert exif_orientation(path) == 8
    assert Image.open(path).getexif().get(0x0112) == 8  # Pillow agrees
    np.testing.assert_array_equal(read_image(path), np.rot90(_asymmetric()))


def _rotated_jpeg_category(tmp_path: Path, mask_writer: Callable[[Path], Path]) -> tuple[Path, np.ndarray]:
    """``mvtec/bottle`` whose anomalous image is a JPEG stored 24 x 32 with EXIF orientation 6 (upright:
    32 x 24); its bright square is where ``reference_mask`` is in the stored pixels."""
    stored = np.full((*HW, 3), 40, np.uint8)
    stored[reference_mask() == 1] = 230

    root = category_root(tmp_path, mask_writer)
    image_path = root / "bottle" / "test" / "crack" / "003.png"
    image_path.unlink()
    Image.fromarray(stored).save(image_path.with_suffix(".jpg"), quality=95, exif=_exif(6))
    return root, stored


def test_exif_rotated_jpeg_and_upright_png_mask_line_up(tmp_path):
    upright_mask = np.rot90(reference_mask(), k=-1)  # orientation 6: rotate 90 degrees clockwise
    root, _stored = _rotated_jpeg_category(tmp_path, cv2_save(np.ascontiguousarray(upright_mask) * 255))
    category = load_category("mvtec/bottle", roots={"mvtec": root})
    truth = category.ground_truth(size=32)
    index = list(truth.ids).index("test/crack/003.jpg")
    image = category.test_images()[category.test_ids.index("test/crack/003.jpg")]
    assert image.shape == (32, 24, 3)  # upright
    np.testing.assert_array_equal(image.mean(axis=2) > 128, upright_mask == 1)  # the defect is under the mask
    np.testing.assert_array_equal(truth.masks[index], square(upright_mask))


def test_a_mask_with_its_own_exif_orientation_lines_up_too(tmp_path):
    root, _ = _rotated_jpeg_category(tmp_path, pil_save(Image.fromarray(reference_mask() * 255), exif=_exif(6)))
    category = load_category("mvtec/bottle", roots={"mvtec": root})
    truth = category.ground_truth(size=32)
    expected = square(np.rot90(reference_mask(), k=-1))
    np.testing.assert_array_equal(truth.masks[list(truth.ids).index("test/crack/003.jpg")], expected)


def test_a_mask_drawn_on_the_stored_pixels_of_a_rotated_image_is_refused(tmp_path):
    root, _ = _rotated_jpeg_category(tmp_path, cv2_save(reference_mask() * 255))
    with pytest.raises(DatasetError) as info:
        load_category("mvtec/bottle", roots={"mvtec": root}).ground_truth()
    message = str(info.value)
    assert "003_mask.png is 32x24 but its image" in message
    assert "is 24x32 (after its EXIF orientation 6; stored as 32x24)" in message


def test_a_run_fails_on_bad_ground_truth_before_training(tmp_path):
    from algorithms.runner import run_category
    from algorithms.runspec import RunSpec

    root = category_root(tmp_path, lambda p: p.write_bytes(_jpeg_bytes(reference_mask() * 255)), ".jpg")
    spec = RunSpec.from_entry({"algorithm": "random", "params": {"input_size": 32}, "categories": ["mvtec/bottle"],
                               "train_time_limit_s": 60, "device": "cpu"})  # fmt: skip
    result = run_category(spec, "mvtec/bottle", roots={"mvtec": root})
    assert result["status"] == "failed"
    assert "DatasetError" in result["error"] and "003_mask.jpg" in result["error"] and "found a JPEG" in result["error"]
    assert result["history"] == []  # nothing was trained or predicted

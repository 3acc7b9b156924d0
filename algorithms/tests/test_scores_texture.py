"""Shared components: the top-k mean image score and the texture source for synthetic anomalies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from algorithms.components.scores import topk_mean
from algorithms.components.texture import (
    AUGMENTATIONS,
    TextureSource,
    augment,
    procedural_textures,
    shuffle_tiles,
)

# -- top-k mean ---------------------------------------------------------------------------------


def test_topk_mean_by_hand():
    maps = torch.tensor([[[1.0, 5.0], [3.0, 2.0]], [[0.0, 0.0], [0.0, 4.0]]])
    torch.testing.assert_close(topk_mean(maps, k=2), torch.tensor([4.0, 2.0]))
    torch.testing.assert_close(topk_mean(maps, k=1), torch.tensor([5.0, 4.0]))  # the maximum
    torch.testing.assert_close(topk_mean(maps, k=4), torch.tensor([2.75, 1.0]))  # the mean
    torch.testing.assert_close(topk_mean(maps, ratio=0.5), torch.tensor([4.0, 2.0]))  # int(0.5 * 4) = 2
    torch.testing.assert_close(topk_mean(maps, ratio=0.1), torch.tensor([5.0, 4.0]))  # never empty


def test_topk_mean_matches_sorting():
    maps = torch.randn(3, 17, 13, generator=torch.Generator().manual_seed(0))
    expected = maps.reshape(3, -1).sort(dim=1, descending=True).values[:, :22].mean(dim=1)
    torch.testing.assert_close(topk_mean(maps, ratio=0.1), expected)  # int(0.1 * 221) = 22


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "exactly one"), ({"k": 2, "ratio": 0.1}, "exactly one"), ({"k": 0}, r"\[1, 4\]"), ({"k": 5}, r"\[1, 4\]"),
     ({"ratio": 0.0}, r"\(0, 1\]"), ({"ratio": 1.5}, r"\(0, 1\]")],
)
def test_topk_mean_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        topk_mean(torch.zeros(2, 2, 2), **kwargs)


# -- textures -----------------------------------------------------------------------------------


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_augmentation_keeps_shape_and_range(name):
    images = torch.rand(2, 3, 16, 16, generator=_generator(1))
    out = augment(images, _generator(), k=1, names=(name,))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, images)  # each one changes a random image


def test_flips_grayscale_and_autocontrast_are_exact():
    images = torch.rand(1, 3, 8, 8, generator=_generator(2)) * 0.5 + 0.25
    g = _generator()
    torch.testing.assert_close(augment(images, g, k=1, names=("hflip",)), images.flip(-1))
    grey = augment(images, g, k=1, names=("grayscale",))
    torch.testing.assert_close(grey[:, 0], 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])
    stretched = augment(images, g, k=1, names=("autocontrast",))
    torch.testing.assert_close(stretched.amin(dim=(2, 3)), torch.zeros(1, 3))
    torch.testing.assert_close(stretched.amax(dim=(2, 3)), torch.ones(1, 3))


def test_equalize_flattens_the_histogram():
    images = 0.2 + 0.2 * torch.rand(1, 3, 64, 64, generator=_generator(3)) ** 2  # dark, narrow, skewed
    out = augment(images, _generator(), k=1, names=("equalize",))
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert abs(float(out.mean()) - 0.5) < 0.06 and float(images.mean()) < 0.3


def test_shuffle_tiles_permutes_whole_tiles():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    out = shuffle_tiles(images, _generator(), grid=4)

    def tiles(x):
        return sorted(tuple(t.flatten().tolist()) for t in x.reshape(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(16, 4))

    for i in range(2):
        assert tiles(out[i, 0]) == tiles(images[i, 0]) and not torch.equal(out[i], images[i])
    with pytest.raises(ValueError, match="divisible"):
        shuffle_tiles(torch.zeros(1, 3, 10, 10), _generator(), grid=8)


def test_procedural_textures_are_seeded_varied_and_in_range():
    a = procedural_textures(4, 32, _generator(5))
    assert a.shape == (4, 3, 32, 32) and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, procedural_textures(4, 32, _generator(5)))
    assert not torch.equal(a, procedural_textures(4, 32, _generator(6)))
    assert float(a.std(dim=(1, 2, 3)).min()) > 0.02  # textured, not flat
    assert float((a[0] - a[1]).abs().mean()) > 0.02  # different from each other


@pytest.mark.parametrize("fallback", ["procedural", "structure"])
def test_fallback_sources_are_deterministic(fallback):
    source = TextureSource(fallback=fallback)
    assert source.kind == fallback
    images = torch.rand(3, 3, 32, 32, generator=_generator(7))
    first = source.sample(5, 32, _generator(8), images=images)
    assert first.shape == (5, 3, 32, 32) and float(first.min()) >= 0 and float(first.max()) <= 1
    torch.testing.assert_close(first, source.sample(5, 32, _generator(8), images=images))


def test_structure_fallback_needs_images():
    with pytest.raises(ValueError, match="structure fallback needs images"):
        TextureSource(fallback="structure").sample(2, 32, _generator())


def test_texture_folder_is_read_resized_and_augmented(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "banded").mkdir()
    for i in range(3):
        image = rng.integers(0, 256, size=(40 + i, 50, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "banded" / f"t{i}.png"), image)
    (tmp_path / "notes.txt").write_text("not an image")
    source = TextureSource(tmp_path, augmentations=0)
    assert source.kind == "folder" and len(source.files) == 3
    plain = source.sample(4, 24, _generator(1))
    assert plain.shape == (4, 3, 24, 24)
    candidates = []
    for path in source.files:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, (24, 24), interpolation=cv2.INTER_AREA)
        candidates.append(torch.from_numpy(small).permute(2, 0, 1) / 255)
    assert all(any(torch.allclose(t, c) for c in candidates) for t in plain)  # each is one of the files
    augmented = TextureSource(tmp_path).sample(4, 24, _generator(1))
    torch.testing.assert_close(augmented, TextureSource(tmp_path).sample(4, 24, _generator(1)))


def test_bad_texture_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        TextureSource(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no images"):
        TextureSource(tmp_path)
    with pytest.raises(ValueError, match="fallback"):
        TextureSource(fallback="dtd")

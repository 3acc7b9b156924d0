"""The torch adapter: normalised (B, 3, S, S) float32 batches, images only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms.data import ImageList, load_category, make_loader
from algorithms.data.loaders import IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parents[3]


def test_batches_are_normalised_float_tensors(mvtec_root):
    category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
    images = category.test_images()
    loader = make_loader(images, size=16, batch_size=4)
    batches = list(loader)
    assert [tuple(b.shape) for b in batches] == [(4, 3, 16, 16), (2, 3, 16, 16)]
    for batch in batches:
        assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32  # no labels, no paths
    # Same as torchvision-style antialiased bilinear resize + ImageNet normalisation, in test_ids order.
    first = torch.from_numpy(images[0]).permute(2, 0, 1)[None].float()
    resized = F.interpolate(first, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (resized / 255 - mean) / std
    assert torch.allclose(batches[0][:1], expected, atol=2.5 / 255 / 0.224)  # uint8 rounding of the resize


def test_native_size_is_exact(mvtec_root):
    images = load_category("mvtec/bottle", roots={"mvtec": mvtec_root}).train_images()
    batch = next(iter(make_loader(images, size=24, batch_size=3)))
    raw = torch.from_numpy(np.stack([images[i] for i in range(3)])).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(batch, (raw - mean) / std, atol=1e-5)


def test_shuffle_is_seeded(mvtec_root):
    images = load_category("mvtec/bottle", roots={"mvtec": mvtec_root}).test_images()

    def order(seed):
        return next(b[:, 0, 0, 0] for b in make_loader(images, size=8, batch_size=6, shuffle=True, seed=seed))

    assert torch.equal(order(3), order(3))
    plain = next(iter(make_loader(images, size=8, batch_size=6)))[:, 0, 0, 0]
    assert sorted(order(3).tolist()) == pytest.approx(sorted(plain.tolist()))


def test_worker_processes_give_the_same_batches(mvtec_root):
    images = load_category("mvtec/grid", roots={"mvtec": mvtec_root}).test_images()
    serial = torch.cat(list(make_loader(images, size=12, batch_size=2)))
    parallel = torch.cat(list(make_loader(images, size=12, batch_size=2, num_workers=2)))
    assert torch.equal(serial, parallel)


def test_bad_arguments(mvtec_root):
    images = load_category("mvtec/bottle", roots={"mvtec": mvtec_root}).train_images()
    with pytest.raises(TypeError, match="must be an ImageList"):
        make_loader([np.zeros((4, 4, 3), np.uint8)], size=8, batch_size=1)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        make_loader(images, size=0, batch_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(images, size=8, batch_size=True)
    with pytest.raises(ValueError, match="empty"):
        make_loader(ImageList([]), size=8, batch_size=1)


def test_package_import_does_not_import_torch():
    code = "import sys, algorithms.data; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_batches_do_not_depend_on_the_number_of_decoding_threads(mvtec_root, monkeypatch):
    from algorithms.data import loaders

    images = load_category("mvtec/bottle", roots={"mvtec": mvtec_root}).test_images()
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(loaders, "_THREADS", threads)
        results.append(torch.cat(list(make_loader(images, size=20, batch_size=5))))
    assert torch.equal(results[0], results[1])
    # Each row is its own image (RGB order, normalised), whatever thread filled it.
    expected = torch.stack([loaders.resize_image(images[i], 20) for i in range(len(images))]).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(results[0], (expected - mean) / std, atol=1e-5)


def test_unreadable_image_in_a_threaded_batch_names_the_file(mvtec_root, monkeypatch):
    from algorithms.data import DatasetError, loaders

    category = load_category("mvtec/bottle", roots={"mvtec": mvtec_root})
    broken = mvtec_root / "bottle" / "train" / "good" / "001.png"
    broken.write_bytes(b"not a png")
    monkeypatch.setattr(loaders, "_THREADS", 2)
    with pytest.raises(DatasetError, match=r"001\.png: cannot read image"):
        list(make_loader(category.train_images(), size=8, batch_size=3))

"""CDO: shapes and parameter counts at the publication size, the OOM loss by hand, the noise generator."""

from __future__ import annotations

import pytest
import torch

from algorithms.cdo.model import CDOModel, cdo_loss, discrepancy, noise_rectangle_masks, paste_noise
from algorithms.registry import create_algorithm


def _wide_resnet50_2_layers123_parameters() -> int:
    """Trainable parameters of WRN50-2 up to layer3 (He et al. 2016, Table 1; Zagoruyko & Komodakis
    2016: bottleneck inner width doubled), counted from the architecture: stem 7x7 conv 3->64 + BN,
    then stages of (3, 4, 6) bottleneck blocks with outputs 256/512/1024 and inner widths 128/256/512
    (1x1, 3x3, 1x1 convolutions without bias, each + BN of 2 parameters per channel; the first block
    of each stage has a 1x1 projection shortcut + BN)."""
    total = 3 * 64 * 7 * 7 + 2 * 64
    in_ch = 64
    for blocks, width, out in ((3, 128, 256), (4, 256, 512), (6, 512, 1024)):
        for b in range(blocks):
            total += in_ch * width + 2 * width + 9 * width * width + 2 * width + width * out + 2 * out
            if b == 0:
                total += in_ch * out + 2 * out
            in_ch = out
    return total


def test_publication_networks_shapes_and_trainable_parameters():
    torch.manual_seed(0)
    model = CDOModel(
        backbone="wide_resnet50_2.tv_in1k", layers=("layer1", "layer2", "layer3"), pretrained=False, weights_path=None
    )
    assert model.expert.channels == model.apprentice.channels == [256, 512, 1024]
    trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert trainable(model.expert) == 0
    assert trainable(model.apprentice) == _wide_resnet50_2_layers123_parameters()
    with torch.no_grad():
        expert, apprentice = model(torch.randn(1, 3, 256, 256))
        assert [tuple(f.shape) for f in expert] == [(1, 256, 64, 64), (1, 512, 32, 32), (1, 1024, 16, 16)]
        assert [tuple(f.shape) for f in apprentice] == [tuple(f.shape) for f in expert]
        distances = discrepancy(expert, apprentice)
    assert [tuple(d.shape) for d in distances] == [(1, 64, 64)] * 3


def test_discrepancy_is_the_squared_distance_of_normalised_features():
    e = torch.tensor([3.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    a = torch.tensor([0.0, 5.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    (d,) = discrepancy([e], [a])
    torch.testing.assert_close(d, torch.full((1, 2, 2), 2.0))  # |(1,0) - (0,1)|^2
    (same,) = discrepancy([e], [2 * e])
    torch.testing.assert_close(same, torch.zeros(1, 2, 2))


def test_oom_loss_on_a_hand_computed_example():
    d = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2); position (1, 1) is synthetic
    mask = torch.zeros(1, 1, 4, 4)
    mask[:, :, 2:, 2:] = 1.0  # nearest-resized to 2x2: only (1, 1)
    # normal d = 1, 2, 3, mean 2: w = 0.25, 1, 2.25, sum w d = 9; synthetic d = 4, mean 4: w = 1
    # B (9 - 4) / (3.5 + 1) = 10 / 9
    torch.testing.assert_close(cdo_loss([d], mask), torch.tensor(10 / 9))
    torch.testing.assert_close(cdo_loss([d], mask, oom=False), torch.tensor((6 - 4) / 4))
    # summed over scales; scaled by the batch size
    torch.testing.assert_close(cdo_loss([d, d], mask), torch.tensor(20 / 9))
    torch.testing.assert_close(cdo_loss([d.expand(2, 2, 2)], mask.expand(2, 1, 4, 4)), torch.tensor(20 / 9))
    # no synthetic position (mean 2.5): w = d^2 / 6.25, so sum w d / sum w = sum d^3 / sum d^2 = 100 / 30
    torch.testing.assert_close(cdo_loss([d], None), torch.tensor(100 / 30))
    # weights are detached: the gradient is w / sum w = d^2 / 30
    d = d.clone().requires_grad_(True)
    cdo_loss([d], None).backward()
    torch.testing.assert_close(d.grad, torch.tensor([[[1.0, 4.0], [9.0, 16.0]]]) / 30)


def test_noise_rectangles_are_seeded_and_within_the_published_ranges():
    a = noise_rectangle_masks(64, 256, generator=torch.Generator().manual_seed(3))
    b = noise_rectangle_masks(64, 256, generator=torch.Generator().manual_seed(3))
    c = noise_rectangle_masks(64, 256, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (64, 1, 256, 256) and set(a.unique().tolist()) <= {0.0, 1.0}
    area = a.sum(dim=(1, 2, 3))
    assert (area == 0).any()  # zero rectangles happen (k uniform in 0..4)
    # a single rectangle covers between (2 * 6)^2 and (2 * 24)^2 pixels (half-extents in [256/40, 256/10))
    single = noise_rectangle_masks(200, 256, generator=torch.Generator().manual_seed(0), max_rectangles=1)
    areas = single.sum(dim=(1, 2, 3))
    areas = areas[areas > 0]
    assert areas.min() >= 12 * 12 and areas.max() <= 46 * 46
    images = torch.zeros(2, 3, 256, 256)
    one = paste_noise(images, a[:2], generator=torch.Generator().manual_seed(5))
    two = paste_noise(images, a[:2], generator=torch.Generator().manual_seed(5))
    assert torch.equal(one, two)
    assert torch.equal(one * (1 - a[:2]), images)  # only the rectangles change
    unnormalised = one * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) + torch.tensor(
        [0.485, 0.456, 0.406]
    ).view(1, 3, 1, 1)
    inside = unnormalised[a[:2].expand(2, 3, 256, 256) > 0]
    assert inside.min() >= -1e-6 and inside.max() <= 1 + 1e-6  # uniform RGB noise in [0, 1]


def test_the_first_epoch_trains_the_apprentice_only_and_decays_the_lr():
    model = create_algorithm("cdo", tiny=True)
    expert = [p.clone() for p in model.model.expert.parameters()]
    apprentice = [p.clone() for p in model.model.apprentice.parameters()]
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    logs = model.fit_epoch([images])
    assert torch.isfinite(torch.tensor(logs["loss"]))
    assert all(torch.equal(a, b) for a, b in zip(expert, model.model.expert.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(apprentice, model.model.apprentice.parameters()))
    assert model._optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.95)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit_epoch([images[:1]])


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="lr_decay"):
        create_algorithm("cdo", tiny=True, lr_decay=0.0)
    with pytest.raises(ValueError, match="input_size"):
        create_algorithm("cdo", tiny=True, input_size=16)

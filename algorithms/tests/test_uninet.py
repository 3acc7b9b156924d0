"""UniNet: shapes and trainable parameters at the publication size, losses, DFS and score by hand, training.

Architecture source for the parameter counts: Wei et al., CVPR 2025, official code
``pangdatangtt/UniNet`` @ ``7b3469f``: ``UniNet_lib/resnet.py`` (``wide_resnet50_2`` teacher;
``BN_layer`` with 3 ``AttnBottleneck`` blocks, ``halve=2``, ``width_per_group=128``, after
``merge_kernel``), ``UniNet_lib/de_resnet.py`` (``de_wide_resnet50_2``: RD4AD's decoder, Deng & Li
2022), ``UniNet_lib/DFS.py`` (thetas of 256, 512 and 1024 channels). Counted here from those
layouts, independently of our modules; the official modules' unused parameters (``BN_layer.conv4``
/ ``bn4``, each block's ``bn7``, the decoder's ``fc``) are excluded.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from algorithms.registry import create_algorithm
from algorithms.uninet.detector import UniNet
from algorithms.uninet.model import (
    DomainFeatureSelection,
    UniNetModel,
    pair_maps,
    uninet_loss,
    uninet_pair_loss,
    weighted_decision_score,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _bn(c: int) -> int:
    return 2 * c


def _wrn50_2_layers123() -> int:
    """WRN50-2 up to layer3 (He et al. 2016 Table 1, inner widths doubled): stem 7x7 conv + BN, then
    (3, 4, 6) bottleneck blocks 1x1 -> 3x3 -> 1x1 with outputs 256/512/1024, inner 128/256/512, and a
    1x1 projection + BN on each stage's first block. No biases."""
    total = 3 * 64 * 49 + _bn(64)
    c_in = 64
    for blocks, width, out in ((3, 128, 256), (4, 256, 512), (6, 512, 1024)):
        for b in range(blocks):
            total += c_in * width + _bn(width) + 9 * width * width + _bn(width) + width * out + _bn(out)
            total += (c_in * out + _bn(out)) if b == 0 else 0
            c_in = out
    return total


def _uninet_bottleneck() -> int:
    """Official ``BN_layer``: fusion 3x3 s2 convs 256->512->1024 (+BN each) and 512->1024 (+BN), then 3
    split-branch blocks (in 3072, then 2048; out 2048; width 512 * 128 / 64 = 1024): per branch
    3x3 (in/2 -> 512) + BN + 3x3 (512 -> 512) + BN, the second branch with conv biases (merge_kernel),
    1x1 (1024 -> 2048) + BN, and a 1x1 s2 projection (3072 -> 2048) + BN on the first block."""
    total = 9 * 256 * 512 + _bn(512) + 9 * 512 * 1024 + _bn(1024) + 9 * 512 * 1024 + _bn(1024)
    half = 512
    for c_in in (3072, 2048, 2048):
        branch = 9 * (c_in // 2) * half + _bn(half) + 9 * half * half + _bn(half)
        total += 2 * branch + 2 * half + 1024 * 2048 + _bn(2048)
        total += (c_in * 2048 + _bn(2048)) if c_in == 3072 else 0
    return total


def _de_wide_resnet50_2() -> int:
    """RD4AD's ``de_wide_resnet50_2``: three stages (2048 -> 1024, 3 blocks; 1024 -> 512, 4; 512 -> 256, 6)
    of wide bottleneck blocks (inner 512/256/128). The first block of a stage up-samples: its middle
    conv is a 2x2 stride-2 transposed conv and its shortcut a 2x2 stride-2 transposed conv + BN."""
    total = 0
    for c_in, out, blocks, width in ((2048, 1024, 3, 512), (1024, 512, 4, 256), (512, 256, 6, 128)):
        for b in range(blocks):
            middle = (4 if b == 0 else 9) * width * width
            total += c_in * width + _bn(width) + middle + _bn(width) + width * out + _bn(out)
            total += (4 * c_in * out + _bn(out)) if b == 0 else 0
            c_in = out
    return total


@pytest.fixture(scope="module")
def publication_model() -> UniNetModel:
    torch.manual_seed(0)
    return UniNetModel(
        backbone="wide_resnet50_2.tv_in1k", layers=("layer1", "layer2", "layer3"), pretrained=False, weights_path=None
    )


def test_publication_trainable_parameters_per_module(publication_model):
    model = publication_model
    assert _count(model.source) == 0
    assert _count(model.target) == _wrn50_2_layers123() == 24_862_528  # torchvision: 68,883,240 - layer4 - fc
    assert _count(model.bottleneck) == _uninet_bottleneck()
    assert _count(model.student) == _de_wide_resnet50_2()
    assert _count(model.dfs) == 256 + 512 + 1024
    student_side, target = model.trainable_groups()
    assert sum(p.numel() for p in student_side) == _uninet_bottleneck() + _de_wide_resnet50_2() + 1792
    assert sum(p.numel() for p in target) == _wrn50_2_layers123()


def test_publication_shapes_and_cross_pairing(publication_model):
    model = publication_model.eval()
    images = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.target.model.layer1[0].conv1.weight.mul_(1.5)  # make the two teachers differ
        source, target = model.source(images), model.target(images)
        levels = [(1, 256, 64, 64), (1, 512, 32, 32), (1, 1024, 16, 16)]
        assert [tuple(f.shape) for f in source] == [tuple(f.shape) for f in target] == levels
        embedding = model.bottleneck([torch.cat([t, s]) for t, s in zip(target, source)])
        assert tuple(embedding.shape) == (2, 2048, 8, 8)
        teachers, students = model(images)
        assert [tuple(f.shape) for f in teachers] == [tuple(f.shape) for f in students] == levels * 2
        # in eval mode the bottleneck and student act per image: the first three student maps are the
        # target teacher's reconstruction (compared with the source teacher), the last three the source's
        from_target = model.student(model.bottleneck(target))
        from_source = model.student(model.bottleneck(source))
        for a, b in zip(students, [*from_target, *from_source]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        for a, b in zip(teachers, [*source, *target]):
            torch.testing.assert_close(a, b)
        model.target.model.layer1[0].conv1.weight.div_(1.5)
        maps = pair_maps(teachers, students)
        assert [tuple(m.shape) for m in maps] == [(1, 64, 64), (1, 32, 32), (1, 16, 16)] * 2
        summed = model.anomaly_map(maps, 256)
        assert tuple(summed.shape) == (1, 256, 256)


def test_publication_defaults():
    defaults = {k: v.default for k, v in inspect.signature(UniNet.__init__).parameters.items()}
    assert defaults["backbone"] == "wide_resnet50_2.tv_in1k"  # torchvision V1, the official weights
    assert (defaults["input_size"], defaults["temperature"], defaults["lambda_weight"], defaults["margin"]) == (
        256, 2.0, 0.7, 1.0
    )  # fmt: skip
    assert (defaults["lr"], defaults["teacher_lr"], defaults["weight_decay"], tuple(defaults["betas"])) == (
        5e-3, 1e-6, 1e-5, (0.9, 0.999)
    )  # fmt: skip
    assert (defaults["alpha"], defaults["beta"], defaults["sigma"], defaults["bottleneck_blocks"]) == (
        0.01, 3e-5, 4.0, 3
    )  # fmt: skip
    assert defaults["feature_selection"] is True and defaults["pretrained"] is True


def test_pair_loss_on_hand_computed_examples():
    # aligned: positions (1, 0) and (0, 1) in both; T = 1: p_ii = e / (e + 1)
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    p = math.e / (math.e + 1)
    expected = 0.7 * 0.0 + 0.3 * -math.log(p) + (1 - p)
    torch.testing.assert_close(uninet_pair_loss(s, s.clone(), temperature=1.0), torch.tensor(expected))
    # student (1, 0) at both positions (scaled by 3: normalised away), teacher (1, 0), (0, 1); T = 2
    student = 3 * torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 2, 1, 2)
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    z = math.exp(0.5) + 1  # both rows: logits (1/2, 0)
    p1, p2 = math.exp(0.5) / z, 1 / z
    cos_loss = (0 + 1) / 2
    contrastive = -(math.log(p1) + math.log(p2)) / 2
    margin = ((1 - p1) + (1 - p2)) / 2
    expected = 0.7 * cos_loss + 0.3 * contrastive + margin
    torch.testing.assert_close(uninet_pair_loss(student, teacher, temperature=2.0), torch.tensor(expected))
    # lambda and margin: lambda = 1 keeps the cosine term; margin 0 removes the hinge
    torch.testing.assert_close(
        uninet_pair_loss(student, teacher, temperature=2.0, lambda_weight=1.0, margin=0.0), torch.tensor(cos_loss)
    )
    # six pairs are summed; a batch of two equal images gives the same mean
    torch.testing.assert_close(uninet_loss([student] * 6, [teacher] * 6, temperature=2.0), torch.tensor(6 * expected))
    torch.testing.assert_close(
        uninet_pair_loss(student.expand(2, 2, 1, 2), teacher.expand(2, 2, 1, 2), temperature=2.0),
        torch.tensor(expected),
    )


def test_pair_loss_keeps_the_official_epsilons_at_low_temperature():
    # T = 0.1 and a student orthogonal to its positive: p_ii = e^0 / (e^0 + e^10) ~ 4.5e-5 (no clamp yet);
    # the +1e-8 of the official code bound -log p at -log(1e-8) when p underflows
    student = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 2, 1, 2)  # (0,1) and (1,0)
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)  # (1,0) and (0,1)
    p = 1 / (1 + math.exp(10))
    expected = 0.7 * 1.0 + 0.3 * -math.log(p + 1e-8) + (1 - p)
    torch.testing.assert_close(uninet_pair_loss(student, teacher, temperature=0.1), torch.tensor(expected))


def test_feature_selection_by_hand_and_its_weights_train():
    dfs = DomainFeatureSelection([1])
    teacher = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)  # softmax (1/4, 3/4), mean ln(3)/2
    student = torch.tensor([2.0, 4.0]).view(1, 1, 1, 2)
    (out,) = dfs([student], [teacher])
    factor = 1 + math.log(3.0) / 2  # theta = min(sigmoid(0) + 0.5, 1) = 1
    torch.testing.assert_close(out, torch.tensor([2 * 0.25 * factor, 4 * 0.75 * factor]).view(1, 1, 1, 2))
    # the level's theta is shared by its two pairs (index modulo the number of levels)
    dfs3 = DomainFeatureSelection([1, 1, 1])
    with torch.no_grad():
        dfs3.weights[1].fill_(-3.0)
    theta = torch.sigmoid(torch.tensor(-3.0)) + 0.5
    outs = dfs3([student] * 6, [teacher] * 6)
    for i in (1, 4):
        torch.testing.assert_close(
            outs[i], student * torch.tensor([0.25, 0.75]).view(1, 1, 1, 2) * (theta + factor - 1)
        )
    # theta sits at the kink of the min at initialisation; its gradient is the one from below, not zero
    dfs([student], [teacher])[0].sum().backward()
    assert dfs.weights[0].grad is not None and float(dfs.weights[0].grad.abs().sum()) > 0
    with torch.no_grad():
        dfs.weights[0].fill_(5.0)
    assert float(dfs.theta(0).detach().max()) == 1.0  # never above 1


def test_weighted_decision_score_by_hand_and_against_the_official_numpy_mechanism():
    summed = torch.arange(16.0).view(1, 4, 4)
    maps = [torch.ones(1, 2, 2)] * 5 + [torch.full((1, 2, 2), 5.0)]  # maxima 1,1,1,1,1,5: only the 5 is kept
    # w = alpha * 5 = 0.5 -> k = 8: mean of 8..15
    torch.testing.assert_close(
        weighted_decision_score(maps, summed, alpha=0.1, beta=1e-3, sigma=0), torch.tensor([11.5])
    )
    # the floor beta: w = 0.25 -> k = 4
    torch.testing.assert_close(
        weighted_decision_score(maps, summed, alpha=0.0, beta=0.25, sigma=0), torch.tensor([13.5])
    )
    # all maxima equal: no probability exceeds the mean -> w = beta
    equal = [torch.ones(1, 2, 2)] * 6
    torch.testing.assert_close(
        weighted_decision_score(equal, summed, alpha=0.1, beta=0.25, sigma=0), torch.tensor([13.5])
    )
    # k never below 1 (the maximum)
    torch.testing.assert_close(
        weighted_decision_score(maps, summed, alpha=0.0, beta=1e-6, sigma=0), torch.tensor([15.0])
    )

    # against the official mechanism (``UniNet_lib/mechanism.py``) written with numpy and scipy
    generator = torch.Generator().manual_seed(0)
    pair = [torch.rand(3, 16, 16, generator=generator) * (1 + j) for j in range(3)]
    pair += [torch.rand(3, 8, 8, generator=generator) * 2 for _ in range(3)]
    big = torch.rand(3, 256, 256, generator=generator) * 3
    ours = weighted_decision_score(pair, big)
    for b in range(3):
        maxima = np.array([float(p[b].max()) for p in pair])
        probs = np.exp(maxima) / np.exp(maxima).sum()
        weight = max(np.mean([m for m, q in zip(maxima, probs) if q > probs.mean()]) * 0.01, 3e-5)
        top_k = int(256 * 256 * weight)
        smoothed = gaussian_filter(big[b].numpy(), sigma=4)
        expected = np.sort(smoothed.reshape(-1))[::-1][:top_k].mean()
        assert abs(float(ours[b]) - expected) < 1e-5


def test_training_moves_the_target_teacher_not_the_source_and_is_seeded(tmp_path):
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    loader = [images[:4], images[4:]]
    model = create_algorithm("uninet", tiny=True)
    source_state = {k: v.clone() for k, v in model.model.source.state_dict().items()}
    model.fit_epoch(loader)  # calibrates the random source teacher's BatchNorm first (bn_calibration)
    calibrated = {k: v.clone() for k, v in model.model.source.state_dict().items()}
    assert not all(torch.equal(source_state[k], calibrated[k]) for k in source_state)
    target_before = {k: v.clone() for k, v in model.model.target.state_dict().items()}
    model.fit_epoch(loader)
    assert all(torch.equal(calibrated[k], v) for k, v in model.model.source.state_dict().items())
    target_after = model.model.target.state_dict()
    moved = [k for k in target_before if not torch.equal(target_before[k], target_after[k])]
    assert any(k.endswith("running_mean") for k in moved)  # train mode: its BatchNorm statistics move
    assert any(k.endswith("conv1.weight") for k in moved)  # and its weights (lr 1e-6)
    drift = model.model.target.model.conv1.weight.detach() - calibrated["model.conv1.weight"]
    assert float(drift.abs().max()) < 1e-4
    assert any(float(w.detach().abs().max()) > 0 for w in model.model.dfs.weights)  # DFS trains
    # seeded: the same seed gives the same weights and predictions, another seed others
    again = create_algorithm("uninet", tiny=True)
    other = create_algorithm("uninet", tiny=True, seed=1)
    for m in (again, other):
        m.fit_epoch(loader)
        m.fit_epoch(loader)
    test = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(model.predict(test).scores, again.predict(test).scores)
    assert not np.array_equal(model.predict(test).scores, other.predict(test).scores)


def test_feature_selection_and_temperature_switches():
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with_dfs = create_algorithm("uninet", tiny=True)
    without = create_algorithm("uninet", tiny=True, feature_selection=False)
    cold = create_algorithm("uninet", tiny=True, temperature=0.1)
    for m in (with_dfs, without, cold):
        m.train()
    with torch.no_grad():
        a, b, c = with_dfs.loss(images), without.loss(images), cold.loss(images)
        teachers, students = without.model(images)
        torch.testing.assert_close(b, uninet_loss(students, teachers, temperature=2.0))
    assert float(a) != float(b) and float(b) != float(c)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="input_size"):
        create_algorithm("uninet", tiny=True, input_size=48)
    with pytest.raises(ValueError, match="temperature"):
        create_algorithm("uninet", tiny=True, temperature=0.0)
    with pytest.raises(ValueError, match="teacher_lr"):
        create_algorithm("uninet", tiny=True, teacher_lr=-1.0)
    with pytest.raises(ValueError, match="beta"):
        create_algorithm("uninet", tiny=True, beta=0.0)
    with pytest.raises(ValueError, match="3 teacher levels"):
        create_algorithm("uninet", tiny=True, layers=["layer2", "layer3"])

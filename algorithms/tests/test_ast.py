"""AST: the EfficientNet tap, shapes at 768 px, parameter counts, the two losses on hand examples,
the teacher flow's invertibility and log-determinant, the two-phase schedule and the map/score rule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from algorithms.ast.model import (
    AstStudent,
    AstTeacher,
    EfficientNetTap,
    GatedConvSubnet,
    distillation_loss,
    distillation_map,
    teacher_nll,
)
from algorithms.components.feature_extractor import PretrainedWeightsUnavailable
from algorithms.components.positional import positional_encoding_2d
from algorithms.registry import create_algorithm


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _teacher_parameters(channels=304, cond=32, hidden=64, kernels=(3, 3, 3, 5)) -> int:
    # Official model.py / freia_funcs.py (facts in algorithms-next.md A4): per coupling two subnets
    # F_conv(in = C/2 + P, out = 2 * C/2): Conv(in -> hidden, k) + bias, ReLU, Conv(hidden -> out, k) + bias,
    # times one learned scalar gamma; the permutations have no parameters.
    half = channels // 2
    per_subnet = [(half + cond) * hidden * k * k + hidden + hidden * 2 * half * k * k + 2 * half + 1 for k in kernels]
    return 2 * sum(per_subnet)


def _student_parameters(channels=304, cond=32, hidden=1024, blocks=4) -> int:
    # Official model.py Student / res_block: Conv3x3(C + P -> hidden) + bias; per residual block two
    # Conv3x3(hidden -> hidden) + bias and two BatchNorm2d (weight, bias); Conv3x3(hidden -> C) + bias.
    # (The official Student also declares a scalar gamma it never uses: 81,421,617 there.)
    conv_in = (channels + cond) * hidden * 9 + hidden
    block = 2 * (hidden * hidden * 9 + hidden) + 2 * 2 * hidden
    conv_out = hidden * channels * 9 + channels
    return conv_in + blocks * block + conv_out


@pytest.fixture(scope="module")
def b5_tap():
    torch.manual_seed(0)
    return EfficientNetTap("tf_efficientnet_b5.aa_in1k", 5, pretrained=False)


def test_publication_shapes_and_parameter_counts(b5_tap):
    # EfficientNet-B5 at 768 px, output of block 35 (the last of stage 6): 304 channels at stride 32.
    with torch.no_grad():
        features = b5_tap(torch.rand(1, 3, 768, 768))
    assert features.shape == (1, 304, 24, 24)
    assert b5_tap.channels == 304 and sum(len(stage) for stage in b5_tap.blocks) == 36
    assert _trainable(b5_tap) == 0

    torch.manual_seed(0)
    teacher = AstTeacher(304, cond_channels=32, hidden=64, kernel_sizes=(3, 3, 3, 5), clamp=1.9)
    student = AstStudent(304, cond_channels=32, hidden=1024, blocks=4)
    cond = positional_encoding_2d(32, 24, 24).unsqueeze(0)
    with torch.no_grad():
        z, log_det = teacher(features, cond)
        student.eval()
        prediction = student(features, cond)
    assert z.shape == (1, 304, 24, 24) and log_det.shape == (1,)
    assert prediction.shape == (1, 304, 24, 24)
    # 3,251,080 in the teacher (the reference's "about 1M" undercounts the 5x5 coupling), 81,421,616
    # in the student (the reference: "about 81M").
    assert _trainable(teacher) == _teacher_parameters() == 3_251_080
    assert _trainable(student) == _student_parameters() == 81_421_616


def test_the_tap_is_the_output_of_the_stage_in_the_whole_timm_network():
    import timm

    torch.manual_seed(0)
    tap = EfficientNetTap("efficientnet_b0", 5, pretrained=False)
    full = timm.create_model("efficientnet_b0", pretrained=False).eval()
    missing, _ = full.load_state_dict(tap.state_dict(), strict=False)
    assert not [k for k in missing if k.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.5."))]
    seen = {}
    full.blocks[5].register_forward_hook(lambda module, inputs, output: seen.update(out=output))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full(images)
        torch.testing.assert_close(tap(images), seen["out"])
    assert tap.channels == 192 and len(tap.blocks) == 6


def test_a_local_weights_file_is_used_and_a_missing_one_is_named(tmp_path):
    import timm

    torch.manual_seed(1)
    full = timm.create_model("efficientnet_b0", pretrained=False)
    torch.save(full.state_dict(), tmp_path / "b0.pth")
    tap = EfficientNetTap("efficientnet_b0", 3, pretrained=True, weights_path=str(tmp_path / "b0.pth"))
    torch.testing.assert_close(tap.conv_stem.weight, full.conv_stem.weight)
    with pytest.raises(PretrainedWeightsUnavailable, match="not found"):
        EfficientNetTap("efficientnet_b0", 3, pretrained=True, weights_path=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="stage"):
        EfficientNetTap("efficientnet_b0", 7, pretrained=False)


def test_losses_on_hand_examples():
    # z: one image, 2 channels, 1 x 2 positions; sum z^2 = 1 + 4 + 9 + 16 = 30; log_det = 3 (whole map).
    z = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    log_det = torch.tensor([3.0])
    # per position: 0.5 * (1 + 9) - l1 and 0.5 * (4 + 16) - l2 with l1 + l2 = 3 -> mean (15 - 3) / 2 = 6
    assert teacher_nll(z, log_det).item() == pytest.approx(6.0)
    # a batch averages the images: second image z = 0, log_det = -2 -> (0 + 2) / 2 = 1
    batch = torch.cat([z, torch.zeros_like(z)])
    assert teacher_nll(batch, torch.tensor([3.0, -2.0])).item() == pytest.approx((6.0 + 1.0) / 2)

    student = torch.tensor([[[[1.0, 0.0]], [[1.0, 4.0]]]])
    # per position mean over channels: ((1-1)^2 + (3-1)^2) / 2 = 2 and ((2-0)^2 + (4-4)^2) / 2 = 2
    torch.testing.assert_close(distillation_map(z, student), torch.tensor([[[2.0, 2.0]]]))
    assert distillation_loss(z, student).item() == pytest.approx(2.0)


def _small_teacher(seed=0) -> AstTeacher:
    torch.manual_seed(seed)
    teacher = AstTeacher(6, cond_channels=4, hidden=8, kernel_sizes=(3, 5), clamp=1.9)
    with torch.no_grad():  # leave the identity initialisation (gamma = 0) for a non-trivial flow
        for module in teacher.modules():
            if isinstance(module, GatedConvSubnet):
                module.gamma.fill_(0.7)
    return teacher.double()


def test_teacher_flow_is_invertible_and_its_log_det_is_exact():
    teacher = _small_teacher()
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    cond = positional_encoding_2d(4, 3, 3, dtype=torch.float64).unsqueeze(0).expand(2, -1, -1, -1)
    z, log_det = teacher(x, cond)
    assert not torch.allclose(z, x)
    torch.testing.assert_close(teacher.inverse(z, cond), x, atol=1e-10, rtol=1e-10)
    for i in range(2):
        jacobian = torch.autograd.functional.jacobian(lambda v, i=i: teacher(v[None], cond[i : i + 1])[0][0], x[i])
        jacobian = jacobian.reshape(x[i].numel(), x[i].numel())
        _, logabsdet = torch.linalg.slogdet(jacobian)
        assert log_det[i].item() == pytest.approx(logabsdet.item(), abs=1e-8)


def test_teacher_starts_as_a_permutation_and_subnets_pad_by_replication():
    torch.manual_seed(0)
    teacher = AstTeacher(6, cond_channels=4, hidden=8, kernel_sizes=(3, 3, 3, 5), clamp=1.9)
    x = torch.randn(1, 6, 4, 4)
    cond = positional_encoding_2d(4, 4, 4).unsqueeze(0)
    z, log_det = teacher(x, cond)
    order = torch.arange(6)
    for permutation in teacher.permutations:
        order = order[permutation.permutation]
    torch.testing.assert_close(z, x[:, order])
    assert log_det.item() == 0.0
    subnet = teacher.couplings[3].subnet1
    assert subnet.conv1.kernel_size == (5, 5) and subnet.conv1.padding_mode == "replicate"
    assert subnet.conv2.padding_mode == "replicate" and subnet.gamma.item() == 0.0


def test_permutations_are_seeded():
    def permutations(seed):
        model = create_algorithm("ast", tiny=True, seed=seed).model
        return [p.permutation.clone() for p in model.teacher.permutations]

    assert all(torch.equal(a, b) for a, b in zip(permutations(3), permutations(3)))
    assert not all(torch.equal(a, b) for a, b in zip(permutations(3), permutations(4)))


def test_teacher_first_then_student():
    torch.manual_seed(0)
    detector = create_algorithm("ast", tiny=True, teacher_epochs=2)
    loader = list(torch.randn(6, 3, 64, 64).split(3))

    def snapshot(module):
        return [p.detach().clone() for p in module.parameters()]

    teacher0, student0 = snapshot(detector.model.teacher), snapshot(detector.model.student)
    logs = [detector.fit_epoch(loader) for _ in range(2)]
    assert [list(log) for log in logs] == [["teacher_loss"], ["teacher_loss"]]
    teacher1, student1 = snapshot(detector.model.teacher), snapshot(detector.model.student)
    assert any(not torch.equal(a, b) for a, b in zip(teacher0, teacher1))
    assert all(torch.equal(a, b) for a, b in zip(student0, student1))
    assert detector.phase == "student"
    log = detector.fit_epoch(loader)
    assert list(log) == ["student_loss"] and math.isfinite(log["student_loss"])
    assert all(torch.equal(a, b) for a, b in zip(teacher1, snapshot(detector.model.teacher)))
    assert any(not torch.equal(a, b) for a, b in zip(student1, snapshot(detector.model.student)))


def test_score_is_the_mean_distance_and_the_map_its_bicubic_upsampling():
    torch.manual_seed(0)
    detector = create_algorithm("ast", tiny=True)
    images = torch.randn(2, 3, 64, 64)
    detector.fit_epoch([images])
    detector.fit_epoch([images])
    prediction = detector.predict(images)
    detector.eval()
    with torch.no_grad():
        distance = detector.model(images)
    assert distance.shape == (2, 4, 4)  # efficientnet_b0 stage 4: stride 16
    torch.testing.assert_close(torch.as_tensor(prediction.scores), distance.mean(dim=(1, 2)))
    expected = F.interpolate(distance[:, None], size=(64, 64), mode="bicubic", align_corners=False)[:, 0]
    torch.testing.assert_close(torch.as_tensor(prediction.maps["anomaly_map"]), expected)
    # per image: one image alone gives its own map
    alone = detector.predict(images[1:])
    torch.testing.assert_close(torch.as_tensor(alone.maps["anomaly_map"][0]), expected[1], atol=1e-5, rtol=1e-5)


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        create_algorithm("ast", tiny=True, cond_channels=6)
    with pytest.raises(ValueError, match="kernel_sizes"):
        create_algorithm("ast", tiny=True, kernel_sizes=[3, 4])
    with pytest.raises(ValueError, match="teacher_epochs"):
        create_algorithm("ast", tiny=True, teacher_epochs=0)
    with pytest.raises(ValueError, match="EfficientNet"):
        create_algorithm("ast", tiny=True, backbone="resnet18")

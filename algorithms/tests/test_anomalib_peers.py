"""Differential tests against anomalib 2.7 (a test oracle only): FastFlow, Reverse Distillation, EfficientAD.

Each test builds anomalib's torch model and ours at the same small configuration (random-init
``resnet18`` or small PDNs, no downloads), copies the weights of one into the other with the
documented name mapping, feeds the same batch and compares latents / maps / scores / losses
(within 1e-4), and where it matters one optimiser step. Where anomalib departs from the official
code, the test reproduces anomalib's variant from our pieces to show that the difference is that
departure and nothing else; the docstring names it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from algorithms.reverse_distillation.model import OneClassBottleneck

from .peers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FastflowLoss,
    ReverseDistillationLoss,
    efficient_ad_pair,
    fastflow_pair,
    reverse_distillation_pair,
    sync_efficient_ad,
)

ATOL = 1e-4


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- FastFlow -----------------------------------------------------------------------------------


@pytest.mark.parametrize("conv3x3_only", [False, True])
def test_fastflow_latents_log_dets_loss_and_maps_equal_anomalibs(conv3x3_only):
    ours, theirs = fastflow_pair(conv3x3_only=conv3x3_only)
    x = _images(3, 64, seed=1)
    theirs.train()
    with torch.no_grad():
        our_outputs = ours.model(x)
        hidden, jacobians = theirs(x)
        for (z, log_det), h, j in zip(our_outputs, hidden, jacobians, strict=True):
            torch.testing.assert_close(z, h, atol=ATOL, rtol=1e-5)
            torch.testing.assert_close(log_det, j, atol=ATOL, rtol=1e-5)
        loss = ours.model.negative_log_likelihood(our_outputs)
        torch.testing.assert_close(loss, FastflowLoss()(hidden, jacobians), atol=ATOL, rtol=1e-6)
    theirs.eval()
    prediction = ours.predict(x)
    with torch.no_grad():
        batch = theirs(x)
    # anomalib's map is the official ``-prob``; ours is ``1 - prob`` (higher = more anomalous, in [0, 1]).
    torch.testing.assert_close(
        torch.from_numpy(prediction.maps["anomaly_map"]), batch.anomaly_map[:, 0] + 1.0, atol=ATOL, rtol=0
    )
    scores = batch.pred_score.reshape(-1) + 1.0
    torch.testing.assert_close(torch.from_numpy(prediction.scores), scores, atol=ATOL, rtol=0)


def test_fastflow_training_step_equals_anomalibs():
    """One Adam step (lr 1e-3, weight decay 1e-5: anomalib's ``Fastflow.configure_optimizers`` and
    the publication) on the summed loss moves both models to the same weights and latents."""
    ours, theirs = fastflow_pair()
    x = _images(4, 64, seed=2)
    ours.fit_epoch([x])
    theirs.train()
    optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-3, weight_decay=1e-5)
    loss = FastflowLoss()(*theirs(x))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for i, flow in enumerate(ours.model.flows):
        for j, step in enumerate(flow.steps):
            block = theirs.fast_flow_blocks[i].module_list[j]
            torch.testing.assert_close(step.subnet[0].weight, block.subnet[0].weight, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(step.global_scale, block.global_scale, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.model.norms[0].weight, theirs.norms[0].weight, atol=1e-6, rtol=1e-5)
    test = _images(2, 64, seed=3)
    with torch.no_grad():
        for (z, _), h in zip(ours.model(test), theirs(test)[0], strict=True):
            torch.testing.assert_close(z, h, atol=ATOL, rtol=1e-5)


# -- Reverse Distillation -----------------------------------------------------------------------


def test_reverse_distillation_features_loss_and_maps_equal_anomalibs_up_to_the_blur_border():
    """Same features, loss and unsmoothed map. The smoothing differs by design: the official RD4AD
    code uses ``scipy.ndimage.gaussian_filter(map, sigma=4)`` (border mode "reflect" = half-sample
    symmetric), which ours reproduces; anomalib's ``GaussianBlur2d`` pads with torch's "reflect"
    (edge not repeated). So the maps agree exactly away from the border (16 px, the kernel radius)
    and ours equals scipy's filter of the shared raw map everywhere."""
    from anomalib.models.components.filters import GaussianBlur2d

    ours, theirs = reverse_distillation_pair()
    x = _images(3, 64, seed=4)
    theirs.train()
    with torch.no_grad():
        teacher, student = ours.model(x)  # train-mode BatchNorm on both sides
        their_teacher, their_student = theirs(x)
    for a, b in zip([*teacher, *student], [*their_teacher, *their_student], strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)
    their_loss = ReverseDistillationLoss()(their_teacher, their_student)
    torch.testing.assert_close(ours.model.loss(teacher, student), their_loss, atol=ATOL, rtol=1e-6)

    theirs.eval()
    prediction = ours.predict(x)
    ours.eval()
    with torch.no_grad():
        batch = theirs(x)
        teacher, student = ours.model(x)
        raw = ours.model.anomaly_map(teacher, student, 64)
        their_blur = GaussianBlur2d(kernel_size=(33, 33), sigma=(4.0, 4.0))(raw[:, None])[:, 0]
    torch.testing.assert_close(batch.anomaly_map[:, 0], their_blur, atol=ATOL, rtol=0)  # same raw map
    ours_map = prediction.maps["anomaly_map"]
    np.testing.assert_allclose(ours_map, np.stack([gaussian_filter(m, sigma=4) for m in raw.numpy()]), atol=1e-5)
    inner = (slice(None), slice(16, -16), slice(16, -16))
    np.testing.assert_allclose(ours_map[inner], batch.anomaly_map[:, 0].numpy()[inner], atol=ATOL)
    assert np.abs(ours_map - batch.anomaly_map[:, 0].numpy()).max() > 1e-3  # the border differs
    np.testing.assert_allclose(prediction.scores, ours_map.max(axis=(1, 2)), rtol=1e-6)


def test_reverse_distillation_training_step_equals_anomalibs_with_its_betas():
    """anomalib trains with Adam betas (0.5, 0.99); the official code (and our default) uses
    (0.5, 0.999). With anomalib's betas one step of ours lands on anomalib's weights exactly."""
    ours, theirs = reverse_distillation_pair()
    ours.hparams["betas"] = [0.5, 0.99]  # anomalib's ReverseDistillation.configure_optimizers
    x = _images(2, 64, seed=5)
    ours.fit_epoch([x])
    theirs.train()
    optimizer = torch.optim.Adam(
        [*theirs.decoder.parameters(), *theirs.bottleneck.parameters()], lr=0.005, betas=(0.5, 0.99)
    )
    loss = ReverseDistillationLoss()(*theirs(x))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    torch.testing.assert_close(
        ours.model.bottleneck.embed[0].body[0].weight, theirs.bottleneck.bn_layer[0].conv1.weight, atol=1e-6, rtol=1e-5
    )
    ours.eval()
    theirs.eval()
    test = _images(2, 64, seed=6)
    prediction = ours.predict(test)
    with torch.no_grad():
        for a, b in zip(ours.model(test)[1], theirs.decoder(theirs.bottleneck(list(theirs.encoder(test).values()))),
                        strict=True):  # fmt: skip
            torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)  # running statistics updated alike too
        batch = theirs(test)
    inner = (slice(None), slice(16, -16), slice(16, -16))
    np.testing.assert_allclose(prediction.maps["anomaly_map"][inner], batch.anomaly_map[:, 0].numpy()[inner], atol=ATOL)


def test_reverse_distillation_wide_bottleneck_is_the_official_code_not_anomalibs():
    """At ``wide_resnet50_2`` the official RD4AD OCBE is built from wide bottleneck blocks
    (``width_per_group=128``); anomalib 2.7 builds it from plain ``Bottleneck`` blocks (width 64 per
    group). Ours follows the official code: twice anomalib's inner width, the same outer shapes."""
    from anomalib.models.image.reverse_distillation.components import get_bottleneck_layer

    channels = (256, 512, 1024)
    theirs = get_bottleneck_layer("wide_resnet50_2")
    ours_wide = OneClassBottleneck(channels, blocks=3, kind="bottleneck", width_factor=2)
    ours_plain = OneClassBottleneck(channels, blocks=3, kind="bottleneck", width_factor=1)
    their_inner = theirs.bn_layer[0].conv2.weight.shape
    assert their_inner == ours_plain.embed[0].body[3].weight.shape == (512, 512, 3, 3)
    assert ours_wide.embed[0].body[3].weight.shape == (1024, 1024, 3, 3)  # official: 2 x anomalib's
    count = sum(p.numel() for p in ours_plain.parameters())
    their_count = sum(p.numel() for name, p in theirs.named_parameters() if not name.startswith(("conv4", "bn4")))
    assert count == their_count  # the plain layout is anomalib's, parameter for parameter


# -- EfficientAD --------------------------------------------------------------------------------


def _as_unit_range(x: torch.Tensor) -> torch.Tensor:
    return x * IMAGENET_STD + IMAGENET_MEAN


def _teacher_statistics(model) -> None:
    """Random but fixed teacher channel statistics (the pass over training images is tested elsewhere)."""
    generator = torch.Generator().manual_seed(11)
    model.teacher_mean.copy_(0.1 * torch.randn(model.teacher_mean.shape, generator=generator))
    model.teacher_std.copy_(0.5 + torch.rand(model.teacher_std.shape, generator=generator))
    model.teacher_stats_ready.fill_(True)


def test_efficient_ad_raw_maps_and_losses_equal_anomalibs():
    """Same teacher normalisation, student/autoencoder outputs, unnormalised (padded, upsampled)
    maps and the three losses (the autoencoder's colour augmentation is given to both sides)."""
    ours, theirs = efficient_ad_pair()
    x = _images(1, 256, seed=8)
    _teacher_statistics(ours)
    sync_efficient_ad(ours, theirs)
    ours.eval()
    theirs.eval()
    prediction = ours.predict(x)  # no pre_eval yet: unnormalised maps
    with torch.no_grad():
        map_st, map_ae = theirs.get_maps(_as_unit_range(x), normalize=False)
    torch.testing.assert_close(torch.from_numpy(prediction.maps["student_teacher"]), map_st[:, 0], atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(torch.from_numpy(prediction.maps["student_autoencoder"]), map_ae[:, 0], atol=ATOL,
                               rtol=1e-5)  # fmt: skip
    torch.manual_seed(0)
    with torch.no_grad():
        ours_losses = ours._losses(x, x, penalty=None)  # augmentation = identity on both sides
        _, distance_st = theirs.compute_student_teacher_distance(_as_unit_range(x))
        d = distance_st.flatten()
        their_hard = d[d >= torch.quantile(d, 0.999)].mean()
        unit = _as_unit_range(x)
        ae = theirs.ae(unit, unit.shape[-2:])
        teacher = (theirs.teacher(unit) - theirs.mean_std["mean"]) / theirs.mean_std["std"]
        their_ae = ((teacher - ae) ** 2).mean()
        their_stae = ((ae - theirs.student(unit)[:, 64:]) ** 2).mean()
    torch.testing.assert_close(ours_losses["loss_st"], their_hard, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(ours_losses["loss_ae"], their_ae, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(ours_losses["loss_stae"], their_stae, atol=ATOL, rtol=1e-5)


def test_efficient_ad_normalisation_and_score_follow_the_official_code_where_anomalib_departs():
    """The official code normalises the raw 56x56 maps by quantiles of the raw maps of held-out
    images, then zero-pads the combined map and upsamples it; the score is its maximum. anomalib
    pads and upsamples first, normalises after (so its border is ``-0.1 q_a / (q_b - q_a)``, not
    0) and takes its quantiles on padded, upsampled maps. With our quantiles copied in, the two
    maps agree away from the border; the quantiles anomalib would compute differ from ours."""
    ours, theirs = efficient_ad_pair()
    train = _images(2, 256, seed=9)
    ours.fit_epoch([train])  # teacher statistics, chooses the hold-out (1 of 2 images) and trains on the other
    ours.pre_eval([train])  # quantiles of the held-out image's raw maps
    sync_efficient_ad(ours, theirs)
    ours.eval()
    theirs.eval()
    x = _images(1, 256, seed=10)
    prediction = ours.predict(x)
    with torch.no_grad():
        batch = theirs(_as_unit_range(x))
        raw_st, raw_ae = ours._raw_maps(x)
    ours_map, their_map = torch.from_numpy(prediction.maps["combined"]), batch.anomaly_map[:, 0]
    inner = (slice(None), slice(24, -24), slice(24, -24))  # 4 padded map pixels x 4 + bilinear support
    torch.testing.assert_close(ours_map[inner], their_map[inner], atol=ATOL, rtol=1e-5)
    q = ours.map_quantiles
    border = -0.05 * (q[0] / (q[1] - q[0]) + q[2] / (q[3] - q[2]))
    torch.testing.assert_close(their_map[:, 0, 0], border.expand(1), atol=ATOL, rtol=1e-5)  # anomalib's corner
    assert ours_map[:, 0, 0].abs().max() < 1e-6  # ours: the official zero border
    torch.testing.assert_close(torch.from_numpy(prediction.scores), ours_map.amax(dim=(1, 2)))  # after padding
    # anomalib's quantiles (map_norm_quantiles) would be taken on padded, upsampled maps
    held = ours._held_out(train)
    with torch.no_grad():
        their_st, _ = theirs.get_maps(_as_unit_range(train[held]), normalize=False)
    assert torch.quantile(their_st.flatten(), 0.9) != pytest.approx(float(q[0]), rel=1e-3)
    assert float(q[0]) == pytest.approx(float(torch.quantile(raw_st[:0].new_tensor(
        ours._raw_maps(train[held])[0].flatten()), 0.9)), rel=1e-5)  # fmt: skip
    assert raw_ae.shape == raw_st.shape == (1, 56, 56)  # 256 / 4 - 8

"""PPDm: shapes and trainable parameters at the publication size, the deformation, the offset and VQ
losses on hand examples, the map and score, gradients through the frozen encoder, determinism.

The published architecture is that of the official code (``FlappyPeggy/DMAD`` @ ``b3fefbb``,
``DMAD-PPDM/resnet.py``: ``OffsetNet``, ``BN_layer(vq=True)``, ``VectorQuantizer``;
``DMAD-PPDM/de_resnet.py``: ``de_wide_resnet50_2``); anomalib 2.7 does not ship the method, so
there is no differential test.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from algorithms.components.blur import gaussian_blur
from algorithms.components.distillation import cosine_distance_map, global_cosine_loss
from algorithms.ppdm.detector import PPDm
from algorithms.ppdm.model import (
    OffsetFields,
    OffsetNet,
    PPDmModel,
    VectorQuantizer,
    coord_channels,
    identity_grid,
    smoothness_loss,
)
from algorithms.registry import create_algorithm, get_algorithm_info, load_algorithm

_trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- parameter counts from the official architecture --------------------------------------------


def _offset_net_parameters(hidden: int = 64) -> int:
    """Official ``OffsetNet``: CoordConv 3x3 (3+4 -> 64, no bias) + BN, CoordConv 3x3 (64+4 -> 64) + BN;
    residual unit 3x3 (64 -> 64, bias), BN, 1x1 (64 -> 64, bias), then BN; heads on the 128-channel
    concatenation: coarse (and its inverse) 3 stride-2 3x3 convs (bias) + BN each then 3x3 to 2
    channels (bias); fine (and its inverse) 1 stride-2 conv + BN then 3x3 to 2. BN = 2 per channel.
    The official CoordConv2d also owns an unused parent ``Conv2d`` weight (never in a forward pass:
    3*64*9 + 64 and 64*64*9 + 64 more in its ``parameters()``), which we do not create."""
    h = hidden
    stem = (3 + 4) * h * 9 + 2 * h + (h + 4) * h * 9 + 2 * h
    residual = (h * h * 9 + h) + 2 * h + (h * h + h) + 2 * h
    first = 2 * h * h * 9 + h + 2 * h
    later = h * h * 9 + h + 2 * h
    to_field = h * 2 * 9 + 2
    coarse = first + 2 * later + to_field
    fine = first + to_field
    return stem + residual + 2 * coarse + 2 * fine


def _bottleneck_block(in_ch: int, out: int, width: int, *, shortcut: int) -> int:
    """A bottleneck block (1x1, 3x3 or 2x2-transposed, 1x1; BN after each) plus its shortcut weights."""
    return in_ch * width + 2 * width + shortcut + 2 * width + width * out + 2 * out


def _vq_bottleneck_parameters(c=(256, 512, 1024), width_factor: int = 2, blocks: int = 3, codes: int = 200) -> int:
    """Official ``BN_layer(AttnBottleneck, 3, vq=True, width_per_group=128)``: three 3x3 reductions
    (c_l -> 64, no bias) + BN; three stride-2 3x3 convs (64 -> 64) + BN (two for level 1, one for
    level 2); the 200 x 1024 codebook; the OCBE stage of 3 wide bottleneck blocks from 1024 + 3*64 =
    1216 to 2048 channels (inner width 1024), the first with stride 2 and a 1x1 projection shortcut.
    The official module also owns an unused ``conv4``/``bn4`` (1x1, 1024 -> 1024: 1,050,624 more)."""
    c3 = c[2]
    r = c3 // 16
    reductions = sum(ch * r * 9 + 2 * r for ch in c)
    downs = 3 * (r * r * 9 + 2 * r)
    codebook = codes * c3
    in_ch, out, width = c3 + 3 * r, 2 * c3, 2 * c3 // 4 * width_factor
    stage = _bottleneck_block(in_ch, out, width, shortcut=9 * width * width) + in_ch * out + 2 * out
    stage += (blocks - 1) * _bottleneck_block(out, out, width, shortcut=9 * width * width)
    return reductions + downs + codebook + stage


def _wide_decoder_parameters(c=(256, 512, 1024), width_factor: int = 2, blocks=(3, 4, 6)) -> int:
    """RD4AD's ``de_wide_resnet50_2`` (unchanged in DMAD-PPDM): three stages 2048 -> 1024 -> 512 -> 256 of
    (3, 4, 6) wide bottleneck blocks (inner width out/4*2); the first block of each up-samples with a
    2x2 stride-2 transposed conv in place of the 3x3 and a 2x2 transposed-conv shortcut + BN."""
    total, in_ch = 0, 2 * c[2]
    for out, n in zip((c[2], c[1], c[0]), blocks):
        width = out // 4 * width_factor
        total += _bottleneck_block(in_ch, out, width, shortcut=4 * width * width) + 4 * in_ch * out + 2 * out
        total += (n - 1) * _bottleneck_block(out, out, width, shortcut=9 * width * width)
        in_ch = out
    return total


def test_publication_shapes_and_trainable_parameters():
    torch.manual_seed(0)
    model = PPDmModel(
        backbone="wide_resnet50_2.tv_in1k", layers=("layer1", "layer2", "layer3"), pretrained=False, weights_path=None
    ).eval()
    assert _trainable(model.encoder) == 0
    assert _trainable(model.offset) == _offset_net_parameters() == 533_320
    assert _trainable(model.bottleneck) == _vq_bottleneck_parameters()
    assert _trainable(model.decoder) == _wide_decoder_parameters()
    assert tuple(model.bottleneck.quantizer.codebook.weight.shape) == (200, 1024)
    x = _images(1, 256)
    with torch.no_grad():
        stem = model.offset.stem(x)
        features = torch.cat([model.offset.residual(stem), stem], dim=1)
        assert features.shape == (1, 128, 256, 256)
        assert model.offset.coarse(features).shape == (1, 2, 32, 32)  # 1/8: three stride-2 convs
        assert model.offset.fine(features).shape == (1, 2, 128, 128)  # 1/2
        out = model(x)
        for field in (out.fields.coarse, out.fields.fine, out.fields.coarse_inverse, out.fields.fine_inverse):
            assert field.shape == (1, 256, 256, 2)
        assert out.fields.coarse.abs().max() <= 16 / 256 and out.fields.fine.abs().max() <= 6 / 256
        assert out.warped.shape == x.shape
        assert [tuple(f.shape) for f in out.teacher] == [(1, 256, 64, 64), (1, 512, 32, 32), (1, 1024, 16, 16)]
        assert [tuple(f.shape) for f in out.student] == [tuple(f.shape) for f in out.teacher]
        b = model.bottleneck
        l1, l2, l3 = out.teacher
        assert b.down1(b.reduce1(l1)).shape == b.down2(b.reduce2(l2)).shape == b.reduce3(l3).shape == (1, 64, 16, 16)
        assert b.embed[0].body[0].in_channels == 1024 + 192
        embedding, vq_loss = b(out.teacher)
        assert embedding.shape == (1, 2048, 8, 8) and vq_loss.ndim == 0
        assert model.anomaly_map(out, 256).shape == (1, 256, 256)


# -- the deformation ----------------------------------------------------------------------------


def test_coord_channels_on_a_hand_example():
    coords = coord_channels(8, 4)  # 2 cells of 4 pixels per axis
    coarse = torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1])
    fine = torch.arange(8) / 7 - coarse
    assert coords.shape == (4, 8, 8)
    torch.testing.assert_close(coords[0], (2 * fine - 1).view(8, 1).expand(8, 8))  # fine row coordinate
    torch.testing.assert_close(coords[1], (2 * coarse - 1).view(8, 1).expand(8, 8))  # coarse row
    torch.testing.assert_close(coords[2], (2 * fine - 1).view(1, 8).expand(8, 8))  # fine column
    torch.testing.assert_close(coords[3], (2 * coarse - 1).view(1, 8).expand(8, 8))  # coarse column
    with pytest.raises(ValueError, match="multiple"):
        coord_channels(4, 4)


def _constant_fields(coarse=(0.0, 0.0), fine=(0.0, 0.0), size: int = 4) -> OffsetFields:
    def const(v):
        return torch.tensor(v, dtype=torch.float32).view(1, 1, 1, 2).expand(1, size, size, 2).clone()

    zero = const((0.0, 0.0))
    return OffsetFields(coarse=const(coarse), fine=const(fine), coarse_inverse=zero, fine_inverse=zero.clone())


def test_warping_on_hand_examples():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(_constant_fields().warp(x), x)  # zero fields: identity
    torch.testing.assert_close(_constant_fields().unwarp(x), x)
    grid = identity_grid(1, 4)
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0] and grid[0, 0, 3].tolist() == [1.0, -1.0]  # x first
    # one pixel to the right (2 / (W - 1) in grid units): output column j samples input column j + 1;
    # the grid is clamped to [-1, 1], so the last column repeats
    expected = torch.cat([x[..., 1:], x[..., 3:]], dim=-1)
    torch.testing.assert_close(_constant_fields(coarse=(2 / 3, 0.0)).warp(x), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(_constant_fields(fine=(2 / 3, 0.0)).warp(x), expected, atol=1e-5, rtol=0)
    # coarse then fine, half a pixel each: two bilinear resamplings, (x[j] + 2 x[j+1] + x[j+2]) / 4
    both = _constant_fields(coarse=(1 / 3, 0.0), fine=(1 / 3, 0.0)).warp(x)
    torch.testing.assert_close(both[..., :2], (x[..., :2] + 2 * x[..., 1:3] + x[..., 2:]) / 4, atol=1e-5, rtol=0)
    # half a pixel down: the mean of two rows
    half = _constant_fields(coarse=(0.0, 1 / 3)).warp(x)
    torch.testing.assert_close(half[..., :3, :], (x[..., :3, :] + x[..., 1:, :]) / 2, atol=1e-5, rtol=0)


def test_smoothness_loss_on_a_hand_example():
    # a constant field (a, b) on 4x4, zero-padded: interior 0; a corner has 3 of its 8 neighbours,
    # so centre - mean = (1 - 3/8) v; an edge pixel 5 of 8: (3/8) v; summed over the 2 channels, abs
    a, b = 0.3, 0.5
    field = torch.tensor([a, b]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    expected = (4 * 5 / 8 + 8 * 3 / 8) * abs(a + b) / 16
    torch.testing.assert_close(smoothness_loss(field), torch.tensor(expected))
    # the filter sums the two components before the absolute value (official Smooth_Loss)
    opposite = torch.tensor([a, -a]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    torch.testing.assert_close(smoothness_loss(opposite), torch.tensor(0.0))
    # one spike of height 1 in channel 0 of a 5x5 zero field: 1 at the spike, -1/8 at its 8 neighbours
    spike = torch.zeros(1, 2, 5, 5)
    spike[0, 0, 2, 2] = 1.0
    torch.testing.assert_close(smoothness_loss(spike), torch.tensor(2.0 / 25))


def test_offset_loss_on_a_hand_example():
    x = _images(1, 4)[:, :1]
    a, b = 0.03, 0.04
    fields = _constant_fields(coarse=(a, b))  # |(a, b)| = 0.05; the other fields are zero
    smooth = (4 * 5 / 8 + 8 * 3 / 8) * (a + b) / 16
    # the warped input is given: its inverse warp by zero inverse fields is itself
    loss = OffsetNet.loss(x, x, fields, gamma=1.0)
    torch.testing.assert_close(loss, torch.tensor(0.05 + smooth))
    loss = OffsetNet.loss(x, x + 1.0, fields, gamma=2.0)  # MSE 1, weight gamma
    torch.testing.assert_close(loss, torch.tensor(0.05 + smooth + 2.0))
    # the fine field counts the same way
    fine = _constant_fields(fine=(a, b))
    torch.testing.assert_close(OffsetNet.loss(x, x, fine), torch.tensor(0.05 + smooth))


# -- vector quantisation ------------------------------------------------------------------------


def test_vector_quantiser_loss_and_straight_through_gradient_on_a_hand_example():
    vq = VectorQuantizer(2, 2, beta=0.25)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z = torch.tensor([[0.2, 0.9], [0.1, 1.3]]).view(1, 2, 1, 2).requires_grad_(True)  # positions (0.2,0.1), (0.9,1.3)
    quantised, loss = vq(z)
    torch.testing.assert_close(quantised.detach(), torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 2, 1, 2))
    mse = (0.2**2 + 0.1**2 + 0.1**2 + 0.3**2) / 4  # 0.0375
    torch.testing.assert_close(loss, torch.tensor(0.25 * mse + mse))
    # straight-through: d quantised / d z is the identity
    (grad,) = torch.autograd.grad(quantised.sum(), z, retain_graph=True)
    torch.testing.assert_close(grad, torch.ones_like(z))
    # commitment (weight beta) moves z towards its code, the codebook term moves the codes towards z
    loss.backward()
    torch.testing.assert_close(z.grad, 0.25 * 2 * (z - quantised).detach() / 4)
    expected_codes = torch.tensor([[2 * (0 - 0.2), 2 * (0 - 0.1)], [2 * (1 - 0.9), 2 * (1 - 1.3)]]) / 4
    torch.testing.assert_close(vq.codebook.weight.grad, expected_codes)


def test_vq_codebook_initialisation_is_seeded_and_published():
    a = create_algorithm("ppdm", tiny=True, seed=3).model
    b = create_algorithm("ppdm", tiny=True, seed=3).model
    c = create_algorithm("ppdm", tiny=True, seed=4).model
    codes = a.bottleneck.quantizer.codebook.weight
    assert codes.shape == (200, 256) and codes.abs().max() <= 1 / 200  # uniform in [-1/K, 1/K]
    assert torch.equal(codes, b.bottleneck.quantizer.codebook.weight)
    assert not torch.equal(codes, c.bottleneck.quantizer.codebook.weight)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


# -- the detector -------------------------------------------------------------------------------


def test_publication_defaults():
    defaults = {k: v.default for k, v in inspect.signature(PPDm.__init__).parameters.items()}
    assert defaults["backbone"] == "wide_resnet50_2.tv_in1k" and defaults["input_size"] == 256
    assert tuple(defaults["layers"]) == ("layer1", "layer2", "layer3")
    assert defaults["lr"] == 0.005 and tuple(defaults["betas"]) == (0.5, 0.999) and defaults["weight_decay"] == 0.01
    assert defaults["lr_epochs"] == 400 and defaults["codebook_size"] == 200
    assert defaults["beta"] == 0.25 and defaults["gamma"] == 1.0 and defaults["sigma"] == 4.0
    assert defaults["bn_calibration"] is False
    schedule = get_algorithm_info("ppdm").schedule
    assert (schedule.epochs, schedule.batch_size, schedule.input_size) == (400, 8, 256)
    net = OffsetNet()
    assert net.coarse_scale == 2 * 8 / 256 and net.fine_scale == 2 * 3 / 256


def test_losses_map_and_score_follow_the_definitions():
    model = create_algorithm("ppdm", tiny=True).eval()
    x = _images(3)
    with torch.no_grad():
        out = model.model(x)
        losses = model.losses(x)
        main = global_cosine_loss(out.teacher, out.student)
        offset = OffsetNet.loss(x, out.warped, out.fields)
        torch.testing.assert_close(losses["main"], main)
        torch.testing.assert_close(losses["offset"], offset)
        torch.testing.assert_close(losses["loss"], main + offset + out.vq_loss)
        rd_map = cosine_distance_map(out.teacher, out.student, 64)[:, None]
        grid = identity_grid(3, 64)
        back = F.grid_sample(rd_map, (grid + out.fields.fine_inverse).clamp(-1, 1), align_corners=True)
        back = F.grid_sample(back, (grid + out.fields.coarse_inverse).clamp(-1, 1), align_corners=True)
        expected = gaussian_blur(back[:, 0], 4.0)
    prediction = model.predict(x)
    assert list(prediction.maps) == ["anomaly_map"]
    torch.testing.assert_close(torch.from_numpy(prediction.maps["anomaly_map"]), expected, atol=1e-5, rtol=1e-5)
    assert prediction.scores.tolist() == pytest.approx(expected.amax(dim=(1, 2)).tolist(), rel=1e-5)


def test_the_offset_net_learns_through_the_frozen_encoder():
    model = create_algorithm("ppdm", tiny=True)
    model.train()
    assert not model.model.encoder.training and not model.model.encoder.model.training
    x = _images(2)
    out = model.model(x)
    global_cosine_loss(out.teacher, out.student).backward()  # the RD loss alone
    assert all(p.grad is None for p in model.model.encoder.parameters())
    grads = [p.grad.abs().sum() for p in model.model.offset.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0
    # so does the VQ commitment term (the quantised features are the encoder's layer 3)
    model.zero_grad(set_to_none=True)
    model.model(x).vq_loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.offset.parameters())


def test_training_is_deterministic_follows_the_cosine_schedule_and_round_trips(tmp_path):
    loader = [_images(4, seed=10)]
    test = _images(2, seed=12)
    a = create_algorithm("ppdm", tiny=True, lr_epochs=2)
    b = create_algorithm("ppdm", tiny=True, lr_epochs=2)
    logs = a.fit_epoch(loader)
    assert set(logs) == {"loss", "main", "offset", "vq"} and all(math.isfinite(v) for v in logs.values())
    b.fit_epoch(loader)
    assert a._optimizer.param_groups[0]["lr"] == pytest.approx(0.005 / 2)  # cos(pi/2): half-way
    assert a._optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    pa, pb = a.predict(test), b.predict(test)
    assert (pa.scores == pb.scores).all() and (pa.maps["anomaly_map"] == pb.maps["anomaly_map"]).all()
    loaded = load_algorithm(a.save(tmp_path / "ppdm"))
    pl = loaded.predict(test)
    assert (pl.scores == pa.scores).all() and (pl.maps["anomaly_map"] == pa.maps["anomaly_map"]).all()


def test_bad_settings_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="multiple of 32"):
        create_algorithm("ppdm", tiny=True, input_size=48)
    with pytest.raises(ValueError, match="lr > 0"):
        create_algorithm("ppdm", tiny=True, lr=0)
    with pytest.raises(ValueError, match="codebook_size"):
        create_algorithm("ppdm", tiny=True, codebook_size=0)
    with pytest.raises(ValueError, match="block"):
        create_algorithm("ppdm", tiny=True, block="dense")
    model = create_algorithm("ppdm", tiny=True)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit_epoch([_images(1)])
    with pytest.raises(ValueError, match="shape"):
        model.predict(_images(1, 32))

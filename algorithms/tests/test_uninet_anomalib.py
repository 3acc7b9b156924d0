"""UniNet against anomalib 2.7's ``UniNetModel`` (the oracle): equal maps and losses, its departures isolated.

Both are built with the same random-initialised backbone and anomalib gets our weights through
the mapping documented in ``algorithms/tests/peers_uninet.py`` (teachers by name; bottleneck
``down*`` / ``embed.i.{branch_a, branch_b, fuse, shortcut}`` -> ``conv1..bn3`` /
``bn_layer.0.i.{conv3x3.., conv7x7.., conv3, downsample}``; student ``stage{4-k}`` ->
``layer{k}``; ``dfs.weights.l`` -> ``dfs.theta{l+1}``). anomalib hard-codes ResNet-50 channel
counts, so the main pair is ``resnet50`` (where anomalib's layout is the official one throughout).

Equal within 1e-4 (in fact bit for bit on this machine): the anomaly map (sum over the six
teacher-student pairs of ``1 - cos``, upsampled), the training loss (teachers, bottleneck,
student, DFS, ``UniNetLoss``), and the gradient of every network parameter.

Where anomalib 2.7 departs from the official code (``pangdatangtt/UniNet`` @ ``7b3469f``), each
test isolates the difference; ours follows the official code:

* **Image score.** anomalib's ``weighted_decision_mechanism`` computes the top-k weight but then
  returns ``top_k_values[0]``, the *maximum* of the smoothed map, and smooths with a 5x5-truncated
  Gaussian (sigma 4, reflect border); the official score is the *mean* of the top ``k`` values of
  ``scipy.ndimage.gaussian_filter(map, 4)`` (radius 16). anomalib's score is reproduced exactly
  from our (equal) map with its rule.
* **Extra classification head.** anomalib's training loss adds ``BCE(fc(avgpool(student level 1)),
  label)`` for both halves (an ``fc`` the official de-ResNet defines but never uses); without it the
  losses are equal.
* **Source teacher mode.** anomalib puts its source teacher in eval mode at construction, but
  Lightning's ``model.train()`` switches it to train mode, so its BatchNorm statistics drift in
  training (the official ``train_eval`` keeps it in eval mode, as ours).
* **Bottleneck width at WRN50-2.** anomalib's bottleneck uses ``width_per_group=64``; the official
  ``wide_resnet50_2`` passes ``width_per_group=128`` to it (half anomalib's inner width). With our
  bottleneck built narrow, the two are equal at ``wide_resnet50_2`` too.
* **DFS theta.** anomalib registers the thetas (the official code does not) but computes
  ``clamp(sigmoid(w) + 0.5, max=1)`` at ``w = 0``, where ``torch.clamp`` passes no gradient: they
  never move. Ours take the gradient from below at the kink, so ours train (the step test).
* **Temperature and optimiser.** anomalib's Lightning default temperature is 0.1 (official 2; 0.1
  only for six named classes), and it trains with AdamW ``amsgrad=True, eps=1e-10`` and a
  MultiStepLR (x0.2 at 80%); the official code uses plain AdamW (eps 1e-8), no schedule (ours).
  Named here, not run: it needs anomalib's Lightning trainer.
"""

from __future__ import annotations

import inspect

import pytest
import torch

pytest.importorskip("anomalib.models.image.uninet.torch_model")

from algorithms.components.blur import gaussian_blur
from algorithms.tests.peers_uninet import anomalib_training_loss, map_to_anomalib, uninet_pair

SIZE = 64
ATOL = 1e-4


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pair():
    return uninet_pair(size=SIZE, backbone="resnet50")


def test_anomaly_maps_equal_and_the_score_differs_only_by_anomalibs_score_rule(pair):
    ours, theirs = pair
    images = _images(3, seed=0)
    prediction = ours.predict(images)
    with torch.no_grad():
        their = theirs.eval()(images)
    ours_map = torch.from_numpy(prediction.maps["anomaly_map"])
    torch.testing.assert_close(ours_map, their.anomaly_map, atol=ATOL, rtol=0)
    # anomalib's score: the maximum of the 5x5-truncated (radius 2 = truncate 0.5 x sigma 4), reflect-padded blur
    their_rule = gaussian_blur(ours_map, 4.0, truncate=0.5, border="reflect").amax(dim=(1, 2))
    torch.testing.assert_close(their_rule, their.pred_score.flatten(), atol=ATOL, rtol=0)
    # the official rule (ours: top-k mean of the full scipy-equal blur) is another number
    assert (torch.from_numpy(prediction.scores) - their.pred_score.flatten()).abs().min() > 1e-3


def test_training_loss_equals_anomalibs_without_its_classification_head(pair):
    ours, theirs = pair
    images = _images(4, seed=1)
    ours.train()
    theirs.train()
    assert theirs.teachers.source_teacher.training  # anomalib's departure: the frozen teacher's BN in train mode
    theirs.teachers.source_teacher.eval()  # isolated: the official code keeps it in eval mode, as ours
    with torch.no_grad():
        ours_loss = ours.loss(images)
        their_loss = anomalib_training_loss(theirs, images)
        torch.testing.assert_close(ours_loss, their_loss, atol=ATOL, rtol=1e-5)
        # anomalib's own training forward adds BCE of its fc head on both halves (labels 0: normal images)
        labels = torch.zeros(4)
        with_head = theirs(images, labels=labels)
        decoded = theirs.student(theirs.bottleneck(theirs.teachers(images)[1]))
        logits = theirs.fc(torch.flatten(theirs.avgpool(decoded[0]), 1)).squeeze().chunk(2)
        bce = sum(torch.nn.functional.binary_cross_entropy_with_logits(z, labels) for z in logits)
        torch.testing.assert_close(with_head, ours_loss + bce, atol=ATOL, rtol=1e-5)
    ours.eval()
    theirs.eval()


def test_training_gradients_equal_anomalibs_except_the_dfs_thetas():
    """The gradient of every network parameter (target teacher, bottleneck, student) agrees within
    1e-4 of the tensor's largest gradient (measured: 2e-6). A few tensors' gradients are zero in exact
    arithmetic (biases of a BatchNorm or conv followed, through a linear map, by a train-mode
    BatchNorm) and rounding noise (< 1e-8) in both: an absolute floor of 1e-7 covers them. An
    Adam step is not compared: it maps such noise to +-lr, whatever its sign."""
    ours, theirs = uninet_pair(size=SIZE, backbone="resnet50")
    images = _images(4, seed=2)
    ours.train()
    theirs.train()
    theirs.teachers.source_teacher.eval()
    ours.loss(images).backward()
    anomalib_training_loss(theirs, images).backward()
    their_parameters = dict(theirs.named_parameters())
    checked = 0
    for key, parameter in ours.model.named_parameters():
        if not parameter.requires_grad or key.startswith("dfs."):
            continue
        grad, their_grad = parameter.grad, their_parameters[map_to_anomalib(key)].grad
        atol = ATOL * float(their_grad.abs().max()) + 1e-7
        torch.testing.assert_close(grad, their_grad, atol=atol, rtol=0, msg=key)
        checked += 1
    assert checked > 300
    # the thetas: anomalib's get exactly zero (torch.clamp at the kink), ours the gradient from below
    assert all(float(their_parameters[f"dfs.theta{i}"].grad.abs().max()) == 0.0 for i in (1, 2, 3))
    assert all(float(w.grad.abs().max()) > 1e-5 for w in ours.model.dfs.weights)


def test_wide_resnet50_2_bottleneck_is_the_official_width_not_anomalibs():
    # ours (official width_per_group=128): the first block's branch conv has 512 outputs, anomalib's 256
    with pytest.raises(AssertionError, match=r"embed\.0\.branch_a\.0\.weight \(512, 1536, 3, 3\) does not map"):
        uninet_pair(size=SIZE, backbone="wide_resnet50_2")
    # with our bottleneck built narrow (anomalib's layout) everything else maps and the maps are equal
    ours, theirs = uninet_pair(size=SIZE, backbone="wide_resnet50_2", narrow_bottleneck=True)
    images = _images(2, seed=3)
    with torch.no_grad():
        their = theirs(images)
    ours_map = torch.from_numpy(ours.predict(images).maps["anomaly_map"])
    torch.testing.assert_close(ours_map, their.anomaly_map, atol=ATOL, rtol=0)


def test_anomalib_defaults_that_depart_from_the_official_code():
    from anomalib.models.image.uninet.lightning_model import UniNet as AnomalibUniNet

    assert inspect.signature(AnomalibUniNet.__init__).parameters["temperature"].default == 0.1  # official: 2

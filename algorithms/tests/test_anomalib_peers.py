"""Differential tests against anomalib 2.7 (a test oracle only): FastFlow, Reverse Distillation, EfficientAD.

Each test builds anomalib's torch model and ours at the same small configuration (random-init
``resnet18`` or small PDNs, no downloads), copies the weights of one into the other with the
documented name mapping, feeds the same batch and compares latents / maps / scores / losses
(within 1e-4), and where it matters one optimiser step. Where anomalib departs from the official
code, the test reproduces anomalib's variant from our pieces to show that the difference is that
departure and nothing else; the docstring names it.
"""

from __future__ import annotations

import pytest
import torch

from .peers import FastflowLoss, fastflow_pair

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

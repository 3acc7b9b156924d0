"""CFlow-AD against anomalib 2.7's ``CflowModel`` (the oracle): equal per-fibre likelihoods and maps.

Weight mapping (anomalib ``CflowModel`` -> ours ``Cflow.model``):

* ``encoder.feature_extractor.*`` (timm ``features_only``) -> ``extractor.model.*``
* ``decoders.i.module_list.j.subnet.{0,2}.*`` (``subnet_fc``) -> ``decoders.i.steps.j.coupling.subnet.{0,2}.*``
* ``...global_scale (1, C)`` / ``global_offset (1, C)`` -> ``...affine.global_scale (C,)`` / ``global_offset (C,)``
* ``...w_perm (C, C)`` (frozen, ``permute_soft=True``) -> ``...permute.weight``

Differences isolated here:

* anomalib normalises by the maximum over the *batch* it is given (per scale, then on the summed
  map); the official code by the maximum over the whole test set; ours by a per-scale constant
  fixed on the training images (``pre_eval``). With our constant set to the batch's per-scale
  maximum, anomalib's map is ours minus its batch minimum (``max(sum) - sum`` vs ``L - sum``).
* anomalib's default is ``permute_soft=False``; the official code (and ours) use ``True``: set here.
"""

from __future__ import annotations

import warnings

import torch

from algorithms.tests.peers import cflow_pair, copy_cflow_decoders

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from anomalib.models.image.cflow.utils import get_logp


def _trained_pair():
    ours, theirs = cflow_pair()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 64, 64, generator=gen)
    ours.fit_epoch([images])  # move the weights away from initialisation, then copy them over
    copy_cflow_decoders(ours, theirs, mixing=False)  # the mixing matrices are frozen
    return (ours, theirs), images


def test_cflow_log_likelihoods_and_maps_equal_anomalibs():
    (ours, theirs), _ = _trained_pair()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        our_log_probs = ours.model.log_prob_maps(images)
        # anomalib's per-fibre log p / C, in its (b h w) order, straight from its decoders.
        features = theirs.encoder(images)
        for level, (layer, ours_map) in enumerate(zip(["layer2", "layer3"], our_log_probs, strict=True)):
            feature = features[layer]
            c = feature.shape[1]
            e_r = feature.permute(0, 2, 3, 1).reshape(-1, c)
            c_r = ours.model.condition(feature)
            z, log_det = theirs.decoders[level](e_r, [c_r])
            their_log_prob = get_logp(c, z, log_det) / c
            torch.testing.assert_close(ours_map.reshape(-1), their_log_prob, atol=1e-4, rtol=1e-5)
        # Maps: our constant set to the batch's per-scale maximum (anomalib's normalisation).
        ours.reference_log_prob.copy_(torch.stack([m.max() for m in our_log_probs]))
        ours.reference_ready.fill_(True)
        our_map = ours.predict(images).maps["anomaly_map"]
        their_map = theirs(images).anomaly_map.reshape(2, 64, 64)
    our_map = torch.as_tensor(our_map)
    torch.testing.assert_close(our_map - our_map.min(), their_map, atol=1e-4, rtol=0)

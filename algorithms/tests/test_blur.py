"""The shared Gaussian smoothing equals ``scipy.ndimage.gaussian_filter`` (the official PatchCore/RD4AD call)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from algorithms.components.blur import gaussian_blur, symmetric_pad_indices


@pytest.mark.parametrize(("height", "width", "sigma"), [(64, 64, 4.0), (40, 72, 4.0), (7, 5, 4.0), (33, 20, 1.5)])
def test_equals_scipy_gaussian_filter_including_the_border(height, width, sigma):
    maps = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height), dtype=torch.float64)
    expected = np.stack([gaussian_filter(m, sigma=sigma) for m in maps.numpy()])  # scipy's defaults
    np.testing.assert_allclose(gaussian_blur(maps, sigma).numpy(), expected, rtol=0, atol=1e-12)
    ours32 = gaussian_blur(maps.float(), sigma).numpy()
    np.testing.assert_allclose(ours32, np.stack([gaussian_filter(m, sigma) for m in maps.float().numpy()]), atol=1e-6)


def test_border_is_half_sample_symmetric_not_torch_reflect():
    assert symmetric_pad_indices(4, 3).tolist() == [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
    assert symmetric_pad_indices(2, 5).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]  # beyond the length
    # torch's "reflect" (the earlier padding) differs from scipy near the edge of a ramp
    ramp = torch.arange(64, dtype=torch.float64).repeat(64, 1)[None]
    old = F.pad(ramp[:, None], (17, 17, 0, 0), mode="reflect")[0, 0]
    new = ramp[0].index_select(1, symmetric_pad_indices(64, 17))
    assert not torch.equal(old, new)
    np.testing.assert_allclose(gaussian_blur(ramp, 4.0)[0].numpy(), gaussian_filter(ramp[0].numpy(), 4.0), atol=1e-10)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        gaussian_blur(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(torch.zeros(1, 4, 4), 0.0)

"""2-D sinusoidal positional encoding of feature maps (CFlow-AD, MSFlow, AST, PEFM).

The 1-D encoding of Vaswani et al. (2017, sec. 3.5) applied to each image axis: half of the
channels encode the column (x) and half the row (y). With ``D`` channels and ``d = D / 2``, for
``i = 0 ... d/2 - 1`` and the frequency ``w_i = exp(-2i ln(10^4) / d) = 10^4 ** (-2i / d)``::

    P[2i,       y, x] = sin(x w_i)      P[d + 2i,     y, x] = sin(y w_i)
    P[2i + 1,   y, x] = cos(x w_i)      P[d + 2i + 1, y, x] = cos(y w_i)

with integer pixel positions ``x = 0 ... W-1`` and ``y = 0 ... H-1``. This is the layout of the
official CFlow-AD code (``positionalencoding2d`` in ``model.py``), which PEFM (``PEFM_AD.py``)
and AST use unchanged; ``algorithms-next.md`` section 0.2.
"""

from __future__ import annotations

import math

import torch

__all__ = ["positional_encoding_2d"]


def positional_encoding_2d(
    channels: int, height: int, width: int, *, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """The fixed 2-D sinusoidal encoding ``(channels, height, width)`` of the module docstring.

    Parameters
    ----------
    channels : int
        ``D``, a positive multiple of 4 (sin and cos for each of the two axes).
    height, width : int
        Grid size in positions (feature-map pixels), each at least 1.
    dtype, device
        Of the returned tensor (computed in float64, then cast).

    Returns
    -------
    torch.Tensor
        ``(channels, height, width)``; values in ``[-1, 1]``; the first ``channels / 2``
        channels depend on the column only, the last ``channels / 2`` on the row only.

    Raises
    ------
    ValueError
        ``channels`` is not a positive multiple of 4, or a grid side is below 1.
    """
    if not isinstance(channels, int) or channels < 4 or channels % 4:
        raise ValueError(f"positional_encoding_2d: channels must be a positive multiple of 4, got {channels!r}")
    if height < 1 or width < 1:
        raise ValueError(f"positional_encoding_2d: height and width must be at least 1, got {height} x {width}")
    half = channels // 2
    frequencies = torch.exp(torch.arange(0, half, 2, dtype=torch.float64) * (-math.log(1e4) / half))  # (half/2,)
    columns = torch.arange(width, dtype=torch.float64)[:, None] * frequencies  # (W, half/2)
    rows = torch.arange(height, dtype=torch.float64)[:, None] * frequencies  # (H, half/2)
    encoding = torch.empty(channels, height, width, dtype=torch.float64)
    encoding[0:half:2] = columns.sin().T[:, None, :]
    encoding[1:half:2] = columns.cos().T[:, None, :]
    encoding[half::2] = rows.sin().T[:, :, None]
    encoding[half + 1 :: 2] = rows.cos().T[:, :, None]
    return encoding.to(dtype=dtype, device=device)

"""PEFM's network: PFM's model with the 2-D positional encoding added to every projector input."""

from __future__ import annotations

from ..pfm.model import PfmModel

__all__ = ["PefmModel"]


class PefmModel(PfmModel):
    """:class:`~algorithms.pfm.model.PfmModel` with ``positional=True`` (official ``DualProjectionWithPENet``).

    Each scale's projector adds the fixed encoding
    :func:`~algorithms.components.positional.positional_encoding_2d` (as many channels as the
    features it is added to, the feature grid's size) to the normalised S and T features before
    mapping them, so the model is tied to its ``input_size``. Parameters as ``PfmModel``'s.
    """

    def __init__(self, **kwargs) -> None:
        if "positional" in kwargs:
            raise TypeError("PefmModel always uses the positional encoding; use PfmModel for the plain mapping")
        super().__init__(positional=True, **kwargs)

"""The registered PEFM detector: PFM's detector with PEFM's model and published defaults."""

from __future__ import annotations

from collections.abc import Sequence

from ..pfm.detector import Pfm
from ..registry import register_algorithm
from . import INFO
from .model import PefmModel

__all__ = ["Pefm"]


@register_algorithm(INFO)
class Pefm(Pfm):
    """PEFM (Wan et al., ICME 2022) with the official code's defaults (``PEFM_AD.py``, ``run_PEFM.sh``).

    Parameters as :class:`~algorithms.pfm.detector.Pfm`; the defaults that differ are PEFM's:
    ``latent_dims=(200, 400, 800)`` (``dual_type="small"``, ``--d3 800``) and ``lrs=(3e-4,) * 3``
    (``--lr2/3/4`` defaults; ``run_PEFM.sh`` does not override them). The publication trains with
    batch 16 (``INFO.schedule``). The positional encoding ties the model to ``input_size``.
    """

    model_class = PefmModel

    def __init__(
        self,
        *,
        input_size: int = 256,
        seed: int = 0,
        student_backbone: str = "resnet34.tv_in1k",
        teacher_backbone: str = "resnet50.tv_in1k",
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        latent_dims: Sequence[int] = (200, 400, 800),
        pretrained: bool = True,
        student_weights_path: str | None = None,
        teacher_weights_path: str | None = None,
        lrs: Sequence[float] = (3e-4, 3e-4, 3e-4),
        weight_decay: float = 1e-5,
        bn_calibration: bool = False,
    ) -> None:
        super().__init__(
            input_size=input_size,
            seed=seed,
            student_backbone=student_backbone,
            teacher_backbone=teacher_backbone,
            layers=layers,
            latent_dims=latent_dims,
            pretrained=pretrained,
            student_weights_path=student_weights_path,
            teacher_weights_path=teacher_weights_path,
            lrs=lrs,
            weight_decay=weight_decay,
            bn_calibration=bn_calibration,
        )

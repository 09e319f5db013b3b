"""What each counting convention counts."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Convention:
    name: str
    #: FLOPs per multiply-add of matmuls, convolutions and attention.
    mac_flops: int
    #: Also count fvcore's norm / upsample / adaptive-pool / grid-sample handles.
    fvcore_handles: bool


CONVENTIONS = {
    # torch.utils.flop_counter and torchvision's ``_ops``: 2 FLOPs per multiply-add,
    # matmul / convolution / attention only.
    "pytorch": Convention("pytorch", mac_flops=2, fvcore_handles=False),
    # fvcore / MMEngine: 1 per multiply-add, plus their norm, pooling and upsample handles.
    "fvcore": Convention("fvcore", mac_flops=1, fvcore_handles=True),
}


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown convention {name!r}: choose one of {', '.join(CONVENTIONS)}"
        ) from None

"""Models: the static builder, dynamic ops, the weight-sharing supernet, BN calibration."""

from samplenas.supernet.bn_calibration import calibrate_bn, calibrated_subnet
from samplenas.supernet.fbnet_supernet import FBNetSupernet
from samplenas.supernet.mbconv_supernet import MBConvSupernet
from samplenas.supernet.nasbench201_net import build_nasbench201
from samplenas.supernet.static import FBNetNet, MBConvNet, build_model

__all__ = [
    "FBNetNet",
    "FBNetSupernet",
    "MBConvNet",
    "MBConvSupernet",
    "build_model",
    "build_nasbench201",
    "build_supernet",
    "calibrate_bn",
    "calibrated_subnet",
]


def build_supernet(space):
    """The weight-sharing supernet of a MobileNet-style or FBNetV2-style space; other
    spaces (cells, tabular benchmarks) have none: UserError."""
    from samplenas.errors import UserError
    from samplenas.space import FBNetSpace, MBConvSpace

    if isinstance(space, FBNetSpace):
        return FBNetSupernet(space)
    if isinstance(space, MBConvSpace):
        return MBConvSupernet(space)
    raise UserError(
        f"space '{space.name}' has no supernet; use a MobileNet-style or FBNetV2-style space"
    )

"""Models: the static builder, dynamic ops, the weight-sharing supernet, BN calibration."""

from samplenas.supernet.bn_calibration import calibrate_bn, calibrated_subnet
from samplenas.supernet.mbconv_supernet import MBConvSupernet
from samplenas.supernet.nasbench201_net import build_nasbench201
from samplenas.supernet.static import MBConvNet, build_model

__all__ = [
    "MBConvNet",
    "MBConvSupernet",
    "build_model",
    "build_nasbench201",
    "calibrate_bn",
    "calibrated_subnet",
]

"""Models: the static builder, and (later) dynamic ops, supernets, export and BN calibration."""

from samplenas.supernet.static import MBConvNet, build_model

__all__ = ["MBConvNet", "build_model"]

"""Search spaces, the Arch value type and analytic cost. Imports no model code."""

from samplenas.space.arch import Arch
from samplenas.space.base import Cost, Gene, GeneSpace, SearchSpace
from samplenas.space.fbnet import FBNetConfig, FBNetSpace
from samplenas.space.mbconv import MBConvConfig, MBConvSpace
from samplenas.space.registry import list_spaces, load_space, register_kind, register_space

SUPERNET_SPACES = (MBConvSpace, FBNetSpace)  # the spaces a weight-sharing supernet trains
SupernetSpace = MBConvSpace | FBNetSpace

__all__ = [
    "SUPERNET_SPACES",
    "Arch",
    "Cost",
    "FBNetConfig",
    "FBNetSpace",
    "Gene",
    "GeneSpace",
    "MBConvConfig",
    "MBConvSpace",
    "SearchSpace",
    "SupernetSpace",
    "list_spaces",
    "load_space",
    "register_kind",
    "register_space",
]

"""Samplers: which architectures get trained, scored and searched, and when."""

from samplenas.samplers.base import Sampler, UniformSampler
from samplenas.samplers.flops_conditioned import FlopsConditionedSampler
from samplenas.samplers.flops_prior import FlopsPrior
from samplenas.samplers.registry import make_sampler, register_sampler, sampler_names

__all__ = [
    "FlopsConditionedSampler",
    "FlopsPrior",
    "Sampler",
    "UniformSampler",
    "make_sampler",
    "register_sampler",
    "sampler_names",
]

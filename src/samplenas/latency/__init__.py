"""Latency measured on the device at hand: a per-block lookup table built from a
MobileNet-style space's declaration, and its check against end-to-end timing."""

from samplenas.latency.blocks import Block, arch_blocks, build_block, inventory
from samplenas.latency.check import check_table
from samplenas.latency.measure import time_arch, time_block
from samplenas.latency.table import LatencyTable, build_table, load_table
from samplenas.latency.timing import TimingSettings, time_module

__all__ = [
    "Block",
    "LatencyTable",
    "TimingSettings",
    "arch_blocks",
    "build_block",
    "build_table",
    "check_table",
    "inventory",
    "load_table",
    "time_arch",
    "time_block",
    "time_module",
]

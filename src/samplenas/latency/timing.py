"""Timing a module on the device at hand, under settings that are fixed and recorded.

A latency is only meaningful with what it was measured under: device, threads, batch,
dtype, memory format, torch version and CPU model. ``TimingSettings`` holds them, a
table records them, and every measurement runs under them: warm-up runs first (caches,
oneDNN primitive creation, CUDA kernels), then ``rounds`` rounds of timed repetitions;
the time is the smallest of the rounds' medians. The median is robust to the odd
preempted run, the minimum over rounds to a whole round slowed down: on the 2-core VM
the medians of one network in three rounds differed by a median 26 % and up to 2.3x, and
with one round a table predicted end-to-end time of ``attentive-fashion`` with Kendall τ
0.69 and 11.8 % MAPE; with the minimum of 3 rounds on both sides, τ 0.90 and 4.2 %.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from samplenas.errors import UserError

FORMATS = ("channels-last", "nchw")
DEVICES = ("cpu", "cuda")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str) -> str:
    """The GPU's name for cuda, the CPU model for cpu."""
    return torch.cuda.get_device_name() if device == "cuda" else cpu_model()


def check_device(device: str) -> None:
    """``--device cuda`` on a machine without a usable GPU is a user error, not a crash."""
    if device not in DEVICES:
        raise UserError(f"--device must be one of {list(DEVICES)}, not '{device}'")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda needs a CUDA GPU, and torch sees none here; use --device cpu "
            "or build the table on the GPU machine and copy the JSON back"
        )


@dataclass(frozen=True)
class TimingSettings:
    """Everything a latency depends on besides the network. Equal settings, comparable times."""

    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    memory_format: str = "channels-last"
    warmup: int = 10
    repeats: int = 30
    rounds: int = 3
    dtype: str = "float32"
    torch: str = field(default_factory=lambda: torch.__version__)
    hardware: str = ""

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.memory_format not in FORMATS:
            raise UserError(f"--format must be one of {list(FORMATS)}, not '{self.memory_format}'")
        if not self.hardware:
            object.__setattr__(self, "hardware", device_name(self.device))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any], where: str) -> TimingSettings:
        """Settings a table recorded; a table built on another box keeps its own hardware."""
        names = set(TimingSettings.__dataclass_fields__)
        if not isinstance(d, dict) or set(d) - {"space", "resolutions"} != names:
            raise UserError(
                f"'{where}' has no valid 'settings' (expected keys {sorted(names)}); "
                "build it again with 'samplenas latency build'"
            )
        values = {k: d[k] for k in names}
        cuda_here = torch.cuda.is_available()
        if values["device"] == "cuda" and not cuda_here:  # reading a GPU table is fine
            return _unchecked(values)
        return TimingSettings(**values)


def _unchecked(values: dict[str, Any]) -> TimingSettings:
    """Settings read from a file, without checking the device is here (only for reading)."""
    settings = object.__new__(TimingSettings)
    for k, v in values.items():
        object.__setattr__(settings, k, v)
    return settings


@contextmanager
def applied(settings: TimingSettings) -> Iterator[None]:
    """torch's thread count set for the measurement, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def time_module(module: nn.Module, shape: tuple[int, ...], settings: TimingSettings) -> float:
    """Forward time of ``module`` in milliseconds on an input of ``shape`` (eval mode, no
    autograd): after ``settings.warmup`` untimed runs, the smallest median of
    ``settings.rounds`` rounds of ``settings.repeats`` timed runs (module docstring)."""
    fmt = (
        torch.channels_last
        if settings.memory_format == "channels-last"
        else torch.contiguous_format
    )
    device = torch.device(settings.device)
    module = module.eval().to(device=device, memory_format=fmt)
    x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
    medians = []
    with applied(settings), torch.inference_mode():
        for _ in range(settings.warmup):
            module(x)
        for _ in range(max(1, settings.rounds)):
            times = [_once(module, x, settings.device) for _ in range(settings.repeats)]
            medians.append(statistics.median(times))
    return min(medians)


def _once(module: nn.Module, x: torch.Tensor, device: str) -> float:
    """One timed forward in ms: CUDA events around a synchronised run on a GPU (kernels
    run asynchronously, a wall clock would time the launch), the wall clock on a CPU."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        module(x)
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    module(x)
    return (time.perf_counter() - t0) * 1e3

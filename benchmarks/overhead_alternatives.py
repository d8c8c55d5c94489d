"""Designs measured against the supernet's plain weight slicing, and not adopted.

Run: python benchmarks/overhead_alternatives.py [VARIANT ...]
     -> benchmarks/results/overhead_alternatives.json (kept across runs, per variant)
VARIANTs: slice-accumulate, gather, contiguous, pointwise-gemm, pointwise-gemm-sandwich,
compile-largest, leaf-slices (default: all). Each one patches the layers inside this process only;
"plain" is the slicing shipped before supernet/sliced_linear.py (autograd slices of
``weight[:out, :c_in, 0, 0]``), which this script keeps for comparison (see
benchmarks/sliced_linear.py for the shipped one). The committed JSON's slicing rows were
measured before 1x1 convolutions became GEMMs (2026-11-27), when plain ran them through
oneDNN.
Steps are interleaved (plain, static, variant, static, ... or plain, variant, ...) at
batch 128 on `attentive-fashion`, 2 threads, channels-last, as in supernet_overhead.py;
each ratio is the median of the ratios of adjacent steps, which cancels the host's drift.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samplenas.io import atomic_write_json
from samplenas.space import load_space
from samplenas.supernet import MBConvSupernet
from samplenas.supernet import dynamic as D
from samplenas.supernet.layers import PointwiseConv2d, pointwise_conv
from samplenas.train.optim import sgd

OUT = Path(__file__).parent / "results" / "overhead_alternatives.json"
SECONDS = 40.0
CL = torch.channels_last
Index = tuple[slice, ...]


def plain_cut(weight: torch.Tensor, index: Index) -> torch.Tensor:
    return weight[index]


CUT: dict[str, Callable[[torch.Tensor, Index], torch.Tensor]] = {"fn": plain_cut}


def copy_of_slice(weight: torch.Tensor, index: Index) -> torch.Tensor:
    """A contiguous copy of ``weight[index]``, channels-last when the weight is."""
    view = weight[index]
    four_d = view.ndim == 4 and weight.is_contiguous(memory_format=CL)
    return view.contiguous(memory_format=CL if four_d else torch.contiguous_format)


# -- the dynamic layers as shipped, with every weight slice going through CUT["fn"] -----
def _conv_forward(self, x, gemm: bool = True):
    c_in, out, k = x.shape[1], self.active_out, self.active_kernel
    w, b = self.weight, self.bias
    if b is not None and out != b.shape[0]:
        b = CUT["fn"](b, (slice(0, out),))
    if gemm and k == 1 and self.stride == 1:  # the shipped 1x1 path
        return pointwise_conv(x, CUT["fn"](w, (slice(0, out), slice(0, c_in), 0, 0)), b)
    if out != w.shape[0] or c_in != w.shape[1] or k != w.shape[-1]:
        s = (w.shape[-1] - k) // 2
        w = CUT["fn"](w, (slice(0, out), slice(0, c_in), slice(s, s + k), slice(s, s + k)))
    return F.conv2d(x, w, b, self.stride, k // 2)


def _conv_forward_onednn(self, x):
    """Every dynamic conv through oneDNN, as before 1x1 convs became GEMMs."""
    return _conv_forward(self, x, gemm=False)


def _depthwise_forward(self, x):
    c, k = x.shape[1], self.active_kernel
    w = self.weight
    if c != w.shape[0] or k != w.shape[-1]:
        s = (w.shape[-1] - k) // 2
        w = CUT["fn"](w, (slice(0, c), slice(None), slice(s, s + k), slice(s, s + k)))
    return F.conv2d(x, w, None, self.stride, k // 2, 1, c)


def _bn_forward(self, x):
    c = x.shape[1]
    if c == self.num_features:
        return nn.BatchNorm2d.forward(self, x)
    factor = 0.0
    if self.training:
        self.num_batches_tracked.add_(1)
        tracked = float(self.num_batches_tracked)
        factor = 1.0 / tracked if self.momentum is None else self.momentum
    cut = (slice(0, c),)
    weight, bias = CUT["fn"](self.weight, cut), CUT["fn"](self.bias, cut)
    mean, var = self.running_mean[:c], self.running_var[:c]
    return F.batch_norm(x, mean, var, weight, bias, self.training, factor, self.eps)


def _linear_forward(self, x):
    c = x.shape[1]
    w = self.weight
    if c != w.shape[1]:
        w = CUT["fn"](w, (slice(None), slice(0, c)))
    return F.linear(x, w, self.bias)


def patch_dynamic_layers() -> None:
    D.DynamicConv2d.forward = _conv_forward
    D.DynamicDepthwiseConv2d.forward = _depthwise_forward
    D.DynamicBatchNorm2d.forward = _bn_forward
    D.DynamicLinear.forward = _linear_forward


# -- variant 1: one autograd function per slice, adding into grad[slice] ----------------
class SliceIntoGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, index):
        ctx.weight, ctx.index = weight, index
        return copy_of_slice(weight, index)

    @staticmethod
    def backward(ctx, grad):
        w = ctx.weight
        if w.grad is None:
            w.grad = torch.zeros_like(w)
        w.grad[ctx.index].add_(grad)
        return None, None


# -- variant 2: one autograd function gathering every slice of a forward pass ------------
class GatherSlices(torch.autograd.Function):
    @staticmethod
    def forward(ctx, indices, *weights):
        ctx.indices, ctx.weights = indices, weights
        return tuple(copy_of_slice(w, i) for w, i in zip(weights, indices, strict=True))

    @staticmethod
    def backward(ctx, *grads):
        targets, sources = [], []
        for w, i, g in zip(ctx.weights, ctx.indices, grads, strict=True):
            if g is None:
                continue
            if w.grad is None:
                w.grad = torch.zeros_like(w)
            targets.append(w.grad[i])
            sources.append(g)
        torch._foreach_add_(targets, sources)
        return (None,) * (1 + len(ctx.weights))


class Gatherer:
    """Records which slices one forward pass takes, then serves them from one gather."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.slices: list[tuple[torch.Tensor, Index]] = []
        CUT["fn"] = self._record
        with torch.no_grad():
            model(x)
        self.queue: list[torch.Tensor] = []

    def _record(self, weight, index):
        self.slices.append((weight, index))
        return weight[index]

    def _serve(self, weight, index):
        return self.queue.pop()

    def before_forward(self) -> None:
        weights = [w for w, _ in self.slices]
        out = GatherSlices.apply([i for _, i in self.slices], *weights)
        self.queue = list(reversed(out))
        CUT["fn"] = self._serve


# -- variant 3: detached leaf slices, their gradients added into .grad after backward -----
class LeafRouter:
    """Each slice is a detached view made a leaf tensor, so autograd builds no slice node
    and no full-size zero-filled gradient; when the backward pass ends, one
    ``_foreach_add_`` adds every leaf's gradient into its region of ``.grad``. A weight
    whose first gradient of a step is a slice gets a kept buffer as ``.grad``, and the
    slice is copied in: that buffer is zero outside the slice only because each timed
    loop here trains one fixed arch, or starts from the largest (which writes ``.grad``
    directly); a shipped version would have to zero what earlier steps wrote outside it.
    """

    def __init__(self) -> None:
        self.records: list[tuple[torch.Tensor, torch.Tensor, Index]] = []
        self.buffers: dict[torch.Tensor, torch.Tensor] = {}

    def cut(self, weight: torch.Tensor, index: Index) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return weight[index]
        leaf = weight.detach()[index].requires_grad_()
        self.records.append((leaf, weight, index))
        return leaf

    def attach(self, output: torch.Tensor) -> torch.Tensor:
        records, self.records = self.records, []
        engine = torch.autograd.Variable._execution_engine
        output.register_hook(lambda _: engine.queue_callback(lambda: self._collect(records)))
        return output

    @torch.no_grad()
    def _collect(self, records) -> None:
        copies: tuple[list, list] = ([], [])
        adds: tuple[list, list] = ([], [])
        for leaf, weight, index in records:
            into = adds
            if weight.grad is None:
                if weight not in self.buffers:
                    self.buffers[weight] = torch.zeros_like(weight)
                weight.grad, into = self.buffers[weight], copies
            into[0].append(weight.grad[index])
            into[1].append(leaf.grad)
        if copies[0]:
            torch._foreach_copy_(*copies)
        if adds[0]:
            torch._foreach_add_(*adds)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def faults_per_step(step: Callable[[], float], steps: int = 10) -> float:
    before = minor_faults()
    for _ in range(steps):
        step()
    return (minor_faults() - before) / steps


# -- the harness --------------------------------------------------------------------------
def make_models(
    arch_name: str, space_name: str = "attentive-fashion", batch: int = 128, size: int = 28
):
    """Seeded supernet with ``arch_name`` set, its static model, and one fixed batch."""
    torch.manual_seed(0)
    space = load_space(space_name)
    arch = getattr(space, arch_name)()
    supernet = MBConvSupernet(space).to(memory_format=CL)
    supernet.set_arch(arch)
    static = supernet.export(arch).to(memory_format=CL)
    x = torch.randn(batch, space.config.in_channels, size, size).contiguous(memory_format=CL)
    y = torch.randint(0, space.config.num_classes, (batch,))
    return supernet, static, x, y


def timed_step(model, x, y, opt, before: Callable[[], None] | None = None) -> float:
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    if before is not None:
        before()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t


def interleaved(plain, variant, static=None, seconds: float = SECONDS) -> dict:
    """(plain, static, variant, static) quadruples, or (plain, variant) pairs without a
    static model; each ratio is the median of the ratios of adjacent steps."""
    with_static = static is not None
    static = static or (lambda: 1.0)
    for _ in range(3):
        plain(), static(), variant(), static()
    a, s1, b, s2 = [], [], [], []
    start = time.perf_counter()
    while len(a) < 5 or time.perf_counter() - start < seconds:
        a.append(plain())
        s1.append(static())
        b.append(variant())
        s2.append(static())
    a, s1, b, s2 = map(np.array, (a, s1, b, s2))
    row = {
        "rounds": len(a),
        "plain_ms": 1000 * float(np.median(a)),
        "variant_ms": 1000 * float(np.median(b)),
        "variant_over_plain": float(np.median(b / a)),
    }
    if with_static:
        row["static_ms"] = 1000 * float(np.median(np.concatenate([s1, s2])))
        row["plain_ratio"] = float(np.median(a / s1))
        row["variant_ratio"] = float(np.median(b / s2))
    return row


def gradients(model, x, y, before=None) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    if before is not None:
        before()
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def compare_slicer(variant_cut=None, gather: bool = False) -> dict:
    supernet, static, x, y = make_models("smallest")
    opt_s = sgd(supernet.parameters(), 1e-4, 0.9, False)
    opt_m = sgd(static.parameters(), 1e-4, 0.9, False)
    gatherer = Gatherer(supernet, x) if gather else None
    CUT["fn"] = plain_cut
    reference = gradients(supernet, x, y)
    if gatherer is not None:
        got = gradients(supernet, x, y, gatherer.before_forward)
    else:
        CUT["fn"] = variant_cut
        got = gradients(supernet, x, y)
    same = got.keys() == reference.keys() and all(
        torch.allclose(got[k], reference[k], atol=1e-6) for k in reference
    )

    def plain():
        CUT["fn"] = plain_cut
        return timed_step(supernet, x, y, opt_s)

    def variant():
        if gatherer is not None:
            return timed_step(supernet, x, y, opt_s, gatherer.before_forward)
        CUT["fn"] = variant_cut
        return timed_step(supernet, x, y, opt_s)

    row = interleaved(plain, variant, lambda: timed_step(static, x, y, opt_m))
    return {"gradients_match": same, **row}


SHIPPED_POINTWISE = PointwiseConv2d.forward


def use_pointwise_gemm(on: bool) -> None:
    """1x1 convs as GEMMs (shipped) or through oneDNN, in both models."""
    PointwiseConv2d.forward = SHIPPED_POINTWISE if on else nn.Conv2d.forward
    D.DynamicConv2d.forward = _conv_forward if on else _conv_forward_onednn


def pointwise_rows(arch_name: str) -> dict:
    supernet, static, x, y = make_models(arch_name)
    opt_s = sgd(supernet.parameters(), 1e-4, 0.9, False)
    opt_m = sgd(static.parameters(), 1e-4, 0.9, False)

    def run(model, opt, gemm: bool) -> float:
        use_pointwise_gemm(gemm)
        return timed_step(model, x, y, opt)

    return {
        "supernet": interleaved(
            lambda: run(supernet, opt_s, False),
            lambda: run(supernet, opt_s, True),
            lambda: run(static, opt_m, False),
        ),
        "static": interleaved(
            lambda: run(static, opt_m, False),
            lambda: run(static, opt_m, True),
        ),
    }


def compare_pointwise_gemm() -> dict:
    """Both models with 1x1 convs as GEMMs or through oneDNN, for the smallest and largest."""
    result = {name: pointwise_rows(name) for name in ("smallest", "largest")}
    use_pointwise_gemm(False)
    return result


def compare_pointwise_gemm_sandwich() -> dict:
    """The default recipe's step (largest + 1 random + smallest) with and without GEMMs;
    both steps of a pair train the same random sub-network."""
    space = load_space("attentive-fashion")
    torch.manual_seed(0)
    supernet = MBConvSupernet(space).to(memory_format=CL)
    opt = sgd(supernet.parameters(), 1e-4, 0.9, False)
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=CL)
    y = torch.randint(0, 10, (128,))
    rng = np.random.default_rng(0)
    current = {"arch": space.sample(rng)}

    def step(gemm: bool) -> float:
        use_pointwise_gemm(gemm)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for arch in (space.largest(), current["arch"], space.smallest()):
            supernet.set_arch(arch)
            F.cross_entropy(supernet(x), y).backward()
        opt.step()
        return time.perf_counter() - t

    def plain() -> float:
        current["arch"] = space.sample(rng)
        return step(False)

    row = interleaved(plain, lambda: step(True), seconds=120.0)
    use_pointwise_gemm(False)
    return row


def compare_compile_largest() -> dict:
    """torch.compile on the largest sub-network (as trained: dropout, stochastic depth)."""
    space = load_space("attentive-fashion")
    torch.manual_seed(0)
    supernet = MBConvSupernet(space).to(memory_format=CL)
    supernet.set_arch(space.largest(), dropout=0.2, drop_path_rate=0.2)
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=CL)
    y = torch.randint(0, 10, (128,))
    opt = sgd(supernet.parameters(), 1e-4, 0.9, False)
    compiled = torch.compile(supernet)
    start = time.perf_counter()
    timed_step(compiled, x, y, opt)
    compile_seconds = time.perf_counter() - start
    row = interleaved(
        lambda: timed_step(supernet, x, y, opt),
        lambda: timed_step(compiled, x, y, opt),
        seconds=60.0,
    )
    return {"compile_seconds": compile_seconds, **row}


def leaf_rows(space_name: str, batch: int, size: int, seconds: float) -> dict:
    """Autograd slicing vs leaf slices: the smallest against its static model, and the
    default recipe's step (largest + 1 random + smallest; same random arch in a pair)."""
    space = load_space(space_name)
    supernet, static, x, y = make_models("smallest", space_name, batch, size)
    opt_s = sgd(supernet.parameters(), 1e-4, 0.9, False)
    opt_m = sgd(static.parameters(), 1e-4, 0.9, False)
    router = LeafRouter()

    def backward(archs, routed: bool) -> None:
        """Gradients of ``archs`` accumulated from zero, by either slicing."""
        CUT["fn"] = router.cut if routed else plain_cut
        supernet.zero_grad(set_to_none=True)
        for arch in archs:
            supernet.set_arch(arch)
            out = supernet(x)
            F.cross_entropy(router.attach(out) if routed else out, y).backward()

    def step(archs, routed: bool) -> float:
        t = time.perf_counter()
        backward(archs, routed)
        opt_s.step()
        return time.perf_counter() - t

    rng = np.random.default_rng(0)
    current = {"arch": space.sample(rng)}

    def sandwich(routed: bool) -> float:
        if not routed:
            current["arch"] = space.sample(rng)
        return step((space.largest(), current["arch"], space.smallest()), routed)

    def grads_of(archs, routed: bool) -> dict[str, torch.Tensor]:
        backward(archs, routed)
        return {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}

    smallest = [space.smallest()]
    same = True
    for archs in (smallest, (space.largest(), space.sample(rng), space.smallest())):
        want, got = grads_of(archs, False), grads_of(archs, True)
        same &= want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)
    router.buffers.clear()  # each loop below starts from zero buffers (see LeafRouter)
    row: dict = {
        "smallest": interleaved(
            lambda: step(smallest, False),
            lambda: step(smallest, True),
            lambda: timed_step(static, x, y, opt_m),
            seconds=seconds,
        )
    }
    router.buffers.clear()
    row["sandwich"] = interleaved(
        lambda: sandwich(False), lambda: sandwich(True), seconds=2 * seconds
    )
    router.buffers.clear()
    row["smallest"]["minor_faults_per_step"] = {
        "plain": faults_per_step(lambda: step(smallest, False)),
        "variant": faults_per_step(lambda: step(smallest, True)),
        "static": faults_per_step(lambda: timed_step(static, x, y, opt_m)),
    }
    return {"gradients_equal": same, **row}


def compare_leaf_slices() -> dict:
    return {
        "attentive-fashion, batch 128": leaf_rows("attentive-fashion", 128, 28, 45.0),
        "attentive, batch 8": leaf_rows("attentive", 8, 224, 45.0),
    }


VARIANTS: dict[str, Callable[[], dict]] = {
    "slice-accumulate": lambda: compare_slicer(SliceIntoGrad.apply),
    "gather": lambda: compare_slicer(gather=True),
    "contiguous": lambda: compare_slicer(copy_of_slice),
    "pointwise-gemm": compare_pointwise_gemm,
    "pointwise-gemm-sandwich": compare_pointwise_gemm_sandwich,
    "compile-largest": compare_compile_largest,
    "leaf-slices": compare_leaf_slices,
}


def main() -> None:
    torch.set_num_threads(2)
    names = sys.argv[1:] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    patch_dynamic_layers()
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for name in names:
        result[name] = VARIANTS[name]()
        print(name, result[name], flush=True)
        atomic_write_json(OUT, result)


if __name__ == "__main__":
    main()

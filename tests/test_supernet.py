"""The weight-sharing supernet: export equivalence, slicing rules, BN calibration."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samplenas import load_space
from samplenas.data import BatchLoader, load_dataset
from samplenas.supernet import MBConvSupernet, calibrate_bn, calibrated_subnet, sliced_linear
from samplenas.supernet.dynamic import centre
from samplenas.supernet.mbconv_supernet import shared_name
from test_static_model import measured_cost


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


def count_calls(monkeypatch, function: type[torch.autograd.Function]) -> dict[str, int]:
    calls = {"apply": 0}
    apply = function.apply

    def counted(*args):
        calls["apply"] += 1
        return apply(*args)

    monkeypatch.setattr(function, "apply", counted)
    return calls


@pytest.mark.parametrize("name, size", [("tiny", 8), ("attentive-fashion", 28)])
def test_export_computes_the_same_function(name, size):
    space = load_space(name)
    net = MBConvSupernet(space)
    randomize_bn(net)
    net.eval()
    x = torch.randn(4, space.config.in_channels, size, size)
    archs = [space.smallest(), space.largest(), *space.sample_many(np.random.default_rng(0), 6)]
    for arch in archs:
        net.set_arch(arch)
        exported = net.export(arch).eval()
        with torch.no_grad():
            assert torch.allclose(net(x), exported(x), atol=1e-5), arch
        mflops, params = measured_cost(space, arch)
        cost = space.cost(arch)
        assert cost.mflops == pytest.approx(mflops, rel=1e-6)
        assert cost.params_m == pytest.approx(sum(p.numel() for p in exported.parameters()) / 1e6)
        assert cost.params_m == pytest.approx(params)


def test_channels_last_gives_the_same_outputs():
    space = load_space("attentive-fashion")
    net = MBConvSupernet(space).eval()
    randomize_bn(net)
    x = torch.randn(3, 1, 28, 28)
    arch = space.sample(np.random.default_rng(1))
    net.set_arch(arch)
    with torch.no_grad():
        ref = net(x)
        net = net.to(memory_format=torch.channels_last)
        out = net(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


@pytest.mark.parametrize(
    "layout, function_min",
    [(torch.contiguous_format, None), (torch.channels_last, None), (torch.channels_last, 0)],
    ids=["nchw", "channels-last", "channels-last-sliced-linear"],
)
@pytest.mark.parametrize("seed", [3, 4])
def test_a_subnet_gradient_is_its_static_models_gradient_inside_the_slice(
    layout, function_min, seed, monkeypatch
):
    """Training a sub-network in the supernet trains exactly its exported model's weights.

    Channels-last with ``FUNCTION_MIN_ELEMENTS`` at 0 runs every sliced 1x1 convolution and
    the classifier through ``SlicedLinear``'s hand-written backward (the tiny space's
    weights are all below the real threshold); the other cases use autograd slices.
    """
    if function_min is not None:
        monkeypatch.setattr(sliced_linear, "FUNCTION_MIN_ELEMENTS", function_min)
    calls = count_calls(monkeypatch, sliced_linear.SlicedLinear)
    space = load_space("tiny")
    torch.manual_seed(1)
    net = MBConvSupernet(space).to(memory_format=layout)
    arch = space.sample(np.random.default_rng(seed))
    x, y = torch.randn(8, 1, 8, 8).contiguous(memory_format=layout), torch.randint(0, 10, (8,))
    net.set_arch(arch)
    F.cross_entropy(net(x), y).backward()
    assert (calls["apply"] > 0) == (function_min == 0)
    grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    static = net.export(arch).to(memory_format=layout)
    F.cross_entropy(static(x), y).backward()
    mapping = net._block_map(arch)
    for name, p in static.named_parameters():
        full = grads[shared_name(name, mapping)]
        inside = full[tuple(slice(0, n) for n in p.shape[:2])]
        if p.ndim == 4 and p.shape[-1] != full.shape[-1]:
            inside = centre(inside, p.shape[-1])
        assert torch.allclose(inside, p.grad, atol=1e-6), name
        assert float(full.abs().sum()) == pytest.approx(float(inside.abs().sum()), rel=1e-5)


def test_smaller_kernel_is_the_centre_of_the_largest():
    space = load_space("tiny")
    net = MBConvSupernet(space)
    arch = space.largest().replace(kernel_size=[3, 3])
    exported = net.export(arch)
    big = net.blocks[0].depthwise[0].weight
    small = exported.blocks[0].depthwise[0].weight
    assert big.shape[-1] == 5 and small.shape[-1] == 3
    assert torch.equal(small, big[:, :, 1:4, 1:4][: small.shape[0]])
    assert torch.equal(centre(big, 3), big[:, :, 1:4, 1:4])


def test_elastic_depth_runs_only_the_first_blocks():
    space = load_space("tiny")
    net = MBConvSupernet(space)
    arch = space.largest().replace(depth=[1, 2])
    net.set_arch(arch)
    x = torch.randn(8, 1, 8, 8)
    F.cross_entropy(net(x), torch.randint(0, 10, (8,))).backward()
    first_stage_second_block = net.blocks[net.stage_offsets[0] + 1]
    assert all(p.grad is None for p in first_stage_second_block.parameters())
    assert all(p.grad is not None for p in net.blocks[0].parameters())
    assert len(net.export(arch).blocks) == 3


def train_tiny_supernet(steps: int = 150):
    space = load_space("tiny")
    data = load_dataset("digits", val_size=300, seed=0)
    torch.manual_seed(0)
    net = MBConvSupernet(space)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loader = BatchLoader(data, batch_size=64, seed=0)
    rng = np.random.default_rng(0)
    step = 0
    while step < steps:
        for x, y in loader.epoch(step):
            opt.zero_grad()
            for arch in (space.largest(), space.sample(rng), space.smallest()):
                net.set_arch(arch)
                F.cross_entropy(net(x), y).backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    return space, data, net


def accuracy(model, data) -> float:
    model.eval()
    loader = BatchLoader(data, "val", 300, shuffle=False, augment=False, drop_last=False)
    with torch.no_grad():
        x, y = next(loader.epoch(0))
        return float((model(x).argmax(1) == y).float().mean() * 100)


def calib_batches(data, n=4):
    loader = BatchLoader(data, "train", 128, shuffle=True, augment=False, seed=1)
    return [x for x, _ in list(loader.epoch(0))[:n]]


def test_bn_calibration_restores_accuracy_after_garbage_statistics():
    space, data, net = train_tiny_supernet()
    model = net.export(space.smallest())
    calibrate_bn(model, calib_batches(data), 4)
    good = accuracy(model, data)
    assert good > 70
    for m in model.modules():  # spoil the statistics, keep the trained affine weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 3)
            m.running_var.uniform_(20, 50)
    spoiled = accuracy(model, data)
    calibrate_bn(model, calib_batches(data), 4)
    assert spoiled < good - 30
    assert accuracy(model, data) == pytest.approx(good, abs=1.0)
    assert model.training is False  # calibration restores the mode it found


def test_calibration_ignores_dropout_and_stochastic_depth():
    """Only BN layers train during calibration: regularisers cannot bias the statistics."""
    space, data, net = train_tiny_supernet(10)
    arch = space.largest()
    plain, regularised = copy.deepcopy(net), copy.deepcopy(net)
    plain.set_arch(arch)
    regularised.set_arch(arch, dropout=0.5, drop_path_rate=0.9)
    regularised.train()
    torch.manual_seed(0)
    calibrate_bn(plain, calib_batches(data), 4)
    calibrate_bn(regularised, calib_batches(data), 4)
    for (name, a), (_, b) in zip(plain.named_buffers(), regularised.named_buffers(), strict=True):
        assert torch.allclose(a, b), name
    assert regularised.training is True  # every module's mode is put back


def test_calibrating_one_subnet_leaves_the_shared_state_alone():
    space, data, net = train_tiny_supernet(40)
    other = space.largest()
    net.eval()
    net.set_arch(other)
    x = calib_batches(data, 1)[0]
    with torch.no_grad():
        before = net(x).clone()
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    with calibrated_subnet(net, space.smallest(), calib_batches(data), 4) as sub:
        assert sub.active_arch == space.smallest()
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert net.active_arch == other
    with torch.no_grad():
        assert torch.equal(net(x), before)


@pytest.mark.parametrize("x_grad", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_sliced_linear_gradients_match_autograd_slicing(x_grad, bias):
    torch.manual_seed(0)
    weight = torch.randn(12, 10, 1, 1, requires_grad=True)
    b = torch.randn(12, requires_grad=True) if bias else None
    x = torch.randn(6, 7, requires_grad=x_grad)
    out = sliced_linear.SlicedLinear.apply(x, weight, b, 5)
    want = F.linear(x, weight[:5, :7, 0, 0], b[:5] if bias else None)
    assert torch.allclose(out, want)
    upstream = torch.randn_like(out)
    inputs = [t for t in (x, weight, b) if t is not None and t.requires_grad]
    got = torch.autograd.grad(out, inputs, upstream)
    ref = torch.autograd.grad(want, inputs, upstream)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape and torch.allclose(g, r, atol=1e-6)
    assert float(got[1 if x_grad else 0][5:].abs().sum()) == 0.0


def test_sliced_linear_under_autocast_matches_autograd_slicing():
    """Autocast runs the forward in bfloat16; the backward must still return float32
    gradients of the right shape, close to autograd slicing's."""
    torch.manual_seed(0)
    weight = torch.randn(12, 10, requires_grad=True)
    x = torch.randn(6, 7, requires_grad=True)
    grads = []
    for fn in (
        lambda: sliced_linear.SlicedLinear.apply(x, weight, None, 5),
        lambda: F.linear(x, weight[:5, :7]),
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn()
        assert out.dtype == torch.bfloat16
        grads.append(torch.autograd.grad(out.float().sum(), [x, weight]))
    for g, r in zip(*grads, strict=True):
        assert g.dtype == r.dtype == torch.float32
        assert torch.allclose(g, r, atol=0.05, rtol=0.02)

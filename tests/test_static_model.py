"""The static builder's measured cost equals the analytic cost the spaces compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from samplenas import load_space
from samplenas.supernet import build_model


def measured_cost(space, arch) -> tuple[float, float]:
    """(MFLOPs as multiply-accumulates, params in millions) of the built model, on meta."""
    with torch.device("meta"):
        model = build_model(space, arch)
        r = arch["resolution"]
        x = torch.zeros(1, space.config.in_channels, r, r)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    params = sum(p.numel() for p in model.parameters())
    return counter.get_total_flops() / 2e6, params / 1e6


@pytest.mark.parametrize("name", ["attentive", "attentive-fashion", "tiny"])
def test_analytic_cost_equals_flop_counter(name):
    space = load_space(name)
    rng = np.random.default_rng(0)
    archs = [space.smallest(), space.largest(), *space.sample_many(rng, 100)]
    for arch in archs:
        mflops, params = measured_cost(space, arch)
        cost = space.cost(arch)
        # exactly: the analytic count is the same sum of integer products
        assert cost.mflops == mflops, arch
        assert cost.params_m == params, arch


def test_model_runs_and_resizes_input_to_its_resolution():
    space = load_space("attentive-fashion")
    arch = space.smallest()
    model = build_model(space, arch).eval()
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_builder_rejects_an_arch_outside_the_space():
    from samplenas import UserError

    space = load_space("tiny")
    with pytest.raises(UserError):
        build_model(space, {**space.smallest().to_json(), "resolution": 7})

"""The NAS-Bench-201 network builder: its measured cost is the space's analytic cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from samplenas import load_space
from samplenas.supernet import build_nasbench201

SPACES = ["nas-bench-201", "nas-bench-201-cifar100", "nas-bench-201-imagenet16-120"]


def measured_cost(space, arch) -> tuple[float, float]:
    """(MFLOPs as multiply-accumulates, params in millions) of the built model, on meta."""
    with torch.device("meta"):
        model = build_nasbench201(space, arch).eval()
        x = torch.zeros(1, 3, space.resolution, space.resolution)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    params = sum(p.numel() for p in model.parameters())
    return counter.get_total_flops() / 2e6, params / 1e6


@pytest.mark.slow  # about 25 s per space: 102 networks through FlopCounterMode on meta
@pytest.mark.parametrize("name", SPACES)
def test_analytic_cost_equals_flop_counter(name):
    space = load_space(name)
    rng = np.random.default_rng(0)
    for arch in [space.smallest(), space.largest(), *space.sample_many(rng, 100)]:
        mflops, params = measured_cost(space, arch)
        cost = space.cost(arch)
        assert cost.mflops == mflops, space.to_string(arch)  # the same integer sum
        assert cost.params_m == params, space.to_string(arch)


@pytest.mark.parametrize("name", SPACES)
def test_forward_gives_logits_and_an_all_none_cell_runs(name):
    space = load_space(name)
    r = space.resolution
    for key in ("000000", "333133"):
        model = build_nasbench201(space, space.from_key(key)).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, r, r))
        assert out.shape == (2, space.num_classes) and torch.isfinite(out).all()


def test_the_string_form_builds_and_other_spaces_are_refused():
    space = load_space("nas-bench-201")
    model = build_nasbench201(
        space, "|none~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"
    )
    assert sum(p.numel() for p in model.parameters()) == 73_306
    with pytest.raises(TypeError):
        build_nasbench201(load_space("tiny"), {"ops": ["none"] * 6})

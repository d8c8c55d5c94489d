"""FBNetV2-style spaces (FP-NAS Tables 1-2): sizes, groups, exact cost, Split-Attention,
skipped blocks and the weight-sharing supernet's export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from samplenas import UserError, load_space
from samplenas.cli import main
from samplenas.space import FBNetConfig, FBNetSpace
from samplenas.supernet import FBNetSupernet, build_model, build_supernet
from samplenas.supernet.layers import SplitAttention, split_attend
from test_static_model import measured_cost
from test_supernet import randomize_bn

FBNET_224 = ["fbnetv2-f", "fbnetv2-f-fine", "fbnetv2-f-plus"]
FBNET_FASHION = ["fbnetv2-fashion", "fbnetv2-fashion-fine"]


def assert_cost_exact(name: str, n: int) -> None:
    space = load_space(name)
    rng = np.random.default_rng(0)
    for arch in [space.smallest(), space.largest(), *space.sample_many(rng, n)]:
        mflops, params = measured_cost(space, arch)
        cost = space.cost(arch)
        assert cost.mflops == mflops, arch
        assert cost.params_m == params, arch


@pytest.mark.parametrize(
    "name, n", [(s, 100) for s in FBNET_FASHION] + [(s, 10) for s in FBNET_224]
)
def test_analytic_cost_equals_flop_counter(name, n):
    assert_cost_exact(name, n)


@pytest.mark.slow  # 100 ImageNet-sized networks per space through FlopCounterMode on meta
@pytest.mark.parametrize("name", FBNET_224)
def test_analytic_cost_equals_flop_counter_100_archs(name):
    assert_cost_exact(name, 100)


def test_table_1_sizes_and_groups():
    coarse, fine, plus = (load_space(n) for n in FBNET_224)
    # Table 1 -> 10 block groups, 17 blocks; per group 3 kernels x 2 activations x 2 SE x
    # 6 expansions (the first group: 1) x its widths
    widths = [2, 3, 3, 4, 4, 5, 5, 6, 10, 10]
    expected = math.prod(12 * (1 if i == 0 else 6) * w for i, w in enumerate(widths))
    assert coarse.size() == expected
    assert f"{coarse.size():.2g}" == "2.7e+24"
    assert len(coarse.config.groups) == 10 and len(fine.config.groups) == 17
    # FBNetV2-F++ adds Split-Attention 2/4 to every group: 2^10 = the paper's "10^3 x"
    assert plus.size() == coarse.size() * 2**10
    assert fine.size() > coarse.size() * 10**18
    assert coarse.distinct_size() < coarse.size()


@pytest.mark.parametrize("name", FBNET_224 + FBNET_FASHION)
def test_variable_groups_partition_the_genes_block_group_by_block_group(name):
    space = load_space(name)
    groups = space.variable_groups()
    assert sorted(j for g in groups for j in g) == list(range(len(space.genes)))
    assert groups[0] == [0] and space.genes[0].field == "resolution"
    assert len(groups) == 1 + len(space.config.groups)
    for u, g in enumerate(groups[1:]):
        fields = [space.genes[j].field for j in g]
        assert fields == ["kernel", "swish", "attention", "expand_pct", "width"]
        assert {space.genes[j].index for j in g} == {u}


def test_fine_space_has_one_group_per_block_and_shares_the_networks():
    coarse, fine = load_space("fbnetv2-fashion"), load_space("fbnetv2-fashion-fine")
    blocks = sum(g.repeat for g in coarse.config.groups)
    assert len(fine.config.groups) == blocks and all(g.repeat == 1 for g in fine.config.groups)
    assert fine.cost(fine.largest()) == coarse.cost(coarse.largest())
    assert fine.cost(fine.smallest()) == coarse.cost(coarse.smallest())
    # a coarse arch is the fine arch that repeats each group's choices over its blocks
    arch = coarse.sample(np.random.default_rng(3))
    repeats = [g.repeat for g in coarse.config.groups]
    spread = {
        f: [v for v, r in zip(arch[f], repeats, strict=True) for _ in range(r)]
        for f in ("kernel", "swish", "attention", "expand_pct", "width")
    }
    assert fine.cost({"resolution": 28, **spread}) == coarse.cost(arch)


def test_split_attention_weights_sum_to_one_over_the_splits():
    torch.manual_seed(0)
    split = torch.randn(2, 6, 5, 5)
    same = torch.repeat_interleave(split, 4, dim=1)  # 4 equal splits per channel
    reduce = torch.nn.Conv2d(6, 8, 1)
    expand = torch.nn.Conv2d(8, 24, 1)
    assert torch.allclose(split_attend(same, 4, reduce, expand), split, atol=1e-6)
    y = torch.randn(2, 24, 5, 5)  # different splits: a convex combination, per channel
    out = split_attend(y, 4, reduce, expand)
    splits = y.unflatten(1, (6, 4))
    assert out.shape == (2, 6, 5, 5)
    assert (out <= splits.max(2).values + 1e-6).all() and (out >= splits.min(2).values - 1e-6).all()


def test_split_attention_module_shapes_and_cost():
    sa = SplitAttention(32, 4, 5, 2, "swish")
    assert sa.conv[0].weight.shape == (128, 1, 5, 5)  # 4 depthwise filters per channel
    assert sa(torch.randn(3, 32, 9, 9)).shape == (3, 32, 5, 5)
    space = load_space("fbnetv2-fashion")
    base = space.largest().to_json()
    n = len(base["attention"])
    cost = {a: space.cost({**base, "attention": [a] * n}) for a in (0, 1, 2, 4)}
    assert cost[0].mflops < cost[1].mflops < cost[2].mflops < cost[4].mflops


def test_supernet_keeps_its_own_weights_per_split_count():
    space = load_space("fbnetv2-fashion")
    net = FBNetSupernet(space, zero_init_last_bn=False)  # else no gradient reaches the convs
    block = net.blocks[3]
    assert set(block.sa) == {"2", "4"}
    w2, w4 = block.sa["2"].conv[0].weight, block.sa["4"].conv[0].weight
    assert w4.shape[0] == 2 * w2.shape[0] == 4 * block.depthwise[0].weight.shape[0]
    # training SA-2 leaves SA-4's and the plain depthwise's weights untouched
    arch = space.largest().to_json()
    net.set_arch({**arch, "attention": [2] * len(arch["attention"])})
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    assert w2.grad is not None and w2.grad.abs().sum() > 0
    assert w4.grad is None and block.depthwise[0].weight.grad is None


def test_skipped_blocks_are_their_shortcut_alone():
    space = load_space("fbnetv2-fashion")
    arch = space.largest().to_json()
    skipped = {**arch, "kernel": [0] * len(arch["kernel"])}
    model = build_model(space, skipped)
    convs = [m for m in model.blocks.modules() if isinstance(m, torch.nn.Conv2d)]
    # only the 1x1 projections where widths change: depth is variable
    assert all(m.kernel_size == (1, 1) for m in convs)
    widths = [16, *arch["width"]]
    changes = sum(1 for u, g in enumerate(space.config.groups) if widths[u] != widths[u + 1])
    assert len(convs) == changes
    assert space.cost(skipped).mflops < space.cost(arch).mflops / 5


@pytest.mark.parametrize("name", FBNET_FASHION)
def test_export_computes_the_same_function(name):
    space = load_space(name)
    net = build_supernet(space)
    assert isinstance(net, FBNetSupernet)
    randomize_bn(net)
    net.eval()
    x = torch.randn(3, 1, 28, 28)
    archs = [space.smallest(), space.largest(), *space.sample_many(np.random.default_rng(0), 6)]
    for arch in archs:
        net.set_arch(arch)
        exported = net.export(arch).eval()
        with torch.no_grad():
            assert torch.allclose(net(x), exported(x), atol=1e-5), arch
        assert space.cost(arch).params_m == pytest.approx(
            sum(p.numel() for p in exported.parameters()) / 1e6
        )


def test_supernet_channels_last_and_training_mode_match_the_export():
    space = load_space("fbnetv2-fashion")
    net = build_supernet(space)
    randomize_bn(net)
    arch = space.sample(np.random.default_rng(5))
    net.set_arch(arch)
    exported = net.export(arch)
    net.train(), exported.train()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref = exported(x)
        net = net.to(memory_format=torch.channels_last)
        out = net(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-4)


def test_yaml_errors_name_the_key():
    base = {
        "kind": "fbnet",
        "resolution": 28,
        "stem": {"width": 8},
        "head": {"width": 32},
        "groups": [{"expand": [0.75, 1.5, 0.75], "width": [8, 16, 8]}],
    }
    space = FBNetSpace(FBNetConfig.from_dict(base, "mine"))
    assert space.genes[4].choices == (75, 150)  # expand_pct
    for change, key in [
        ({"attention": [0, 3]}, "attention"),
        ({"kernel": [4]}, "kernel"),
        ({"groups": [{"expand": [1.5, 0.75, 0.75], "width": 8}]}, "expand"),
        ({"groups": [{"expand": 1, "width": 8, "depth": 2}]}, "depth"),
    ]:
        with pytest.raises(UserError, match=key):
            FBNetConfig.from_dict({**base, **change}, "mine")
    with pytest.raises(UserError, match="expand_pct"):
        space.validate({**space.largest().to_json(), "expand_pct": [100]})


def test_cost_cli_and_space_listing(capsys, tmp_path):
    space = load_space("fbnetv2-fashion")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.largest().to_json()))
    assert main(["cost", "--space", "fbnetv2-fashion", "--arch", str(arch), "--json"]) == 0
    cost = space.cost(space.largest())
    assert json.loads(capsys.readouterr().out) == {
        "mflops": cost.mflops,
        "params_m": cost.params_m,
    }
    assert main(["spaces", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert set(FBNET_224 + FBNET_FASHION) <= names
    assert main(["cost", "--space", "fbnetv2-fashion", "--arch", '{"resolution": 28}']) == 2
    assert "lacks field(s)" in capsys.readouterr().err


def test_supernet_trains_and_evaluates_through_the_cli(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--space", "fbnetv2-fashion", "--epochs", "1"]
    argv += ["--set", "data.train_subset=128", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    space = load_space("fbnetv2-fashion")
    arch = space.sample(np.random.default_rng(0))
    assert main(["eval", "--run", str(out), "--arch", arch.to_json_str(), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mflops"] == space.cost(arch).mflops
    assert 0 <= result["top1"] <= 100

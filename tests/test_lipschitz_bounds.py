"""Analytic Lipschitz bounds (Behrmann et al. 2021, table 3) against exact constants of blocks
where they are known, against the empirical local constants of a small Glow and ResFlow, and
`flowforge lipschitz` end to end on a tiny trained Glow."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import CONFIGS, needs_mnist, perturb
from flowforge.bijections import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Chain,
    InvertibleConv1x1,
    InvertibleConv1x1LU,
    ResidualBlock,
)
from flowforge.bijections.scale_functions import SCALE_FUNCTIONS
from flowforge.cli import main
from flowforge.diagnostics import jacobian, lipschitz_nets, lipschitz_report
from flowforge.diagnostics.lipschitz_bounds import GLOBAL_SCALE_CONSTANTS, BlockBound, block_bound
from flowforge.diagnostics.lipschitz_nets import conv_norm_bound, conv_operator_norm, lipschitz_bound
from flowforge.diagnostics.lipschitz_report import lipschitz_table, render_markdown
from flowforge.models import create


def _table(block, x):
    return lipschitz_table(block, x.double())


def _only_row(r):
    (row,) = r["blocks"]
    return row


def test_actnorm_bounds_are_its_extreme_scales():
    layer = ActNorm(3)
    with torch.no_grad():
        layer.log_scale.copy_(torch.log(torch.tensor([2.0, 0.25, 1.5])))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    row = _only_row(_table(layer, torch.randn(3, 3, 2, 2)))
    # the float32 parameters round log 2 and log 0.25 (1e-9 relative); the float64 map uses the same values
    assert row["forward_bound"] == pytest.approx(2.0, rel=1e-7) and row["inverse_bound"] == pytest.approx(4.0, rel=1e-7)
    assert row["forward_empirical"] == pytest.approx(row["forward_bound"], rel=1e-12)
    assert row["inverse_empirical"] == pytest.approx(row["inverse_bound"], rel=1e-12)
    assert row["holds"] is True and row["scope"] == "exact"


@pytest.mark.parametrize("kind", ["diagonal", "orthogonal", "lu"])
def test_conv1x1_bounds_are_the_matrix_norms(kind):
    if kind == "lu":
        layer, expected = InvertibleConv1x1LU(4, seed=3), (1.0, 1.0)  # starts as a rotation
    else:
        layer = InvertibleConv1x1(4, seed=3)
        if kind == "diagonal":
            with torch.no_grad():
                layer.weight.copy_(torch.diag(torch.tensor([3.0, -0.5, 1.0, 0.2])))
            expected = (3.0, 5.0)
        else:
            expected = (1.0, 1.0)
    row = _only_row(_table(layer, torch.randn(2, 4, 3, 3)))
    assert (row["forward_bound"], row["inverse_bound"]) == pytest.approx(expected, rel=1e-6)
    assert (row["forward_empirical"], row["inverse_empirical"]) == pytest.approx(expected, rel=1e-6)
    assert row["holds"] is True


def _linear_factory(weight):
    def factory(in_features, out_features):
        layer = nn.Linear(in_features, out_features)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.normal_()
        return layer
    return factory


def test_additive_coupling_with_linear_t():
    w = torch.tensor([[2.0, 1.0], [0.0, -1.0], [0.5, 0.5]])  # t: R^2 -> R^3, coupling on 5 dims
    layer = AdditiveCoupling(5, _linear_factory(w))
    s = float(torch.linalg.svdvals(layer.net.weight.detach().double())[0])  # of the float32 weights
    row = _only_row(_table(layer, torch.randn(4, 5)))
    assert row["terms"]["lip_t"] == pytest.approx(s, rel=1e-12)  # Lip(t) is tight for a linear t
    assert row["forward_bound"] == row["inverse_bound"] == pytest.approx(1 + s, rel=1e-12)
    # J = [[I, 0], [W, I]]: sigma_max = s / 2 + sqrt(1 + s^2 / 4) <= 1 + s, in both directions
    exact = s / 2 + math.sqrt(1 + s * s / 4)
    assert row["forward_empirical"] == pytest.approx(exact, rel=1e-10)
    assert row["inverse_empirical"] == pytest.approx(exact, rel=1e-10)
    assert row["holds"] is True and exact < row["forward_bound"]
    zero = _only_row(_table(AdditiveCoupling(5, _linear_factory(torch.zeros(3, 2))), torch.randn(4, 5)))
    assert zero["forward_bound"] == zero["forward_empirical"] == pytest.approx(1.0, abs=1e-12)  # tight at t = 0


@pytest.mark.parametrize("c", [0.5, -0.5, 0.9])
def test_residual_block_with_linear_g(c):
    g = nn.Linear(3, 3)
    with torch.no_grad():
        g.weight.copy_(c * torch.eye(3))
        g.bias.normal_()
    block = ResidualBlock(g, (3,), logdet="exact", eval_logdet="exact")
    row = _only_row(_table(block, torch.randn(4, 3)))
    c = float(g.weight[0, 0].detach())  # as float32 stores it
    a = abs(c)
    assert row["forward_bound"] == pytest.approx(1 + a, rel=1e-12)
    assert row["inverse_bound"] == pytest.approx(1 / (1 - a), rel=1e-12)
    # y = (1 + c) x: Lip(F) = 1 + c exactly, equal to the bound for c > 0; Lip(F^-1) = 1 / (1 + c)
    assert row["forward_empirical"] == pytest.approx(1 + c, rel=1e-9)
    assert row["inverse_empirical"] == pytest.approx(1 / (1 + c), rel=1e-9)
    assert row["holds"] is True


@pytest.mark.parametrize("name", sorted(SCALE_FUNCTIONS))
def test_global_scale_constants_are_the_suprema(name):
    h = torch.linspace(-30, 30, 600001, dtype=torch.float64, requires_grad=True)
    g = SCALE_FUNCTIONS[name](h)[0]
    (dg,) = torch.autograd.grad(g.sum(), h, retain_graph=True)
    (dinv,) = torch.autograd.grad((1 / g).sum(), h)
    g = g.detach()
    for constant, values in zip(GLOBAL_SCALE_CONSTANTS[name], (g, dg.abs(), 1 / g, dinv.abs())):
        if constant is None:  # unbounded: far above any finite constant on this grid
            assert float(values.detach().max()) > 1e6
        else:
            assert float(values.max()) <= constant * (1 + 1e-12)
            assert float(values.max()) == pytest.approx(constant, rel=1e-6)


@pytest.mark.parametrize("scale", sorted(SCALE_FUNCTIONS))
def test_affine_coupling_bound_holds_at_the_examples(scale):
    gen = torch.Generator().manual_seed(4)
    layer = AffineCoupling(6, _linear_factory(torch.randn(6, 3, generator=gen)), scale=scale)
    row = _only_row(_table(layer, 2 * torch.randn(8, 6, generator=gen)))
    assert row["holds"] is True and row["scope"] == "local (at the examples)"
    assert row["forward_empirical"] > 1 and row["inverse_empirical"] > 1


@pytest.mark.parametrize("branch", ["gram", "power iteration"])
def test_conv_norms_against_the_explicit_operator(branch, monkeypatch):
    if branch == "power iteration":
        monkeypatch.setattr(lipschitz_nets, "EXACT_CONV_DIM", 0)
    gen = torch.Generator().manual_seed(5)
    # the second has its top two singular values 0.1 % apart: power iteration needs ~3000 steps
    for c_out, c_in, k, pad, hw in [(3, 2, 3, 1, (5, 4)), (2, 3, 5, 2, (6, 6)), (2, 2, 3, 0, (5, 5)), (5, 1, 3, 1, (4, 4))]:
        w = torch.randn(c_out, c_in, k, k, generator=gen, dtype=torch.float64)
        n = c_in * hw[0] * hw[1]
        cols = F.conv2d(torch.eye(n, dtype=torch.float64).view(n, c_in, *hw), w, padding=pad).reshape(n, -1)
        exact = float(torch.linalg.matrix_norm(cols.T, ord=2))
        assert conv_operator_norm(w, hw, pad) == pytest.approx(exact, rel=1e-12 if branch == "gram" else 1e-7)
        assert exact <= conv_norm_bound(w, hw, pad) <= 2 * exact
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False).double()
    assert lipschitz_bound(conv, (2, 5, 4)) == pytest.approx(conv_operator_norm(conv.weight, (5, 4), 1), rel=1e-12)


def _glow(coupling: str, levels: int = 1):
    model = create("glow", image_shape=(1, 8, 8), levels=levels, depth=2, hidden=8, coupling=coupling, n_bits=5)
    model.initialize(torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8))
    perturb(model, seed=2)
    x = model.prepare(torch.randint(0, 256, (4, 1, 8, 8), generator=torch.Generator().manual_seed(3), dtype=torch.uint8))
    return model.eval(), x


@pytest.mark.parametrize("coupling,levels", [("affine", 1), ("additive", 1), ("affine", 2)])
def test_small_glow_every_bound_holds(coupling, levels):
    model, x = _glow(coupling, levels)
    r = lipschitz_table(model, x)
    kinds = [row["type"] for row in r["blocks"]]
    assert kinds.count("ActNorm") == kinds.count("InvertibleConv1x1LU") == 2 * levels
    assert r["violations"] == [] and all(row["holds"] for row in [*r["blocks"], r["flow"]])
    for row in r["blocks"]:
        assert row["forward_empirical"] <= row["forward_bound"] * (1 + 1e-9)
        if row["scope"] == "exact":
            assert row["forward_empirical"] == pytest.approx(row["forward_bound"], rel=1e-6)
            assert row["inverse_empirical"] == pytest.approx(row["inverse_bound"], rel=1e-6)
    # the whole flow's bound is the product (max(1, .) for the blocks after the split)
    prod = math.prod(row["forward_bound"] if row["dims"] == r["dims"] else max(1, row["forward_bound"])
                     for row in r["blocks"])
    assert r["flow"]["forward_bound"] == pytest.approx(prod, rel=1e-12)


def test_small_resflow_every_bound_holds():
    model = create("resflow", image_shape=(1, 8, 8), scales=2, blocks=1, hidden=8, n_bits=5)
    model.initialize(torch.randint(0, 256, (8, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8))
    perturb(model, seed=2, scale=0.02)
    model.eval()
    x = model.prepare(torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(3), dtype=torch.uint8))
    r = lipschitz_table(model, x)
    assert [row["type"] for row in r["blocks"]] == ["Logit", "ResidualBlock", "ActNorm", "Squeeze", "ResidualBlock",
                                                     "ActNorm"]
    assert r["violations"] == [] and all(row["holds"] for row in [*r["blocks"], r["flow"]])
    for row in r["blocks"]:
        if row["type"] == "ResidualBlock":  # the spectral normalisation keeps Lip(g) at about 0.98^3
            assert row["terms"]["lip_g"] <= row["terms"]["coeff_product"] * 1.01 < 1
            assert math.isfinite(row["inverse_bound"])


def test_power_iteration_path_on_a_larger_resflow(monkeypatch):
    """256 dimensions per block: power iteration (the residual inverse through its fixed-point
    steps) gives lower estimates of the exact constants, all within the bounds."""
    model = create("resflow", image_shape=(1, 16, 16), scales=1, blocks=1, hidden=8, n_bits=5)
    model.initialize(torch.randint(0, 256, (8, 1, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8))
    perturb(model, seed=2, scale=0.02)
    model.eval()
    x = model.prepare(torch.randint(0, 256, (2, 1, 16, 16), generator=torch.Generator().manual_seed(3), dtype=torch.uint8))
    power = lipschitz_table(model, x, iters=30)
    monkeypatch.setattr(jacobian, "EXACT_MAX_DIM", 10**6)
    exact = lipschitz_table(model, x)
    for p, e in zip([*power["blocks"], power["flow"]], [*exact["blocks"], exact["flow"]]):
        assert p["holds"] is True and e["holds"] is True
        for d in ("forward", "inverse"):
            assert p[f"{d}_empirical"] <= e[f"{d}_empirical"] * (1 + 1e-6)
            assert p[f"{d}_empirical"] == pytest.approx(e[f"{d}_empirical"], rel=0.05)


def test_violation_is_flagged(monkeypatch):
    real = lipschitz_report.block_bound

    def too_small(block, x, conv="operator"):
        b = real(block, x, conv)
        return BlockBound(b.forward / 2, b.inverse, b.scope) if isinstance(block, ActNorm) else b

    monkeypatch.setattr(lipschitz_report, "block_bound", too_small)
    layer = ActNorm(2)
    with torch.no_grad():
        layer.log_scale.fill_(1.0)
    r = lipschitz_table(Chain([layer]), torch.randn(2, 2, 2, 2))
    assert r["blocks"][0]["forward_holds"] is False and r["blocks"][0]["inverse_holds"] is True
    assert len(r["violations"]) == 2  # the block and the whole flow
    assert "**NO**" in render_markdown(r) and "Violations" in render_markdown(r)
    assert block_bound(layer, torch.randn(1, 2)).forward == pytest.approx(math.e)


@needs_mnist
def test_lipschitz_cli_on_a_tiny_trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(CONFIGS / "tiny-mnist.toml"), "--run-dir", str(run), "--set", "train.max_steps=10",
                 "--set", "data.n_bits=5", "--no-progress"]) == 0
    assert main(["lipschitz", str(run), "--examples", "2", "--iters", "5", "--no-progress"]) == 0
    r = json.loads((run / "lipschitz.json").read_text())
    assert r["examples"] == 2 and r["dims"] == 784 and len(r["blocks"]) == 2 + 2 * 2 * 3  # 2 squeezes, 12 steps' blocks
    assert r["violations"] == [] and r["flow"]["holds"] is True
    md = (run / "lipschitz.md").read_text()
    assert "whole flow (product of blocks)" in md and "AffineCoupling(sigmoid)" in md
    assert "violations: 0" in capsys.readouterr().out

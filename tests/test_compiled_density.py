"""The flat flows' fast training path: `Flow.compile_flow` (compiled density pass in training steps
only), the optimisers' fastest implementations, and speed = "auto" choosing compile-flow for them."""

from __future__ import annotations

import copy

import pytest
import torch

from flowforge import models
from flowforge.runs.config import load_config
from flowforge.training import speed_auto
from flowforge.training.optimizers import keep_fast_implementation, make_optimizer
from flowforge.training.speed_auto import Capabilities, choose_for_model, choose_speed, resolve_train_speed

CPU_AVX2 = Capabilities("cpu", False, "CPU AVX2, no AVX512-BF16 / AMX")


class _CountingCompile:
    """Stands in for torch.compile: runs the function eagerly and counts the calls through it."""

    def __init__(self):
        self.calls, self.functions = 0, []

    def __call__(self, fn, mode=None, **kwargs):
        self.functions.append(fn)
        def compiled(*args):
            self.calls += 1
            return fn(*args)

        return compiled


def test_compiled_pass_runs_only_with_gradients(monkeypatch):
    fake = _CountingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    flow = models.create("maf", dim=2, layers=2, hidden=(8,), batch_norm=False)
    x = torch.randn(5, 2)
    eager = flow.log_prob(x).detach()
    flow.compile_flow()
    torch.testing.assert_close(flow.log_prob(x).detach(), eager)
    assert fake.calls == 1  # a training pass: compiled
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x[:3]), eager[:3])
    assert fake.calls == 1  # evaluation (any batch size): eager, never recompiles
    # a copy (EMA's shadow) runs its own parameters, not the original's
    twin = copy.deepcopy(flow)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.1)
    assert not torch.allclose(twin.log_prob(x).detach(), eager)
    assert fake.calls == 2
    torch.testing.assert_close(flow.log_prob(x).detach(), eager)


def test_every_flow_compiles_a_code_object_of_its_own(monkeypatch):
    # dynamo's graphs, shape history and recompile limit (8) are per code object: shared, the
    # ninth flow compiled in a process would run eagerly
    fake = _CountingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    for dim in (2, 3):
        models.create("maf", dim=dim, layers=1, hidden=(8,), batch_norm=False).compile_flow()
    first, second = fake.functions
    assert first.__code__ is not second.__code__ and first.__code__.co_code == second.__code__.co_code


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maf", "nsf", "nsf-ar"])
def test_compiled_density_matches_eager_values_and_gradients(name):
    torch.manual_seed(0)
    flow = models.create(name, dim=3, context_dim=2, layers=2, hidden=(16, 16))
    x, c = torch.randn(64, 3), torch.randn(64, 2)
    eager = flow.log_prob(x, c).mean()
    grads = torch.autograd.grad(eager, list(flow.parameters()))
    flow.compile_flow()
    compiled = flow.log_prob(x, c).mean()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for g_c, g_e in zip(torch.autograd.grad(compiled, list(flow.parameters())), grads):
        torch.testing.assert_close(g_c, g_e, atol=1e-5, rtol=1e-4)


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=g, requires_grad=True), torch.randn(3, generator=g, requires_grad=True)]


def _train(optimizer, params, steps=5):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        sum(((p - torch.randn(p.shape, generator=g)) ** 2).sum() for p in params).backward()
        optimizer.step()


@pytest.mark.parametrize("name,flag", [("adam", "fused"), ("adamax", "foreach")])
def test_optimiser_uses_its_fastest_implementation_with_the_same_update(name, flag):
    fast_params, loop_params = _params(), _params()
    fast = make_optimizer(name, fast_params, lr=0.01, weight_decay=0.001)
    assert fast.param_groups[0][flag]
    loop_cls = type(fast)
    _train(fast, fast_params)
    _train(loop_cls(loop_params, lr=0.01, weight_decay=0.001, foreach=False), loop_params)
    for a, b in zip(fast_params, loop_params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_capturable_keeps_the_capturable_form_and_bad_names_are_refused():
    opt = make_optimizer("adam", _params(), lr=0.01, capturable=True)
    assert opt.param_groups[0]["capturable"] and not opt.param_groups[0].get("fused")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("sgd", _params(), lr=0.01)


def test_state_of_a_per_tensor_optimiser_resumes_in_the_fast_form():
    params = _params()
    loop = torch.optim.Adam(params, lr=0.01, foreach=False)
    _train(loop, params, steps=2)
    resumed_params = [p.detach().clone().requires_grad_() for p in params]
    resumed = make_optimizer("adam", resumed_params, lr=0.01)
    resumed.load_state_dict(copy.deepcopy(loop.state_dict()))  # as from a file: no shared tensors
    assert not resumed.param_groups[0].get("fused")  # the checkpoint's flags came with it
    keep_fast_implementation(resumed)
    assert resumed.param_groups[0]["fused"]
    _train(resumed, resumed_params, steps=3)  # the fused kernel runs on the loaded state
    _train(loop, params, steps=3)
    for a, b in zip(resumed_params, params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_auto_compiles_a_flat_flow_only_when_the_run_repays_it(monkeypatch):
    cost = speed_auto.FLAT_COMPILE_COST_S["cpu"] * speed_auto.REPAY_FACTOR
    flat = dict(has_coupling_nets=False, flat_compilable=True)
    assert choose_speed(CPU_AVX2, cost, **flat).options.compile_flow
    short = choose_speed(CPU_AVX2, cost - 1, **flat)
    assert short.options.label() == "baseline" and "no compilation" in short.reason
    monkeypatch.setattr(speed_auto, "detect_capabilities", lambda device: CPU_AVX2)
    maf = models.create("maf", dim=2, layers=2, hidden=(8,), batch_norm=False)
    assert choose_for_model(maf, "cpu", None).options.compile_flow
    assert choose_for_model(maf, "cpu", None, density_trained=False).options.label() == "baseline"  # reverse KL
    # flows whose training pass is not their density pass are left alone
    for name in ("iaf", "planar", "lgf-maf"):
        assert choose_for_model(models.create(name, dim=2), "cpu", None).options.label() == "baseline", name


def test_auto_resolution_for_a_flat_flow(monkeypatch):
    monkeypatch.setattr(speed_auto, "detect_capabilities", lambda device: CPU_AVX2)
    maf = models.create("maf", dim=2, layers=2, hidden=(8,), batch_norm=False)
    long = load_config(None, ['train.speed="auto"', "train.max_minutes=15.0", "train.max_steps=100000"], base={})
    resolve_train_speed(long.train, maf, "cpu")
    assert long.train.compile_flow and not long.train.channels_last and "flat flow" in long.train.speed_choice
    short = load_config(None, ['train.speed="auto"', "train.max_steps=500", "train.max_minutes=0"], base={})
    resolve_train_speed(short.train, maf, "cpu")  # 500 nominal 10 ms steps: not worth a compile
    assert not short.train.compile_flow and not short.train.compile

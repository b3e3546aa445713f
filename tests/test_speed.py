"""Speed switches (training/speed.py): each keeps the flow's mathematics."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from conftest import CONFIGS, needs_mnist
from flowforge.errors import ConfigError
from flowforge.models.glow import Glow
from flowforge.runs.config import load_config
from flowforge.training import speed
from flowforge.training.speed import SpeedOptions, apply_speed_options, compile_cache_dir, coupling_nets, use_compile_cache


def _model_and_data():
    torch.manual_seed(0)
    model = Glow((1, 8, 8), levels=2, depth=2, hidden=16, seed=0)
    images = torch.randint(0, 256, (8, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    model.initialize(images, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # move the zero-initialised output convolutions off zero
        for net in coupling_nets(model):
            net.conv_out.conv.weight.normal_(0, 0.02)
    x = model.prepare(images, torch.Generator().manual_seed(3))
    return model, x


def _roundtrip_error(model: Glow, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.decode(model.encode(x)) - x).abs().max())


def test_channels_last_gives_the_same_log_density_and_inverse():
    model, x = _model_and_data()
    reference = model.log_prob(x).detach()
    assert apply_speed_options(model, SpeedOptions(channels_last=True)) == 4
    torch.testing.assert_close(model.log_prob(x).detach(), reference, rtol=1e-5, atol=1e-4)
    assert _roundtrip_error(model, x) < 1e-5


def test_bf16_coupling_nets_keep_log_dets_float32_and_the_flow_exactly_invertible():
    model, x = _model_and_data()
    reference = model.log_prob(x).detach()
    apply_speed_options(model, SpeedOptions(coupling_dtype="bfloat16"))
    log_p = model.log_prob(x)
    assert log_p.dtype == torch.float32
    # only the coupling networks' outputs are rounded: a small change of the density ...
    assert (log_p.detach() - reference).abs().max() < 1e-2 * reference.abs().max()
    assert not torch.equal(log_p.detach(), reference)  # ... and the switch really acts
    # ... while the flow stays exactly invertible (the same network output both ways)
    assert _roundtrip_error(model, x) < 1e-5
    log_p.sum().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_speed_options_leave_other_models_alone():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3), torch.nn.Linear(2, 2))
    assert apply_speed_options(model, SpeedOptions(coupling_dtype="bfloat16", channels_last=True)) == 0


def test_speed_fields_are_validated_config_fields():
    cfg = load_config(None, ["train.coupling_dtype=bfloat16", "train.channels_last=true", "train.compile=true",
                             "train.compile_flow=true", "train.cuda_graphs=true"])
    options = SpeedOptions.from_train_config(cfg.train)
    assert options == SpeedOptions(True, "bfloat16", True, True, True)
    assert options.label() == "channels-last+compile+compile-flow+cuda-graphs+bfloat16-coupling"
    assert load_config(None).train.coupling_dtype == "float32"  # default = unchanged behaviour
    with pytest.raises(ConfigError, match="coupling_dtype"):
        load_config(None, ["train.coupling_dtype=int8"])


@pytest.mark.slow
def test_compiled_coupling_nets_give_the_same_log_density():
    model, x = _model_and_data()
    reference = model.log_prob(x).detach()
    apply_speed_options(model, SpeedOptions(compile=True))
    torch.testing.assert_close(model.log_prob(x).detach(), reference, rtol=1e-5, atol=1e-4)


@needs_mnist
def test_training_with_speed_switches_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    from flowforge.cli import main

    tiny = str(CONFIGS / "tiny-mnist.toml")
    switches = ["--set", "train.channels_last=true", "--set", "train.coupling_dtype=bfloat16",
                "--set", "train.sync_free_skip=true", "--no-progress"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", tiny, "--run-dir", str(straight), "--set", "train.max_steps=12", *switches]) == 0
    assert main(["train", tiny, "--run-dir", str(split), "--set", "train.max_steps=6", *switches]) == 0
    assert main(["train", "--resume", "--run-dir", str(split), "--set", "train.max_steps=12", *switches]) == 0
    a, b = (load_file(str(r / "checkpoints" / "last" / "model.safetensors")) for r in (straight, split))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "coupling_dtype = \"bfloat16\"" in (straight / "config.toml").read_text()


@pytest.mark.slow  # ~1-2 min of compiling on 2 CPU cores
def test_compiled_flow_pass_gives_the_same_loss_and_gradients():
    model, x = _model_and_data()
    reference = model.log_prob(x)
    reference.sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    apply_speed_options(model, SpeedOptions(compile_flow=True))
    log_p = model.log_prob(x)
    torch.testing.assert_close(log_p.detach(), reference.detach(), rtol=1e-5, atol=1e-4)
    log_p.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-4, msg=name)
    assert _roundtrip_error(model, x) < 1e-5  # the inverse (uncompiled) still undoes the compiled pass


def test_compile_flow_compiles_the_flow_pass_in_the_asked_mode_and_keeps_the_initialisation_eager(monkeypatch):
    real_compile, modes, traced = torch.compile, [], []

    def counting_compile(fn, dynamic, mode):  # torch.compile with a backend that counts traced graphs
        modes.append(mode)

        def backend(graph, example_inputs):
            traced.append(graph)
            return graph.forward
        return real_compile(fn, dynamic=dynamic, backend=backend)

    monkeypatch.setattr(torch, "compile", counting_compile)
    for options, mode in ((SpeedOptions(compile_flow=True, compile_regional=False), None),
                          (SpeedOptions(cuda_graphs=True), "reduce-overhead")):
        model = Glow((1, 8, 8), levels=2, depth=2, hidden=8)
        if mode is not None:  # a CUDA model, as far as the device check can see
            monkeypatch.setattr(speed, "_device", lambda m: torch.device("cuda"))
        apply_speed_options(model, options)
        assert modes[-2:] == [mode, mode]  # the flow pass and the sampling pass
        traced.clear()
        images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
        model.initialize(images)  # eager: once, on its own batch size, with a data-dependent branch
        assert traced == []
        model.log_prob(model.prepare(images))
        assert len(traced) == 1  # the whole flow pass, one graph


@pytest.mark.slow  # ~50 s of tracing on the shared 2-core machine
def test_regional_compile_flow_traces_one_graph_per_level_shape_not_per_step(monkeypatch):
    real_compile, traced = torch.compile, []

    def counting_compile(fn, dynamic=False, mode=None):
        def backend(graph, example_inputs):
            traced.append(graph)
            return graph.forward
        return real_compile(fn, dynamic=dynamic, backend=backend)

    monkeypatch.setattr(torch, "compile", counting_compile)
    torch._dynamo.reset()
    model = Glow((1, 8, 8), levels=2, depth=3, hidden=8)
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    model.initialize(images)
    eager = model.log_prob(model.prepare(images, generator=torch.Generator().manual_seed(0)))
    apply_speed_options(model, SpeedOptions(compile_flow=True))  # regional by default
    x = model.prepare(images, generator=torch.Generator().manual_seed(0))
    compiled = model.log_prob(x)
    # 2 level shapes x 3 steps: one graph per shape reused by its steps; the first step, whose
    # input does not require grad, stays eager rather than adding a graph of its own
    assert len(traced) == 2
    import copy

    copy.deepcopy(model)  # the EMA and the trainer copy models
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-4)
    model.log_prob(x).sum().backward()  # gradients flow through the compiled steps
    assert all(p.grad is not None for p in model.transform.parameters() if p.requires_grad)


def test_cuda_graphs_are_refused_off_cuda_and_mark_each_step_on_it(monkeypatch):
    with pytest.raises(ConfigError, match="cuda_graphs needs a CUDA device; the model is on cpu"):
        apply_speed_options(Glow((1, 8, 8), levels=2, depth=2, hidden=8), SpeedOptions(cuda_graphs=True))
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    speed.begin_training_step(SpeedOptions(compile_flow=True))
    assert marks == []
    speed.begin_training_step(SpeedOptions(cuda_graphs=True))
    assert marks == [1]


def test_compile_flow_is_refused_for_models_without_a_flow_pass():
    from flowforge.models import create

    # a module that is no Flow (e.g. VAEFlow, whose loss is an ELBO of its own)
    with pytest.raises(ConfigError, match="compile_flow.*Sequential has no compilable flow pass"):
        apply_speed_options(nn.Sequential(nn.Linear(2, 2)), SpeedOptions(compile_flow=True))
    with pytest.raises(ConfigError, match="cuda_graphs.*Sequential"):
        apply_speed_options(nn.Sequential(nn.Linear(2, 2)), SpeedOptions(cuda_graphs=True))
    with pytest.raises(ConfigError, match="cuda_graphs needs a CUDA device"):
        apply_speed_options(create("maf", dim=2), SpeedOptions(cuda_graphs=True))
    with pytest.raises(ConfigError, match="LGFMAF: train.compile_flow .* not supported"):
        apply_speed_options(create("lgf-maf", dim=2), SpeedOptions(compile_flow=True))


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, native):
    import warnings

    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: native)
    model, _ = _model_and_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_speed_options(model, SpeedOptions(coupling_dtype="bfloat16"))
        apply_speed_options(model, SpeedOptions(channels_last=True))  # float32: never a warning
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert (len(messages) == 1 and "emulated" in messages[0]) if not native else messages == []


def test_compiled_runs_share_one_cache_per_machine_unless_told_otherwise(monkeypatch, tmp_path):
    for name in ("TORCHINDUCTOR_CACHE_DIR", "FLOWFORGE_COMPILE_CACHE"):
        monkeypatch.setenv(name, "")  # so that the test's end restores what was there, set or not
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache_dir() == (tmp_path / "xdg" / "flowforge" / "compile-cache").resolve()
    assert use_compile_cache(SpeedOptions()) is None  # nothing compiles: torch's default left alone
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    monkeypatch.setenv("FLOWFORGE_COMPILE_CACHE", str(tmp_path / "mine"))
    assert use_compile_cache(SpeedOptions(compile_flow=True)) == str((tmp_path / "mine").resolve())
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((tmp_path / "mine").resolve())
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch's"))  # the user's own setting wins
    assert use_compile_cache(SpeedOptions(compile=True)) == str(tmp_path / "torch's")

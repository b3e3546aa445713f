"""speed = "auto": the decision with mocked capabilities, and its resolution into a run config."""

from __future__ import annotations

import torch
from torch import nn

from flowforge.runs.config import load_config
from flowforge.runs.report import _speed_line
from flowforge.training import speed_auto
from flowforge.training.speed_auto import Capabilities, choose_speed, expected_run_seconds, resolve_train_speed

CPU_BF16 = Capabilities("cpu", True, "CPU AVX512 with AVX512-BF16")
CPU_AVX2 = Capabilities("cpu", False, "CPU AVX2, no AVX512-BF16 / AMX")
AMPERE = Capabilities("cuda", True, "A100, compute capability 8.0")
TURING = Capabilities("cuda", False, "T4, compute capability 7.5")


def test_native_bf16_gets_bf16_and_channels_last():
    for caps in (CPU_BF16, AMPERE):
        o = choose_speed(caps, 10.0).options
        assert (o.coupling_dtype, o.channels_last, o.compile, o.compile_flow) == ("bfloat16", True, False, False)


def test_without_native_bf16_stays_float32():
    for caps in (CPU_AVX2, TURING):
        choice = choose_speed(caps, 10.0)
        assert choice.options.coupling_dtype == "float32" and choice.options.channels_last
        assert "emulated" in choice.reason


def test_compile_flow_only_when_the_run_repays_it():
    cost = speed_auto.COMPILE_COST_S["cpu"] * speed_auto.REPAY_FACTOR
    assert not choose_speed(CPU_BF16, cost - 1).options.compile_flow
    assert choose_speed(CPU_BF16, cost).options.compile_flow
    assert choose_speed(CPU_BF16, None).options.compile_flow  # open-ended (benchmarks)
    # a model without a compilable flow pass gets its coupling networks compiled instead
    o = choose_speed(CPU_BF16, None, compile_flow_supported=False).options
    assert o.compile and not o.compile_flow
    # no coupling networks: nothing applies
    assert choose_speed(CPU_BF16, None, has_coupling_nets=False).options.label() == "baseline"


def test_expected_run_seconds():
    assert expected_run_seconds("cpu", 10**9, 8.0) == 480.0
    assert expected_run_seconds("cpu", 100, 0.0) == 100 * speed_auto.NOMINAL_STEP_S["cpu"]
    assert expected_run_seconds("cuda", 100, 60.0) == 100 * speed_auto.NOMINAL_STEP_S["cuda"]  # steps end it first


def test_detect_capabilities_reads_what_torch_reports(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    caps = speed_auto.detect_capabilities("cpu")
    assert caps.native_bf16 and "AMX" in caps.detail
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not speed_auto.detect_capabilities("cpu").native_bf16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "H200")
    assert speed_auto.detect_capabilities("cuda").native_bf16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert not speed_auto.detect_capabilities("cuda").native_bf16


def test_cpu_description_names_the_model_and_the_bf16_units(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    text = speed_auto.cpu_description()
    assert text.endswith(f"({speed_auto.detect_capabilities('cpu').detail})") and "AVX512-BF16" in text
    assert not text.startswith("(")  # a model name (or the platform's word) comes first


def test_resolution_writes_the_choice_into_the_config_once(monkeypatch):
    monkeypatch.setattr(speed_auto, "detect_capabilities", lambda device: CPU_BF16)
    from flowforge.models.glow import Glow

    model = Glow((1, 8, 8), levels=1, depth=1, hidden=4)
    cfg = load_config(None, ["train.speed=\"auto\"", "train.max_minutes=30.0"], base={})
    choice = resolve_train_speed(cfg.train, model, "cpu")
    assert choice is not None and cfg.train.coupling_dtype == "bfloat16" and cfg.train.channels_last
    assert cfg.train.compile_flow and "AVX512-BF16" in cfg.train.speed_choice
    assert "auto: " in _speed_line(cfg.to_dict()["train"])
    # resumed from its config.toml: the saved choice stands, even on other hardware
    monkeypatch.setattr(speed_auto, "detect_capabilities", lambda device: CPU_AVX2)
    assert resolve_train_speed(cfg.train, model, "cpu") is None and cfg.train.coupling_dtype == "bfloat16"
    # manual runs are left alone
    manual = load_config(None, [], base={})
    assert resolve_train_speed(manual.train, nn.Linear(2, 2), "cpu") is None
    assert manual.train.coupling_dtype == "float32" and _speed_line(manual.to_dict()["train"]).startswith("manual")


def test_bench_variant_auto_resolves_on_the_device(monkeypatch):
    from flowforge.bench import suite

    monkeypatch.setattr(suite, "detect_capabilities", lambda device: CPU_AVX2)
    assert suite.variant_switches("auto") == []
    o = suite.variant_options("auto", "cpu")
    assert o.coupling_dtype == "float32" and o.channels_last and o.compile_flow


def test_sampling_auto_applies_no_compilation(monkeypatch):
    from flowforge.models.glow import Glow

    monkeypatch.setattr(speed_auto, "detect_capabilities", lambda device: CPU_BF16)
    model = Glow((1, 8, 8), levels=1, depth=1, hidden=4)
    text = speed_auto.apply_auto_for_sampling(model, "cpu")
    assert "no compilation" in text and model._compiled_sampling is None
    nets = [m for m in model.modules() if type(m).__name__ == "GlowCouplingNet"]
    assert nets and all(n.autocast_dtype == torch.bfloat16 and n.channels_last for n in nets)

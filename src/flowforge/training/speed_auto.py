"""`speed = "auto"`: pick the speed switches of training/speed.py from what the hardware does
natively and from how long the run is.

Rules (each measured on this project's CPUs, docs/performance.md):

- native bfloat16 (CPU: AVX512-BF16 or AMX as torch reports them; CUDA: compute capability
  >= 8.0): bf16 coupling networks + channels-last. Without native bf16, oneDNN emulates it
  (about 10x slower than float32 on an AVX2-only EPYC), so the choice is float32 + channels-last.
- compilation only when the run is long enough to repay it: the run's expected length (its
  `max_minutes` budget, else `max_steps` times a nominal step time) must be at least
  `REPAY_FACTOR` times the compile cost of that device (first-step overhead, measured). The
  compiled pass is `compile_flow` (regional: one graph per flow-step shape) for Glow-family
  models and `compile` (the coupling networks) for other models with Glow coupling networks.
- models without Glow coupling networks: nothing applies (baseline).

The decision is a pure function of `Capabilities` and the run's length, so it is tested with
mocked capabilities (tests/test_speed_auto.py); `detect_capabilities` is the only part that asks
torch about the machine.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from flowforge.training.speed import SpeedOptions

# first-step cost of compiling (seconds) and a nominal training-step time used when a run has
# only a step budget; both per device type, both rough. CPU: regional compile-flow of the K=16,
# hidden-256 Glow measured 41 s cold on an idle AVX512-BF16 EPYC core and 106 s on an idle AMX
# Xeon (most of it inductor's C++ builds), 4 s with a warm compile cache, 427 s cold at load ~12
# (docs/results.md, "compile cost"); the slower idle figure, since compile-flow saves only ~5-40 %
# of a step: a run compiles only when it is at least REPAY_FACTOR x this long
COMPILE_COST_S = {"cpu": 110.0, "cuda": 60.0}
NOMINAL_STEP_S = {"cpu": 0.25, "cuda": 0.02}
REPAY_FACTOR = 10.0  # compiling saves ~5-40 % of a step: repaid well within 10x its cost


@dataclass(frozen=True)
class Capabilities:
    device: str  # "cpu" or "cuda"
    native_bf16: bool
    detail: str  # what torch reported, for the printed reason


@dataclass(frozen=True)
class SpeedChoice:
    options: SpeedOptions
    reason: str

    def describe(self) -> str:
        return f"{self.options.label()} ({self.reason})"


def detect_capabilities(device: torch.device | str) -> Capabilities:
    """What torch reports about `device`: the CPU's vector capability and its bf16 units, or the
    CUDA device's compute capability."""
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
        return Capabilities("cuda", (major, minor) >= (8, 0), f"{name}, compute capability {major}.{minor}")
    capability = torch.backends.cpu.get_cpu_capability()
    avx512_bf16 = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    units = [name for name, on in (("AVX512-BF16", avx512_bf16), ("AMX", amx)) if on]
    detail = f"CPU {capability}" + (f" with {' + '.join(units)}" if units else ", no AVX512-BF16 / AMX")
    return Capabilities("cpu", avx512_bf16 or amx, detail)


def cpu_description() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else the platform's word) and what torch reports
    about its vector and bf16 units, e.g. "AMD EPYC (CPU AVX2, no AVX512-BF16 / AMX)": the kind of
    machine every CPU figure is quoted with."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({detect_capabilities('cpu').detail})"


def expected_run_seconds(device: str, max_steps: int, max_minutes: float) -> float:
    """The run's length as far as its config tells: the time budget, capped by the step budget at
    the nominal step time; steps only: steps x nominal step time."""
    by_steps = max_steps * NOMINAL_STEP_S.get(device, NOMINAL_STEP_S["cpu"])
    return min(max_minutes * 60.0, by_steps) if max_minutes > 0 else by_steps


def choose_speed(caps: Capabilities, run_seconds: float | None, *, has_coupling_nets: bool = True,
                 compile_flow_supported: bool = True) -> SpeedChoice:
    """The switches for `caps` and a run of `run_seconds` (None: open-ended, e.g. a benchmark of
    steady-state throughput, where compilation always repays)."""
    if not has_coupling_nets:
        return SpeedChoice(SpeedOptions(), "no Glow coupling networks: the speed switches do not apply")
    if caps.native_bf16:
        dtype, why = "bfloat16", f"{caps.detail}: native bf16, so bf16 coupling networks + channels-last"
    else:
        dtype, why = "float32", f"{caps.detail}: bf16 would be emulated, so float32 + channels-last"
    cost = COMPILE_COST_S.get(caps.device, COMPILE_COST_S["cpu"])
    long_enough = run_seconds is None or run_seconds >= REPAY_FACTOR * cost
    length = "open-ended run" if run_seconds is None else f"expected run {run_seconds:.0f} s"
    compile_what = "compile-flow" if compile_flow_supported else "compile"
    if long_enough:
        why += f"; {length} >= {REPAY_FACTOR:g} x ~{cost:.0f} s compile cost: {compile_what}"
    else:
        why += f"; {length} < {REPAY_FACTOR:g} x ~{cost:.0f} s compile cost: no compilation"
    options = SpeedOptions(channels_last=True, coupling_dtype=dtype,
                           compile=long_enough and not compile_flow_supported,
                           compile_flow=long_enough and compile_flow_supported)
    return SpeedChoice(options, why)


def choose_for_model(model: torch.nn.Module, device: torch.device | str, run_seconds: float | None) -> SpeedChoice:
    from flowforge.training.speed import coupling_nets

    return choose_speed(detect_capabilities(device), run_seconds, has_coupling_nets=bool(coupling_nets(model)),
                        compile_flow_supported=hasattr(model, "compile_flow"))


def resolve_train_speed(train, model: torch.nn.Module, device: torch.device | str) -> SpeedChoice | None:
    """With `train.speed == "auto"` and nothing chosen yet, write the chosen switches into `train`
    (so config.toml holds them) and the reason into `train.speed_choice`; returns the choice
    (None when `train.speed` is "manual" or the choice was made before, e.g. on resume, so a
    resumed run computes as it did)."""
    if getattr(train, "speed", "manual") != "auto" or train.speed_choice:
        return None
    choice = choose_for_model(model, device, expected_run_seconds(torch.device(device).type, train.max_steps,
                                                                  train.max_minutes))
    o = choice.options
    train.channels_last, train.coupling_dtype, train.compile, train.compile_flow = (
        o.channels_last, o.coupling_dtype, o.compile, o.compile_flow)
    train.speed_choice = choice.describe()
    return choice


def apply_auto_for_sampling(model: torch.nn.Module, device: torch.device | str) -> str:
    """`flowforge sample --speed auto`: the auto choice's precision and layout applied to a loaded
    model (no compilation: a sampling command is too short to repay it); returns what was chosen."""
    from flowforge.training.speed import apply_speed_options

    choice = choose_for_model(model, device, 0.0)
    apply_speed_options(model, choice.options)
    return choice.describe()

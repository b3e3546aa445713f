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
- flows without Glow coupling networks that train through their density pass (the flat models,
  `auto_compile_flow`): `Flow.compile_flow` (the whole pass) on the same repay rule, with their own
  compile cost and nominal step (`FLAT_*`); channels-last and bf16 do not apply to them.
- other models: nothing applies (baseline).

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
# flat flows: the whole density pass of benchmarks/peer_flows.py's 4-step 2-D MAF / NSF compiled
# in 19-53 s cold on one AVX2 EPYC core (one compile worker); steps of 5-20 ms there. CUDA: not
# measured, assumed the same order
FLAT_COMPILE_COST_S = {"cpu": 60.0, "cuda": 60.0}
FLAT_NOMINAL_STEP_S = {"cpu": 0.01, "cuda": 0.005}
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


def expected_run_seconds(device: str, max_steps: int, max_minutes: float, flat: bool = False) -> float:
    """The run's length as far as its config tells: the time budget, capped by the step budget at
    the nominal step time (of a flat flow's step with `flat`); steps only: steps x nominal step time."""
    nominal = FLAT_NOMINAL_STEP_S if flat else NOMINAL_STEP_S
    by_steps = max_steps * nominal.get(device, nominal["cpu"])
    return min(max_minutes * 60.0, by_steps) if max_minutes > 0 else by_steps


def _repays(caps: Capabilities, run_seconds: float | None, costs: dict, compile_what: str) -> tuple[bool, str]:
    """Whether compiling repays in a run of `run_seconds` (None: open-ended), and why."""
    cost = costs.get(caps.device, costs["cpu"])
    long_enough = run_seconds is None or run_seconds >= REPAY_FACTOR * cost
    length = "open-ended run" if run_seconds is None else f"expected run {run_seconds:.0f} s"
    if long_enough:
        return True, f"{length} >= {REPAY_FACTOR:g} x ~{cost:.0f} s compile cost: {compile_what}"
    return False, f"{length} < {REPAY_FACTOR:g} x ~{cost:.0f} s compile cost: no compilation"


def choose_speed(caps: Capabilities, run_seconds: float | None, *, has_coupling_nets: bool = True,
                 compile_flow_supported: bool = True, flat_compilable: bool = False) -> SpeedChoice:
    """The switches for `caps` and a run of `run_seconds` (None: open-ended, e.g. a benchmark of
    steady-state throughput, where compilation always repays). `flat_compilable`: a model without
    coupling networks whose training pass `Flow.compile_flow` compiles (module docstring)."""
    if not has_coupling_nets:
        if not flat_compilable:
            return SpeedChoice(SpeedOptions(), "no Glow coupling networks: the speed switches do not apply")
        long_enough, why = _repays(caps, run_seconds, FLAT_COMPILE_COST_S, "compile-flow")
        return SpeedChoice(SpeedOptions(compile_flow=long_enough), f"{caps.detail}; flat flow: {why}")
    if caps.native_bf16:
        dtype, why = "bfloat16", f"{caps.detail}: native bf16, so bf16 coupling networks + channels-last"
    else:
        dtype, why = "float32", f"{caps.detail}: bf16 would be emulated, so float32 + channels-last"
    long_enough, repay = _repays(caps, run_seconds, COMPILE_COST_S,
                                 "compile-flow" if compile_flow_supported else "compile")
    why += f"; {repay}"
    options = SpeedOptions(channels_last=True, coupling_dtype=dtype,
                           compile=long_enough and not compile_flow_supported,
                           compile_flow=long_enough and compile_flow_supported)
    return SpeedChoice(options, why)


def _is_flat(model: torch.nn.Module) -> bool:
    from flowforge.training.speed import coupling_nets

    return not coupling_nets(model) and bool(getattr(model, "auto_compile_flow", False))


def choose_for_model(model: torch.nn.Module, device: torch.device | str, run_seconds: float | None,
                     density_trained: bool = True) -> SpeedChoice:
    """`choose_speed` for `model`; `density_trained`: its training steps run its density pass (not
    reverse KL, which trains through sampling)."""
    from flowforge.training.speed import coupling_nets

    return choose_speed(detect_capabilities(device), run_seconds, has_coupling_nets=bool(coupling_nets(model)),
                        compile_flow_supported=bool(getattr(model, "regional_compile_flow", False)),
                        flat_compilable=density_trained and _is_flat(model))


def resolve_train_speed(train, model: torch.nn.Module, device: torch.device | str) -> SpeedChoice | None:
    """With `train.speed == "auto"` and nothing chosen yet, write the chosen switches into `train`
    (so config.toml holds them) and the reason into `train.speed_choice`; returns the choice
    (None when `train.speed` is "manual" or the choice was made before, e.g. on resume, so a
    resumed run computes as it did)."""
    if getattr(train, "speed", "manual") != "auto" or train.speed_choice:
        return None
    run_seconds = expected_run_seconds(torch.device(device).type, train.max_steps, train.max_minutes,
                                       flat=_is_flat(model))
    choice = choose_for_model(model, device, run_seconds, density_trained=train.objective != "reverse-kl")
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

"""Speed switches of a training run (issue 3), each off by default and each exact in the sense
stated below:

- `channels_last`: coupling networks compute in the NHWC layout (same values up to float
  rounding of a different convolution algorithm).
- `coupling_dtype = "bfloat16"`: the convolutions inside coupling networks run under autocast;
  the coupling casts the network output back to float32, so log-dets, actnorm, the 1x1
  convolutions and the priors stay float32 (the flow stays exactly invertible given the net).
- `compile`: every coupling network is wrapped by `torch.compile` (fuses actnorm + ReLU and
  the elementwise tail); the mathematics is unchanged.
- `compile_flow`: the model's whole data -> latent pass (every actnorm, 1x1 convolution,
  coupling, split prior and the log-det sums) is one `torch.compile` graph, backward included
  (the model's `compile_flow()`), and for Glow-family models so is the sampling pass after the
  noise draws (`compile_sampling()`, used in eval mode without gradients; on the CPU 1.4–1.6x
  faster sampling). Same mathematics; float rounding of fused kernels only.
  With `compile_regional` (the default) a Glow-family model compiles one flow step and reuses its
  graph for the K steps of each level (regional compilation): compile time grows with the number
  of level shapes, not with L x K (docs/performance.md, "compile cost"). Other flows (`Flow`, the
  flat models) compile their whole density pass in training steps only (`Flow.compile_flow`):
  one graph per layer gave back most of the gain (2-D MAF step 1.04x against 1.51x whole).
- `cuda_graphs`: the same whole-pass compilation in torch.compile's "reduce-overhead" mode,
  which replays the pass (forward and backward) as CUDA graphs: one launch instead of hundreds
  of kernel launches per step, for small batches where launching dominates. Needs a CUDA device
  (refused elsewhere) and static shapes (the trainer's batches all have train.batch_size
  examples); the trainer marks each step's start (`begin_training_step`), after which the
  previous step's graph outputs may be overwritten. Dequantisation, the optimizer and the EMA
  stay eager. Same mathematics as `compile_flow`.

The data set already lives on the device for the whole run (trainer.py), and the 1x1
convolutions cache their inverse in eval mode (bijections/permutations.py).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flowforge.bijections.glow_coupling_net import GlowCouplingNet
from flowforge.errors import ConfigError

COUPLING_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class SpeedOptions:
    channels_last: bool = False
    coupling_dtype: str = "float32"
    compile: bool = False
    compile_flow: bool = False
    cuda_graphs: bool = False
    # compile_flow without CUDA graphs: one flow step compiled and reused by every step of its
    # shape (Glow.compile_flow(regional=True)) instead of the whole pass as one graph
    compile_regional: bool = True

    @classmethod
    def from_train_config(cls, train) -> "SpeedOptions":
        return cls(channels_last=train.channels_last, coupling_dtype=train.coupling_dtype, compile=train.compile,
                   compile_flow=train.compile_flow, cuda_graphs=train.cuda_graphs,
                   compile_regional=getattr(train, "compile_regional", True))

    def label(self) -> str:
        parts = [name for name, on in (("channels-last", self.channels_last), ("compile", self.compile),
                                       ("compile-flow", self.compile_flow), ("cuda-graphs", self.cuda_graphs)) if on]
        if self.coupling_dtype != "float32":
            parts.append(f"{self.coupling_dtype}-coupling")
        return "+".join(parts) or "baseline"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX). Without it, oneDNN
    emulates bf16 (and float16) convolutions: bf16 measured about 10x slower than float32 on an
    AVX2-only EPYC."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _warn_if_emulated(model: nn.Module, options: SpeedOptions) -> None:
    if options.coupling_dtype != "float32" and _device(model).type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(f"coupling_dtype = {options.coupling_dtype!r} on a CPU without native 16-bit float arithmetic "
                      "(no AVX512-BF16 / AMX): its convolutions are emulated and much slower than float32; on this "
                      "CPU use float32 with channels_last and compile", RuntimeWarning, stacklevel=3)


def coupling_nets(model: nn.Module) -> list[GlowCouplingNet]:
    return [m for m in model.modules() if isinstance(m, GlowCouplingNet)]


def apply_speed_options(model: nn.Module, options: SpeedOptions) -> int:
    """Switch the coupling networks of `model` to `options`; returns how many were switched
    (0 for a model without Glow coupling networks, where the options do not apply)."""
    if options.coupling_dtype not in COUPLING_DTYPES:
        raise ValueError(f"coupling_dtype must be one of {sorted(COUPLING_DTYPES)}, got {options.coupling_dtype!r}")
    nets = coupling_nets(model)
    if nets:
        _warn_if_emulated(model, options)
    for net in nets:
        net.autocast_dtype = COUPLING_DTYPES[options.coupling_dtype]
        net.channels_last = options.channels_last
        if options.channels_last:
            net.to(memory_format=torch.channels_last)
        if options.compile:
            # same code and shapes in every step of a level: the compiled graph is shared
            net.compile(dynamic=False)
    if options.compile_flow or options.cuda_graphs:
        switch = "cuda_graphs" if options.cuda_graphs else "compile_flow"
        if not hasattr(model, "compile_flow"):
            raise ConfigError(f"train.{switch}: {type(model).__name__} has no compilable flow pass; "
                              "use train.compile for its coupling networks")
        if options.cuda_graphs and _device(model).type != "cuda":
            raise ConfigError(f"train.cuda_graphs needs a CUDA device; the model is on {_device(model)} "
                              "(use train.compile_flow there: the same compilation without CUDA graphs)")
        mode = "reduce-overhead" if options.cuda_graphs else None
        if options.compile_regional and not options.cuda_graphs and getattr(model, "regional_compile_flow", False):
            model.compile_flow(mode=mode, regional=True)  # compile time ~ number of level shapes
        else:
            model.compile_flow(mode=mode)
        if hasattr(model, "compile_sampling"):  # compiled on first use: free when never sampled
            model.compile_sampling(mode=mode)
    return len(nets)


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept: $FLOWFORGE_COMPILE_CACHE, else
    $XDG_CACHE_HOME/flowforge/compile-cache (~/.cache/... without XDG_CACHE_HOME)."""
    if os.environ.get("FLOWFORGE_COMPILE_CACHE"):
        return Path(os.environ["FLOWFORGE_COMPILE_CACHE"]).expanduser().resolve()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root).expanduser().resolve() / "flowforge" / "compile-cache"


def use_compile_cache(options: SpeedOptions) -> str | None:
    """With any compilation on and no TORCHINDUCTOR_CACHE_DIR set, point torch's compile caches
    (inductor's FX-graph and AOTAutograd caches, on by default) at `compile_cache_dir()`, one per
    user and machine, so that every later run of the same model shapes here, a resumed job or a new
    run, compiles from cache: Glow K=16 / hidden 256 compile-flow's first step costs 4.3 s warm
    against 44.6 s cold on a 2-core AVX2 EPYC (docs/results.md). torch keys the entries on the
    code, the shapes, the hardware and its own version, so one directory serves every run; a cache
    per run made each new run pay the cold cost. Returns the directory used (None when nothing
    compiles)."""
    if not (options.compile or options.compile_flow or options.cuda_graphs):
        return None
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def begin_training_step(options: SpeedOptions) -> None:
    """Call before each training step's forward pass: with `cuda_graphs`, tells torch's CUDA-graph
    trees that a new step begins (the previous step's graph outputs are no longer read)."""
    if options.cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()

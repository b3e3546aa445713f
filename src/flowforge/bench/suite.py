"""The benchmarks of `flowforge bench NAME`: flowforge's Glow (one row per speed variant) against
normflows' Glow of the same architecture (bench/peer_normflows.py), in one process, interleaved.

- train-throughput: images/s of one full training step (dequantise, log-density, backward,
  gradient clipping, Adamax update, non-finite check) at each batch size;
- sample-throughput: images/s of sampling at temperature 1 (eval mode, no gradients);
- memory: peak device memory of one training step (CUDA only);
- flops: counted convolution/matmul FLOPs per training image, and the achieved FLOP/s that
  implies at the measured throughput.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from flowforge.bench.measure import Ratio, counted_flops, interleaved_seconds, matmul_peak_flops, peak_memory_bytes
from flowforge.bench.peer_normflows import build_normflows_glow, initialize_normflows, normflows_bits_per_dim
from flowforge.data.quantisation import dequantise, to_model_space
from flowforge.models.glow import Glow
from flowforge.progress import progress_bar
from flowforge.training.optimizers import make_optimizer
from flowforge.training.speed import SpeedOptions, apply_speed_options, begin_training_step
from flowforge.training.speed_auto import choose_speed, detect_capabilities
from flowforge.training.sync_free import MaskedUpdate

BENCHES = ("train-throughput", "sample-throughput", "memory", "flops")
PEER = "normflows"
# a variant is "baseline" or switches joined by "+", e.g. "bf16+channels-last+compile-flow";
# "all" stands for bf16+channels-last+compile
SWITCHES = {
    "channels-last": {"channels_last": True},
    "bf16": {"coupling_dtype": "bfloat16"},
    "compile": {"compile": True},
    "compile-flow": {"compile_flow": True},  # regional: one step's graph reused by every step of its shape
    "whole-flow": {"compile_flow": True, "compile_regional": False},  # compile-flow as one graph of the whole pass
    "cuda-graphs": {"cuda_graphs": True},  # compile-flow replayed as CUDA graphs (CUDA only)
    "sync-free": {},  # train.sync_free_skip: no per-step host read (the step, not SpeedOptions)
}
ALL = "bf16+channels-last+compile"
AUTO = "auto"


def variant_switches(variant: str) -> list[str]:
    """The switches of a variant name; ValueError naming the unknown ones. "auto" has none of
    its own: `variant_options` resolves it on the device (training/speed_auto.py)."""
    if variant in ("baseline", AUTO):
        return []
    names = [n for part in variant.split("+") for n in (ALL.split("+") if part == "all" else [part])]
    unknown = [n for n in names if n not in SWITCHES]
    if unknown or not names:
        raise ValueError(f"variant {variant!r}: unknown switch(es) {unknown}; expected 'baseline' or some of "
                         f"{sorted(SWITCHES)} (or 'all' = {ALL}) joined by '+'")
    return names


def variant_options(variant: str, device: torch.device | str = "cpu") -> SpeedOptions:
    """The SpeedOptions of a variant; "auto" is what `train.speed = "auto"` picks on `device` for
    an open-ended run (a benchmark measures steady-state throughput, so compilation repays)."""
    if variant == AUTO:
        choice = choose_speed(detect_capabilities(device), None)
        print(f"bench variant auto on {device}: {choice.describe()}")
        return choice.options
    fields = {}
    for name in variant_switches(variant):
        fields.update(SWITCHES[name])
    return SpeedOptions(**fields)
SETTLE_EVERY = 50  # the trainer reads the flags at each log step (train.log_every = 50)


@dataclass
class BenchSettings:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    levels: int = 2
    depth: int = 16
    hidden: int = 256
    batch_sizes: tuple[int, ...] = (128,)
    variants: tuple[str, ...] = ("baseline",)
    rounds: int = 5
    steps_per_round: int = 1
    lr: float = 1e-3
    grad_clip: float = 50.0
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    images: Tensor | None = None  # uint8 (N, C, H, W); random if None
    progress: bool = True
    peak: bool = False  # train-throughput: also counted FLOPs and the fraction of a bf16 matmul's FLOP/s


@dataclass
class Contender:
    name: str
    model: nn.Module
    train_step: Callable[[Tensor, torch.Generator], Tensor]
    sample: Callable[[int], Tensor]


def _adamax(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The peer's optimiser as its users write it: torch's Adamax with its defaults (the per-tensor
    loop on the CPU, the multi-tensor form on CUDA)."""
    return torch.optim.Adamax([p for p in model.parameters() if p.requires_grad], lr=lr)


def _step(model: nn.Module, opt: torch.optim.Optimizer, loss: Tensor, clip: float) -> Tensor:
    """The update of runs/trainer.py: skip on a non-finite loss or gradient norm."""
    if not torch.isfinite(loss):
        return loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if torch.isfinite(norm):
        opt.step()
    return loss


def flowforge_contender(s: BenchSettings, variant: str, init_images: Tensor) -> Contender:
    torch.manual_seed(s.seed)
    model = Glow(s.image_shape, levels=s.levels, depth=s.depth, hidden=s.hidden, seed=s.seed).to(s.device)
    model.initialize(init_images)
    options = variant_options(variant, s.device)
    apply_speed_options(model, options)
    sync_free = "sync-free" in variant_switches(variant)
    # the trainer's optimiser (runs/trainer.py): Adamax in its multi-tensor form on every device
    opt = make_optimizer("adamax", [p for p in model.parameters() if p.requires_grad], s.lr,
                         capturable=sync_free and s.device.type == "cuda")
    masked = MaskedUpdate(model, opt, nn.Module())  # the benchmark keeps no EMA, for either library

    def train_step(images: Tensor, gen: torch.Generator) -> Tensor:
        model.train()
        begin_training_step(options)
        loss = model.loss(images, generator=gen)["loss"]
        if not (sync_free and masked.ready()):
            return _step(model, opt, loss, s.grad_clip)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        masked.apply(torch.isfinite(loss) & torch.isfinite(norm), opt.step)
        if len(masked.pending) >= SETTLE_EVERY:
            masked.settle()
        return loss

    @torch.no_grad()
    def sample(n: int) -> Tensor:
        model.eval()
        return model.sample(n, 1.0)

    return Contender(f"flowforge {variant}", model, train_step, sample)


def normflows_contender(s: BenchSettings, init_images: Tensor) -> Contender:
    torch.manual_seed(s.seed)
    model = build_normflows_glow(s.image_shape, s.levels, s.depth, s.hidden).to(s.device)
    initialize_normflows(model, to_model_space(init_images))
    opt = _adamax(model, s.lr)

    def train_step(images: Tensor, gen: torch.Generator) -> Tensor:
        model.train()
        x = dequantise(to_model_space(images), 8, gen)
        return _step(model, opt, normflows_bits_per_dim(model, x), s.grad_clip)

    @torch.no_grad()
    def sample(n: int) -> Tensor:
        model.eval()
        return model.sample(n)[0]

    return Contender(PEER, model, train_step, sample)


def _images(s: BenchSettings, n: int) -> Tensor:
    if s.images is not None:
        reps = math.ceil(n / len(s.images))
        return s.images.repeat(reps, 1, 1, 1)[:n].to(s.device)
    gen = torch.Generator().manual_seed(s.seed)
    return torch.randint(0, 256, (n, *s.image_shape), generator=gen, dtype=torch.uint8).to(s.device)


def _contenders(s: BenchSettings) -> list[Contender]:
    init = _images(s, 256)
    return [normflows_contender(s, init)] + [flowforge_contender(s, v, init) for v in s.variants]


def _training_workloads(s: BenchSettings, contenders: list[Contender], batch: int) -> dict[str, Callable[[], None]]:
    images = _images(s, batch)
    gen = torch.Generator(device=s.device).manual_seed(s.seed)

    def run(c: Contender) -> Callable[[], None]:
        def go() -> None:
            for _ in range(s.steps_per_round):
                c.train_step(images, gen)
        return go

    return {c.name: run(c) for c in contenders}


def train_throughput(s: BenchSettings) -> list[dict]:
    contenders = _contenders(s)
    rows = []
    for batch in s.batch_sizes:
        work = _training_workloads(s, contenders, batch)
        with progress_bar(total=s.rounds, desc=f"train batch {batch}", leave=False, disable=not s.progress) as bar:
            times = interleaved_seconds(work, s.rounds, s.device, progress=bar)
        ref = times[PEER]
        per_call = s.steps_per_round * batch
        for c in contenders:
            t = sorted(times[c.name])[len(times[c.name]) // 2]
            rows.append({"bench": "train-throughput", "batch": batch, "contender": c.name,
                         "images_per_s": per_call / t,
                         "ratio_vs_normflows": None if c.name == PEER else Ratio.of(ref, times[c.name])})
    if s.peak:
        _add_peak_fractions(s, rows)
    return rows


def _add_peak_fractions(s: BenchSettings, rows: list[dict]) -> None:
    """Achieved TFLOP/s (counted conv/matmul FLOPs per image x images/s) and its fraction of the
    bf16 matmul peak measured now, in the same process. FLOPs are counted on eager models (a
    compiled graph hides its ops from the counter): flowforge's on the baseline variant, the same
    mathematics as every variant."""
    peak = matmul_peak_flops(torch.bfloat16, s.device)
    init = _images(s, 256)
    counters = {PEER: normflows_contender(s, init), "flowforge": flowforge_contender(s, "baseline", init)}
    per_image: dict[tuple[str, int], float] = {}
    for batch in s.batch_sizes:
        images = _images(s, batch)
        for key, c in counters.items():
            gen = torch.Generator(device=s.device).manual_seed(s.seed)
            per_image[key, batch] = counted_flops(lambda c=c, gen=gen: c.train_step(images, gen)) / batch
    for row in rows:
        flop = per_image[PEER if row["contender"] == PEER else "flowforge", row["batch"]]
        row["gflop_per_image"] = flop / 1e9
        row["achieved_tflops"] = flop * row["images_per_s"] / 1e12
        row["bf16_matmul_peak_tflops"] = peak / 1e12
        row["fraction_of_bf16_peak"] = flop * row["images_per_s"] / peak


def sample_throughput(s: BenchSettings) -> list[dict]:
    contenders = _contenders(s)
    rows = []
    for batch in s.batch_sizes:
        work = {c.name: (lambda c=c: c.sample(batch)) for c in contenders}
        with progress_bar(total=s.rounds, desc=f"sample batch {batch}", leave=False, disable=not s.progress) as bar:
            times = interleaved_seconds(work, s.rounds, s.device, progress=bar)
        for c in contenders:
            t = sorted(times[c.name])[len(times[c.name]) // 2]
            rows.append({"bench": "sample-throughput", "batch": batch, "contender": c.name, "images_per_s": batch / t,
                         "ratio_vs_normflows": None if c.name == PEER else Ratio.of(times[PEER], times[c.name])})
    return rows


def memory(s: BenchSettings) -> list[dict]:
    """Peak memory of one training step, one contender on the device at a time (so the peak
    counts its weights, optimizer state and activations only)."""
    rows = []
    init = _images(s, 256)
    builders = [(PEER, lambda: normflows_contender(s, init))]
    builders += [(f"flowforge {v}", lambda v=v: flowforge_contender(s, v, init)) for v in s.variants]
    for batch in s.batch_sizes:
        images = _images(s, batch)
        for name, build in builders:
            contender = build()
            gen = torch.Generator(device=s.device).manual_seed(s.seed)
            contender.train_step(images, gen)  # optimizer state allocated before measuring
            peak = peak_memory_bytes(lambda contender=contender: contender.train_step(images, gen), s.device)
            rows.append({"bench": "memory", "batch": batch, "contender": name,
                         "peak_MiB": None if peak is None else peak / 2**20})
            del contender
            if s.device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def flops(s: BenchSettings) -> list[dict]:
    """Counted FLOPs per training image, and achieved FLOP/s at the measured training throughput."""
    rows = train_throughput(s)
    contenders = {c.name: c for c in _contenders(s)}
    for row in rows:
        c, batch = contenders[row["contender"]], row["batch"]
        images = _images(s, batch)
        gen = torch.Generator(device=s.device).manual_seed(s.seed)
        per_image = counted_flops(lambda: c.train_step(images, gen)) / batch
        row["bench"] = "flops"
        row["gflop_per_image"] = per_image / 1e9
        row["achieved_tflops"] = per_image * row["images_per_s"] / 1e12
    return rows


def run_bench(name: str, s: BenchSettings) -> list[dict]:
    benches = {"train-throughput": train_throughput, "sample-throughput": sample_throughput,
               "memory": memory, "flops": flops}
    if name not in benches:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {BENCHES}")
    return benches[name](s)


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(k)) for k in columns) + " |")
    return "\n".join(lines)

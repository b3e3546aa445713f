"""`flowforge bench NAME`: the options, and writing the table (markdown + JSON)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch

from flowforge.bench.suite import ALL, BENCHES, SWITCHES, BenchSettings, markdown_table, run_bench, variant_switches
from flowforge.errors import ConfigError
from flowforge.training.speed_auto import cpu_description


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None  # one line


def add_bench_parser(sub, common, func) -> None:
    p = sub.add_parser("bench", parents=[common],
                       help="benchmarks against normflows' Glow of the same architecture (needs flowforge[bench])")
    p.add_argument("name", choices=[*BENCHES, "all"])
    p.add_argument("--dataset", default="fashion-mnist", help="images to train on (random uint8 if not found)")
    p.add_argument("--levels", type=int, default=2, help="L")
    p.add_argument("--depth", type=int, default=16, help="K, steps per level")
    p.add_argument("--hidden", type=int, default=256, help="coupling network width")
    p.add_argument("--batch-sizes", type=_ints, default=(128,), help="comma-separated, e.g. 128,512,2048")
    p.add_argument("--variants", default="baseline",
                   help="comma-separated flowforge speed variants: 'baseline', 'auto' (what train.speed = \"auto\" picks here) "
                        f"or switches out of {sorted(SWITCHES)} "
                        f"joined by '+' ('all' = {ALL}), e.g. baseline,bf16+channels-last,all+sync-free")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median and spread reported)")
    p.add_argument("--steps-per-round", type=int, default=1)
    p.add_argument("--peak", action="store_true",
                   help="train-throughput: also counted FLOPs per image and the fraction of a large bf16 matmul's "
                        "FLOP/s (measured in the same process)")
    p.add_argument("--out", help="write the table to OUT.md and the rows to OUT.json")
    p.set_defaults(func=func)


def _load_images(name: str, data_dir: str | None):
    from flowforge.data.images import load_image_split

    try:
        return load_image_split(name, "train", data_dir=data_dir, download=False).images[:4096]
    except Exception as err:  # benchmarks run on random images when the data set is absent
        print(f"note: {name} not found ({err}); benchmarking on random images")
        return None


def _jsonable(value):
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, torch.device):
        return str(value)
    return value


def run_bench_command(args) -> int:
    from flowforge.runs.run_dir import select_device

    variants = tuple(v.strip() for v in args.variants.split(","))
    for variant in variants:
        try:
            variant_switches(variant)
        except ValueError as err:
            raise ConfigError(f"--variants: {err}") from None
    device = select_device(args.device or "auto")
    images = _load_images(args.dataset, args.data_dir)
    shape = tuple(images.shape[1:]) if images is not None else (1, 28, 28)
    settings = BenchSettings(image_shape=shape, levels=args.levels, depth=args.depth, hidden=args.hidden,
                             batch_sizes=args.batch_sizes, variants=variants, rounds=args.rounds,
                             steps_per_round=args.steps_per_round, device=device, images=images,
                             progress=not args.no_progress, peak=getattr(args, "peak", False))
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{cpu_description()}, {torch.get_num_threads()} thread(s)"
    names = BENCHES if args.name == "all" else (args.name,)
    data = args.dataset if images is not None else "random"
    text = [f"flowforge bench: L={args.levels} K={args.depth} hidden={args.hidden} data={data} "
            f"on {hardware}; torch {torch.__version__}; ratios = normflows time / flowforge time, median [min, max] "
            f"over {args.rounds} interleaved rounds"]
    all_rows = []
    for name in names:
        start = time.perf_counter()
        rows = run_bench(name, settings)
        all_rows += rows
        text += ["", f"## {name} ({time.perf_counter() - start:.0f} s)", "", markdown_table(rows)]
    print("\n".join(text))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text("\n".join(text) + "\n")
        out.with_suffix(".json").write_text(json.dumps(
            {"hardware": hardware, "torch": torch.__version__,
             "args": {k: _jsonable(v) for k, v in vars(args).items() if k != "func"},
             "rows": [{k: _jsonable(v) for k, v in r.items()} for r in all_rows]}, indent=1))
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0

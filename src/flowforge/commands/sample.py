"""`flowforge sample`: sample grids, temperature sweep, interpolation, class edit (flat data: points
and the 2-D density figure)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from flowforge.errors import ConfigError, FlowforgeError


def _class_edit(text: str, dataset: str) -> tuple[int, int]:
    """--class-edit FROM:TO as two class indices of `dataset`, else ConfigError."""
    from flowforge.data import CLASS_NAMES

    parts = text.split(":")
    try:
        src, dst = (int(v) for v in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        src = dst = None
    if src is None:
        raise ConfigError(f"--class-edit {text!r}: expected FROM:TO, two class indices, e.g. 1:7")
    classes = len(CLASS_NAMES.get(dataset, ()))
    for value in (src, dst):
        if not 0 <= value < classes:
            raise ConfigError(f"--class-edit {text!r}: class {value} out of range; {dataset} has classes 0 to {classes - 1}")
    if src == dst:
        raise ConfigError(f"--class-edit {text!r}: FROM and TO must be different classes")
    return src, dst


def _check_args(args) -> None:
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: expected at least 1 sample")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ConfigError(f"--temperature {args.temperature}: expected a finite number >= 0")
    if args.pairs < 1:
        raise ConfigError(f"--pairs {args.pairs}: expected at least 1")


def run(args) -> int:
    from flowforge.data import CLASS_NAMES
    from flowforge.runs.data_sources import ImageSource, make_source
    from flowforge.runs.report import write_report
    from flowforge.runs.run_dir import RunPaths, load_trained, read_run_config, select_device
    from flowforge.viz import image_figures

    _check_args(args)
    if args.class_edit:
        class_edit = _class_edit(args.class_edit, read_run_config(args.run_dir).data.dataset)
    if args.attribute:
        from flowforge.commands.attribute_edit import attribute_edit, check_attribute

        check_attribute(args.attribute, read_run_config(args.run_dir).data.dataset)
    device = select_device(args.device or "auto")
    cfg, model, state = load_trained(args.run_dir, which=args.checkpoint, device=device)
    if getattr(args, "speed", "manual") == "auto":
        from flowforge.training.speed_auto import apply_auto_for_sampling

        print(f"speed auto: {apply_auto_for_sampling(model, device)}")
    samples_dir = RunPaths(Path(args.run_dir)).samples
    source = make_source(cfg, args.data_dir, state.get("data_state"))
    written = []
    if not isinstance(source, ImageSource):
        if args.sweep or args.interpolate or args.class_edit:
            raise FlowforgeError("--sweep, --interpolate and --class-edit need an image model")
        gen = torch.Generator(device=device).manual_seed(args.seed)
        points = source.sample_points(model, args.n, args.temperature, gen)  # in the data's units
        bad = int((~torch.isfinite(points).reshape(len(points), -1).all(dim=1)).sum())
        if bad:
            print(f"warning: {bad} of {args.n} samples are non-finite (NaN or inf)", file=sys.stderr)
        out = Path(args.out) if args.out else samples_dir / f"samples-T{args.temperature:g}{source.samples_suffix}"
        written += [source.save_points(points, out), source.write_samples(model, samples_dir / "density", args.temperature, gen)]
    elif getattr(model, "context_dim", 0):  # the grid's contexts: the test split's context rows
        if args.sweep or args.interpolate or args.class_edit or args.attribute:
            raise FlowforgeError("--sweep, --interpolate, --class-edit and --attribute do not take context vectors "
                                 "yet; a context-conditioned run samples its grid only")
        out = Path(args.out) if args.out else samples_dir / f"samples-T{args.temperature:g}.png"
        gen = torch.Generator(device=device).manual_seed(args.seed)
        written.append(source.write_samples(model, out, args.temperature, gen, args.n))
    else:
        out = Path(args.out) if args.out else samples_dir / f"samples-T{args.temperature:g}.png"
        written.append(image_figures.sample_grid(model, out, args.n, args.temperature, args.seed,
                                                 CLASS_NAMES.get(cfg.data.dataset, ())))
        if args.sweep:
            written.append(image_figures.temperature_sweep(model, samples_dir / "temperature-sweep.png", args.seed))
        if args.interpolate:
            written.append(image_figures.interpolation_figure(model, samples_dir / "interpolation.png",
                                                              source.split("test"), args.pairs, args.seed))
        if args.class_edit:
            src, dst = class_edit
            written.append(image_figures.class_edit_figure(model, samples_dir / f"class-edit-{src}-to-{dst}.png",
                                                           source.split("test"), src, dst, args.pairs))
        if args.attribute:
            written.append(attribute_edit(model, source, args.attribute, samples_dir, args.pairs))
    write_report(args.run_dir)
    for path in written:
        if path is not None:
            print(f"wrote {path}")
    return 0


def add_parser(sub, common) -> None:
    p = sub.add_parser("sample", parents=[common], help="sample grids, temperature sweep, interpolation, class edit")
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG path for the grid (default RUN_DIR/samples/samples-T<temperature>.png)")
    p.add_argument("--sweep", action="store_true", help="also a temperature sweep (rows T = 0 ... 1)")
    p.add_argument("--interpolate", action="store_true", help="also interpolations between test images")
    p.add_argument("--pairs", type=int, default=4, help="pairs for --interpolate / images for --class-edit")
    p.add_argument("--class-edit", metavar="FROM:TO", help="also move images of class FROM along mean(TO) - mean(FROM)")
    p.add_argument("--attribute", metavar="NAME", help="CelebA runs: also move test images along the mean latent "
                   "with attribute NAME minus without (e.g. Smiling; Glow section 6.3)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--speed", choices=["manual", "auto"], default="manual",
                   help="auto: bf16 coupling networks + channels-last where the hardware has native bf16 "
                        "(samples then differ by bf16 rounding of the networks' outputs)")
    p.set_defaults(func=run)

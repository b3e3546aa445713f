"""flowforge's MAF, NSF coupling and NSF autoregressive layers against zuko and nflows, side by side.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/peer_flows.py [--quick] [--out FILE.md]

Models (each library's own layers, composed as that library composes them):
- MAF: affine MADE steps (Papamakarios et al. 2017), order reversed between steps.
- NSF coupling: rational-quadratic spline couplings (Durkan et al. 2019, eqs. 4-8): flowforge and
  zuko transform the second half given the first, the order reversed between couplings; nflows
  alternates even / odd features (its usual mask), no permutation. Conditioners: flowforge's own
  MLP (output layer zero-initialised, as `create("nsf")` builds it), zuko's masked MLP, and for
  nflows a plain ReLU MLP with torch's default initialisation. zuko's first pass also gives
  the conditioning half a spline of learned constants; flowforge's coupling does the same with
  ``identity_spline=True`` (`create("nsf", elementwise=True)`).
- NSF autoregressive: rational-quadratic splines conditioned by a MADE (Durkan et al. 2019, section 3.2).
flowforge: `MAFStep` / `SplineCoupling` / `SplineAutoregressive` + `ReversePermutation` in a
`flowforge.Flow` over `StandardNormal`; zuko: `zuko.flows.MAF` / `NSF(passes=2)` / `NSF`;
nflows: `MaskedAffineAutoregressiveTransform` / `PiecewiseRationalQuadraticCouplingTransform` /
`MaskedPiecewiseRationalQuadraticAutoregressiveTransform` with `ReversePermutation`. Every spline
has K = 8 bins on [-5, 5] with identity (linear) tails (zuko's fixed bound), ReLU networks, no
batch norm, no residual blocks.

Equal sizes: flowforge's hidden width is fixed per data set; each peer's width is the one whose
parameter count is nearest to flowforge's (the table states every count).

Data: two-moons and checkerboard (data/toy2d.py, 10k / 1k / 5k), the 8x8 digits (data/digits.py,
1,257 / 180 / 360, dequantised) and a conditional set: two-moons rotated by an angle
theta ~ U(0, pi) given as the context c = theta / pi (10k / 1k / 5k). Every set is standardised
with its training split's mean and standard deviation; NLLs are in nats per example of the
standardised data, the same for every library.

Rows: `flowforge` trains as flowforge's trainer does (`make_optimizer("adam")`, torch's fused Adam
kernel; `Flow.compile_flow()`, the density pass compiled for training steps, evaluation eager);
`flowforge eager` is the same flow with torch's default Adam and no compilation (layer for layer
against the peers); `zuko` and `nflows` as their users run them (torch's default Adam, eager), and
`zuko fused Adam` is zuko with the fused optimiser kernel too (how much of the gap is the optimiser).

Training and selection: Adam (lr 1e-3), the same batches for every row, in rounds; after each
round the validation NLL is measured and the best weights kept; test NLL (mean +- standard error
over the test split) is that of the best-validation weights. The rows take turns round by round
in one process, the order rotating, so load on the machine falls on all of them alike; the
training step time of a round is its wall time / steps (forward, backward, optimiser step). The
first round of every row is left out of the step times (it holds the compilation of `flowforge`);
"warm-up s" is that round's time beyond a steady round. Ratios are this row's time / flowforge's
time per round: median [min, max].
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import flowforge
from flowforge.bijections import Chain, ReversePermutation
from flowforge.bijections.autoregressive import MAFStep
from flowforge.bijections.spline_autoregressive import SplineAutoregressive
from flowforge.bijections.spline_coupling import SplineCoupling, half_mask
from flowforge.data.digits import load_digits_splits
from flowforge.data.toy2d import load_toy_splits, sample_toy
from flowforge.distributions import StandardNormal
from flowforge.nets.mlp import MLP as FlowforgeMLP
from flowforge.training.optimizers import make_optimizer
from flowforge.training.speed_auto import cpu_description

BINS, BOUND = 8, 5.0
LIBS = ("flowforge", "zuko", "nflows")
# row -> (library, trained the fast way: fused Adam, and for flowforge its compiled density pass)
ROWS = {"flowforge": ("flowforge", True), "flowforge eager": ("flowforge", False), "zuko": ("zuko", False),
        "zuko fused Adam": ("zuko", True), "nflows": ("nflows", False)}
MODELS = ("maf", "nsf-coupling", "nsf-ar")
# (hidden, layers, steps, rounds, batch) per set
PLAN = {"digits": (64, 4, 600, 10, 128)}
DEFAULT_PLAN = (64, 4, 600, 10, 256)


# ------------------------------------------------------------------------------------------ data
def _standardised(train, valid, test, ctx=None):
    mean, std = train.mean(0), train.std(0)
    out = [(t - mean) / std for t in (train, valid, test)]
    return {"train": out[0], "valid": out[1], "test": out[2], "context": ctx}


def rotated_moons(seed: int = 0, sizes=(10_000, 1_000, 5_000)):
    """Two-moons rotated by theta ~ U(0, pi); context theta / pi. Points standardised by the
    unrotated moons' training statistics (a rotation of standardised moons)."""
    base = load_toy_splits("two-moons", seed=seed)
    mean, std = base.train.mean(0), base.train.std(0)
    xs, cs = {}, {}
    for i, (name, n) in enumerate(zip(("train", "valid", "test"), sizes)):
        pts = (torch.from_numpy(sample_toy("two-moons", n, seed=1000 * seed + 17 + i)) - mean) / std
        gen = torch.Generator().manual_seed(100 + i + 10 * seed)
        theta = torch.rand(n, generator=gen) * math.pi
        c, s = theta.cos(), theta.sin()
        xs[name] = torch.stack([c * pts[:, 0] - s * pts[:, 1], s * pts[:, 0] + c * pts[:, 1]], 1)
        cs[name] = (theta / math.pi)[:, None]
    return {**xs, "context": cs}


def datasets(names):
    out = {}
    for name in names:
        if name == "rotated-moons":
            out[name] = rotated_moons()
        elif name == "digits":
            d = load_digits_splits(seed=0)
            out[name] = _standardised(d.train, d.valid, d.test)
        else:
            d = load_toy_splits(name, seed=0)
            out[name] = _standardised(d.train, d.valid, d.test)
    return out


# ------------------------------------------------------------------------------------------ models
class MLP(nn.Module):
    """ReLU MLP (torch's default initialisation) for nflows' coupling; with a context, it reads
    [x, context] (nflows passes the context separately)."""

    def __init__(self, n_in: int, n_out: int, hidden: int, layers: int = 2):
        super().__init__()
        sizes = [n_in] + [hidden] * layers
        mods = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*mods, nn.Linear(sizes[-1], n_out))

    def forward(self, x, context=None):
        return self.net(x if context is None else torch.cat([x, context], 1))


def flowforge_conditioner(n_in: int, n_out: int, hidden: int) -> nn.Module:
    """flowforge's coupling conditioner as `create("nsf")` builds it: a ReLU MLP whose output layer
    starts at zero, so every coupling starts as the identity (nets/mlp.py)."""
    return FlowforgeMLP(n_in, n_out, [hidden, hidden], "relu")


def _masks(dim: int, layers: int):
    return [torch.tensor([(j + i) % 2 for j in range(dim)]) for i in range(layers)]


def flowforge_flow(make_step, dim: int, layers: int):
    """`layers` steps from make_step(), the order reversed between them, in a `flowforge.Flow` over
    a standard normal: (log_prob(x, c), the flow)."""
    steps = []
    for i in range(layers):
        steps.append(make_step())
        if i < layers - 1:
            steps.append(ReversePermutation(dim))
    flow = flowforge.Flow(Chain(steps), StandardNormal((dim,)))
    return lambda x, c: flow.log_prob(x, c), flow


def flowforge_coupling(dim: int, ctx: int, net_factory, identity_spline: bool = True) -> SplineCoupling:
    """flowforge's `nsf` coupling (models/nsf.py), zuko's scheme too: the second half given the
    first; `net_factory(n_in, n_out)` builds the conditioner."""
    mask = half_mask(dim)
    n_in, n_out = int(mask.sum()) + ctx, int((1 - mask).sum()) * (3 * BINS - 1)
    return SplineCoupling(mask, net_factory(n_in, n_out), bins=BINS, bound=BOUND, context_dim=ctx,
                          identity_spline=identity_spline)


def build_flowforge(model: str, dim: int, ctx: int, hidden: int, layers: int):
    if model == "maf":
        make = lambda: MAFStep(dim, [hidden, hidden], activation="relu", context_dim=ctx)  # noqa: E731
    elif model == "nsf-ar":
        make = lambda: SplineAutoregressive(dim, [hidden, hidden], bins=BINS, bound=BOUND,  # noqa: E731
                                            context_dim=ctx, activation="relu")
    else:
        make = lambda: flowforge_coupling(dim, ctx, lambda i, o: flowforge_conditioner(i, o, hidden))  # noqa: E731
    return flowforge_flow(make, dim, layers)


def build_zuko(model: str, dim: int, ctx: int, hidden: int, layers: int):
    import zuko

    kw = dict(features=dim, context=ctx, transforms=layers, hidden_features=(hidden, hidden))
    if model == "maf":
        flow = zuko.flows.MAF(**kw)
    else:
        flow = zuko.flows.NSF(bins=BINS, passes=2 if model == "nsf-coupling" else None, **kw)
    return (lambda x, c: flow(c).log_prob(x)) if ctx else (lambda x, c: flow().log_prob(x)), flow


def build_nflows(model: str, dim: int, ctx: int, hidden: int, layers: int):
    import torch.nn.functional as F
    from nflows.distributions.normal import StandardNormal as NStandardNormal
    from nflows.flows.base import Flow as NFlow
    from nflows.transforms.autoregressive import (
        MaskedAffineAutoregressiveTransform,
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    )
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
    from nflows.transforms.permutations import ReversePermutation as NReverse

    c = ctx or None
    steps = []
    for i in range(layers):
        # nflows' MADE: a masked input layer, then num_blocks (linear, ReLU) blocks, then the output
        common = dict(features=dim, hidden_features=hidden, context_features=c, num_blocks=2,
                      use_residual_blocks=False, activation=F.relu)
        if model == "maf":
            steps.append(MaskedAffineAutoregressiveTransform(**common))
        elif model == "nsf-ar":
            steps.append(MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                num_bins=BINS, tails="linear", tail_bound=BOUND, **common))
        else:
            mask = 1 - _masks(dim, layers)[i]  # nflows: > 0 marks the transformed features
            steps.append(PiecewiseRationalQuadraticCouplingTransform(
                mask, lambda n_in, n_out: MLP(n_in + ctx, n_out, hidden), num_bins=BINS, tails="linear",
                tail_bound=BOUND))
        if model != "nsf-coupling" and i < layers - 1:
            steps.append(NReverse(dim))
    flow = NFlow(CompositeTransform(steps), NStandardNormal([dim]))
    return (lambda x, cc: flow.log_prob(x, context=cc)), flow


BUILDERS = {"flowforge": build_flowforge, "zuko": build_zuko, "nflows": build_nflows}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def matched(lib: str, model: str, dim: int, ctx: int, target: int, layers: int):
    """The `lib` model whose hidden width gives the parameter count nearest to `target`."""
    count = lambda h: n_params(BUILDERS[lib](model, dim, ctx, h, layers)[1])
    lo, hi = 2, 2048
    while hi - lo > 1:  # counts grow with the width
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    h = min((lo, hi), key=lambda w: abs(count(w) - target))
    return h, count(h)


# ------------------------------------------------------------------------------------------ run
@torch.no_grad()
def nll(log_prob, x, c, batch=5000):
    out = []
    for i in range(0, len(x), batch):
        out.append(-log_prob(x[i:i + batch], None if c is None else c[i:i + batch]).double())
    v = torch.cat(out)
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


def compare(name, data, model, hidden, layers, steps, rounds, batch, seed=0):
    x_tr, ctx = data["train"], data["context"]
    c_tr = None if ctx is None else ctx["train"]
    dim, cdim = x_tr.shape[1], 0 if ctx is None else ctx["train"].shape[1]
    rows = {}
    torch.manual_seed(seed)
    lp, ref = build_flowforge(model, dim, cdim, hidden, layers)
    target = n_params(ref)
    widths = {lib: (hidden, target) if lib == "flowforge" else matched(lib, model, dim, cdim, target, layers)
              for lib in LIBS}
    for name, (lib, fast) in ROWS.items():
        h, count = widths[lib]
        torch.manual_seed(seed)
        lp, module = BUILDERS[lib](model, dim, cdim, h, layers)
        if fast and lib == "flowforge":
            module.compile_flow()
        opt = make_optimizer("adam", module.parameters(), lr=1e-3) if fast else torch.optim.Adam(module.parameters(), lr=1e-3)
        rows[name] = dict(hidden=h, params=count, log_prob=lp, module=module, times=[], best=(math.inf, None, -1),
                          opt=opt)
    gen = torch.Generator().manual_seed(seed)
    per_round = steps // rounds
    names = tuple(ROWS)
    for r in range(rounds):
        idx = [torch.randint(0, len(x_tr), (batch,), generator=gen) for _ in range(per_round)]
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            row = rows[name]
            row["module"].train()
            t0 = time.perf_counter()
            for i in idx:
                loss = -row["log_prob"](x_tr[i], None if c_tr is None else c_tr[i]).mean()
                row["opt"].zero_grad(set_to_none=True)
                loss.backward()
                row["opt"].step()
            row["times"].append((time.perf_counter() - t0) / per_round)
            row["module"].eval()
            v, _ = nll(row["log_prob"], data["valid"], None if ctx is None else ctx["valid"])
            if v < row["best"][0]:
                row["best"] = (v, copy.deepcopy(row["module"].state_dict()), (r + 1) * per_round)
    out = {}
    for lib, row in rows.items():
        row["module"].load_state_dict(row["best"][1])
        row["module"].eval()
        test, se = nll(row["log_prob"], data["test"], None if ctx is None else ctx["test"])
        steady = row["times"][1:]  # the first round holds the compilation (flowforge) and warm-up
        warmup = max(0.0, (row["times"][0] - statistics.median(steady)) * per_round)
        out[lib] = dict(hidden=row["hidden"], params=row["params"], test=test, se=se, valid=row["best"][0],
                        best_step=row["best"][2], times=steady, warmup=warmup)
    return out


def _ratio(peer, ff):
    r = [p / f for p, f in zip(peer, ff)]
    return f"{statistics.median(r):.2f} [{min(r):.2f}, {max(r):.2f}]"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps of everything (a smoke test, no figures)")
    p.add_argument("--sets", default="two-moons,checkerboard,digits,rotated-moons")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", help="write the table (markdown) here too")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch order of every library")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sets = args.sets.split(",")
    lines = [f"CPU: {cpu_description()}, torch {torch.__version__} with {torch.get_num_threads()} thread; "
             f"zuko {_version('zuko')}, nflows {_version('nflows')}; command: `{' '.join(['python', *sys.argv])}`", ""]
    header = ("| set | model | row | hidden | parameters | test NLL (nats) ± s.e. | best valid (step) "
              "| step ms | time / flowforge's | warm-up s |")
    lines += [header, "|" + "---|" * 10]
    print("\n".join(lines), flush=True)
    data = datasets(sets)
    t_start = time.perf_counter()
    for name in sets:
        hidden, layers, steps, rounds, batch = PLAN.get(name, DEFAULT_PLAN)
        if args.quick:
            steps, rounds = 20, 3
        for model in args.models.split(","):
            res = compare(name, data[name], model, hidden, layers, steps, rounds, batch, seed=args.seed)
            ff = res["flowforge"]["times"]
            for lib, r in res.items():
                ratio = "1" if lib == "flowforge" else _ratio(r["times"], ff)
                line = (f"| {name} | {model} | {lib} | {r['hidden']} | {r['params']:,} | {r['test']:.4f} ± {r['se']:.4f} "
                        f"| {r['valid']:.4f} ({r['best_step']}) | {1000 * statistics.median(r['times']):.2f} | {ratio} "
                        f"| {r['warmup']:.1f} |")
                lines.append(line)
                print(line, flush=True)
    lines += ["", f"total wall time {time.perf_counter() - t_start:.0f} s"]
    print(lines[-1])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


def _version(name: str) -> str:
    try:
        return __import__(name).__version__
    except (ImportError, AttributeError):
        from importlib.metadata import version

        return version(name)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())

"""Analytic Lipschitz bounds of every block of a flow beside its empirical local Lipschitz
constants (`flowforge lipschitz RUN_DIR`; Behrmann et al. 2021, supplement A / B).

Empirical, per block and for the whole map F (`diagnostics.jacobian.singular_value_extremes`, in
float64 on a copy of the model): at each example's input x of the block, sigma_max(J_F(x))
(forward) and 1 / sigma_min(J_F(x)) = sigma_max(J_F^-1(F(x))) (inverse); exact SVD for blocks of
at most `jacobian.EXACT_MAX_DIM` dimensions, power iteration (a lower estimate) above. The
largest over the examples is reported. For power iteration, a residual block's inverse is
differentiated through enough fixed-point steps for its truncated Neumann series to be within
1e-6 (at most 300 steps; `_neumann_steps`).

The whole flow's composed bound is the product over its blocks, forward and inverse separately;
a block acting on part of the latent (after a multi-scale split) counts as max(1, bound), the
identity on the factored-out part having Lipschitz constant 1.

The check: an empirical constant above its analytic bound by more than `RTOL` (relative) is a
violation (`holds` False) and is listed; a non-finite empirical value cannot be checked (None).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from flowforge.bijections.base import Bijection, Chain
from flowforge.bijections.multiscale import FactorOut, MultiScale
from flowforge.bijections.residual import ResidualBlock, logdet_skipped
from flowforge.diagnostics.jacobian import EXACT_MAX_DIM, singular_value_extremes
from flowforge.diagnostics.lipschitz_bounds import BOUNDED_TYPES, block_bound
from flowforge.diagnostics.maps import invertible_map

RTOL = 1e-4


def flow_blocks(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(name, block) of every block with a bound (`BOUNDED_TYPES`) or other non-chain bijection
    inside `module`, in registration order; containers (chains, module lists, models) are opened."""
    if not prefix and isinstance(module, BOUNDED_TYPES):
        return [(type(module).__name__, module)]
    blocks = []
    for name, child in module.named_children():
        if isinstance(child, BOUNDED_TYPES) or (isinstance(child, Bijection) and not isinstance(child, (Chain, MultiScale))):
            blocks.append((prefix + name, child))
        else:
            blocks.extend(flow_blocks(child, f"{prefix}{name}."))
    return blocks


def record_inputs(model: nn.Module, forward, x: Tensor) -> list[tuple[str, nn.Module, Tensor]]:
    """(name, block, its input batch) for every call of a block by the forward map, in calling
    order; a block called again (Glow's one squeeze at every level) is named "NAME (call k)"."""
    calls: list[tuple[str, nn.Module, Tensor]] = []
    blocks = flow_blocks(model)
    names = {id(b): n for n, b in blocks}
    counts: dict[int, int] = {}

    def hook(module, args, _output):
        k = counts[id(module)] = counts.get(id(module), 0) + 1
        name = names[id(module)] + (f" (call {k})" if k > 1 else "")
        calls.append((name, module, args[0].detach().clone()))

    handles = [b.register_forward_hook(hook) for _, b in blocks]
    try:
        with torch.no_grad():
            forward(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def _neumann_steps(block: ResidualBlock, lip_g: float, tol: float = 1e-6, cap: int = 300) -> int:
    """Differentiated fixed-point steps for the inverse's Jacobian: its truncated Neumann series
    is off by at most c^k / (1 - c); c >= 1 (no contraction by the bound) keeps the block's own."""
    if not 0 < lip_g < 1:
        return block.inverse_grad_steps
    return min(cap, max(block.inverse_grad_steps, math.ceil(math.log(tol * (1 - lip_g)) / math.log(lip_g))))


def _empirical(forward, inverse, x: Tensor, iters: int, gen: torch.Generator) -> tuple[float, float]:
    ext = singular_value_extremes(forward, inverse, x, iters=iters, generator=gen)
    return float(ext["sigma_max"].max()), float((1.0 / ext["sigma_min"]).max())


def _holds(empirical: float, bound: float) -> bool | None:
    if not math.isfinite(empirical):
        return None
    return bool(empirical <= bound * (1 + RTOL))


def lipschitz_table(model: nn.Module, x: Tensor, iters: int = 20, conv: str = "operator", seed: int = 0) -> dict:
    """Rows (one per block, then the whole flow) of analytic and empirical Lipschitz constants
    at the model-space inputs x, and the violations of the check. The whole flow is the map to the
    raw factored-out halves: a multi-scale flow's split priors standardise those halves by an
    affine map that no block bound covers, so it is left out (on a copy of the model)."""
    model64 = copy.deepcopy(model).double().eval()
    for module in model64.modules():  # the map to the raw factored-out halves (module docstring of multiscale.py)
        if isinstance(module, FactorOut):
            module.prior = None
    for attr in ("memory_saving", "checkpoint_steps"):  # plain calls of every block (the hooks)
        if hasattr(model64, attr):
            setattr(model64, attr, False)
    x64 = x.detach().double().cpu()
    gen = torch.Generator().manual_seed(seed)
    dims = x64[0].numel()
    rows, fwd_total, inv_total = [], 1.0, 1.0
    with logdet_skipped(model64):
        forward, inverse = invertible_map(model64)
        for name, block, xb in record_inputs(model64, forward, x64):
            bound = block_bound(block, xb, conv)
            if isinstance(block, ResidualBlock):
                block.inverse_grad_steps = _neumann_steps(block, bound.terms["lip_g"])
            emp_f, emp_i = _empirical(lambda v, b=block: b(v)[0], lambda v, b=block: b.inverse(v)[0], xb, iters, gen)
            partial = xb[0].numel() < dims
            fwd_total *= max(1.0, bound.forward) if partial else bound.forward
            inv_total *= max(1.0, bound.inverse) if partial else bound.inverse
            kind = type(block).__name__ + (f"({block.scale_name})" if hasattr(block, "scale_name") else "")
            rows.append(_row(name, kind, xb[0].numel(), bound.forward, emp_f, bound.inverse, emp_i, bound.scope,
                             bound.note, bound.terms))
        emp_f, emp_i = _empirical(forward, inverse, x64, iters, gen)
    flow = _row("whole flow (product of blocks)", type(model).__name__, dims, fwd_total, emp_f, inv_total, emp_i,
                "product", "", {})
    violations = [f"{r['name']} {d}: empirical {r[d + '_empirical']:.6g} > bound {r[d + '_bound']:.6g}"
                  for r in [*rows, flow] for d in ("forward", "inverse") if r[f"{d}_holds"] is False]
    return {"examples": x.shape[0], "dims": dims, "iters": iters, "conv_norm": conv, "rtol": RTOL,
            "blocks": rows, "flow": flow, "violations": violations}


def _row(name, kind, dims, fwd, emp_f, inv, emp_i, scope, note, terms) -> dict:
    hf, hi = _holds(emp_f, fwd), _holds(emp_i, inv)
    return {"name": name, "type": kind, "dims": dims, "forward_bound": fwd, "forward_empirical": emp_f,
            "inverse_bound": inv, "inverse_empirical": emp_i, "forward_holds": hf, "inverse_holds": hi,
            "holds": None if None in (hf, hi) else hf and hi, "scope": scope, "note": note, "terms": terms}


def _g(v) -> str:
    if v is None:
        return "—"
    return "∞" if v == math.inf else f"{v:.4g}"


def _yes(v) -> str:
    return {True: "yes", False: "**NO**", None: "n/a (non-finite)"}[v]


def render_markdown(r: dict) -> str:
    lines = [f"# Lipschitz bounds: {r.get('run_dir', '')}", "",
             f"Model `{r.get('model', '?')}`, checkpoint {r.get('checkpoint', '?')} (step {r.get('step', '?')}); "
             f"empirical constants at {r['examples']} examples of the {r.get('split', '?')} split "
             f"(largest over them; exact SVD up to {EXACT_MAX_DIM} dimensions, else {r['iters']} power iterations, a lower "
             f"estimate). Analytic: Behrmann et al. 2021, table 3 (`diagnostics/lipschitz_bounds.py`); "
             f"convolution norms by `{r['conv_norm']}`. Holds: empirical <= bound (1 + {r['rtol']:g}).", "",
             "| block | type | analytic fwd | empirical fwd | analytic inv | empirical inv | holds | scope |",
             "|---|---|---|---|---|---|---|---|"]
    for row in [*r["blocks"], r["flow"]]:
        name = f"**{row['name']}**" if row is r["flow"] else f"`{row['name']}`"
        lines.append(f"| {name} | {row['type']} | {_g(row['forward_bound'])} | {_g(row['forward_empirical'])} | "
                     f"{_g(row['inverse_bound'])} | {_g(row['inverse_empirical'])} | {_yes(row['holds'])} | "
                     f"{row['scope']} |")
    lines += ["", "Scopes: exact = the bound is the block's Lipschitz constant; global = for all inputs; data "
              "domain = on the model space; local (at the examples) = the affine coupling's lemma-6 constants "
              "taken at the examples, a bound on the local constants there (see lipschitz.json for them).", ""]
    notes = [f"- `{row['name']}`: {row['note']}" for row in r["blocks"]
             if row["note"] and row["scope"] != "local (at the examples)"]
    lines += (["Notes:", *notes, ""] if notes else [])
    lines += ([f"**Violations** ({len(r['violations'])}):", *[f"- {v}" for v in r["violations"]], ""]
              if r["violations"] else ["No violations: every finite empirical constant is within its bound.", ""])
    if r.get("command"):
        lines += [f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


def jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v

"""The markdown report of `flowforge diagnose` (figures beside it, written by diagnose.py)."""

from __future__ import annotations


def _g(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def _stats_row(name: str, s: dict) -> str:
    return f"| {name} | {_g(s['min'])} | {_g(s['median'])} | {_g(s['max'])} | {s['non_finite']} / {s['n']} |"


def render_report(r: dict) -> str:
    rec = r["reconstruction"]
    lines = [
        f"# Stability diagnostics: {r.get('run_dir', '')}",
        "",
        f"Model `{r.get('model', '?')}`, checkpoint {r.get('checkpoint', '?')} (step {r.get('step', '?')}), "
        f"{r['examples']} examples of the {r.get('split', '?')} split, {r['dims']} dimensions each.",
        "",
        "## Reconstruction error ||x - F^-1(F(x))||_2 (model space)",
        "",
        "| mean (finite) | median | max (finite) | non-finite | share non-finite |",
        "|---|---|---|---|---|",
        f"| {_g(rec['mean'])} | {_g(rec['median'])} | {_g(rec['max'])} | {rec['non_finite']} "
        f"(inf {rec['inf']}, NaN {rec['nan']}) | {_g(rec['share_non_finite'])} |",
        "",
        "![reconstruction errors](reconstruction-errors.png)",
        "",
    ]
    pi = r["power_iteration"]
    lines += [f"## Singular values by power iteration ({pi['examples']} examples, {pi['iters']} iterations)", "",
              "sigma_min of a map is 1 / sigma_max of its inverse's Jacobian at the image point.", "",
              "| quantity | min | median | max | non-finite |", "|---|---|---|---|---|"]
    for name, label in (("forward", "F"), ("inverse", "F^-1")):
        for key, s in r[f"{name}_power_iteration"].items():
            lines.append(_stats_row(f"{label} {key}", s))
    lines.append("")
    exact = r.get("exact")
    if exact and "skipped" not in exact:
        lines += [f"## Exact Jacobian spectra (autograd + SVD, float64, {exact['examples']} examples)", "",
                  "| quantity | min | median | max | non-finite |", "|---|---|---|---|---|"]
        for name, label in (("forward", "F"), ("inverse", "F^-1")):
            for key in ("sigma_max", "sigma_min", "condition"):
                lines.append(_stats_row(f"{label} {key}", exact[f"{name}_{key}"]))
        lines += [_stats_row("abs(numerical - analytic log-det)", exact["logdet_abs_error"]), "",
                  "![singular values](singular-values.png)", ""]
    elif exact:
        lines += [f"Exact spectra skipped: {exact['skipped']}.", ""]
    lines += ["## Repeated encode/decode drift", "",
              "x_k = F^-1(F(x_k-1)); PAD = mean |x - x_k| in 0-255 pixel units, MSE per pixel in model units.", "",
              "| pass | PAD | MSE | max abs | non-finite examples |", "|---|---|---|---|---|"]
    for row in r["drift"]:
        lines.append(f"| {row['pass']} | {_g(row['pad'])} | {_g(row['mse'])} | {_g(row['max_abs'])} | {row['non_finite']} |")
    lines.append("")
    if "ood" in r:
        lines += ["## Out-of-distribution probes (reconstruction error)", "",
                  "| probe | examples | mean (finite) | max (finite) | inf | NaN |", "|---|---|---|---|---|---|"]
        for name, s in r["ood"].items():
            lines.append(f"| {name} | {s['examples']} | {_g(s['mean'])} | {_g(s['max'])} | {s['inf']} | {s['nan']} |")
        lines.append("")
    if r.get("command"):
        lines += [f"Command: `{r['command']}`", ""]
    return "\n".join(lines)

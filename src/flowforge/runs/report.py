"""report.md: a short summary of a run, rebuilt from the files in its directory."""

from __future__ import annotations

import json
from pathlib import Path

from flowforge.evaluation.summary import LOG_PROB_KINDS, METRIC_NAMES
from flowforge.runs.checkpoint import checkpoint_exists, load_checkpoint
from flowforge.training.metrics import read_metrics


def _fmt(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _is_partial(result: dict) -> bool:
    """An evaluation of part of a split (`flowforge eval --examples N`)."""
    return result["examples"] < result.get("split_examples", result["examples"])


def _speed_line(train: dict) -> str:
    """The speed switches of the run, and with `speed = "auto"` what was chosen and why."""
    on = [name for name in ("channels_last", "compile", "compile_flow", "cuda_graphs", "sync_free_skip") if train.get(name)]
    switches = ", ".join([f"coupling_dtype={train.get('coupling_dtype', 'float32')}", *on])
    if train.get("speed") == "auto":
        return f"auto: {train.get('speed_choice') or switches}"
    return f"manual: {switches}"


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.md from config.toml, the checkpoints, metrics.csv and eval-*.json."""
    root = Path(run_dir)
    lines = [f"# Run report: `{root.name}`", ""]
    last = root / "checkpoints" / "last"
    if checkpoint_exists(last):
        state = load_checkpoint(last)
        model = state["config"]["model"]
        data = state["config"]["data"]
        lines += [
            "## Training",
            "",
            _data_line(data),
            f"- model: {model['name']} ({', '.join(f'{k}={v}' for k, v in model.items() if k != 'name')})",
            f"- steps: {state['step']} (skipped non-finite: {state['skipped_steps']}, rollbacks: {state['rollbacks']})",
            f"- training time: {state['elapsed_seconds']:.1f} s; wall-clock including validation and saving: "
            f"{state['wall_seconds']:.1f} s (summed over resumed jobs)",
            f"- speed: {_speed_line(state['config'].get('train', {}))}",
            f"- best validation {METRIC_NAMES[state['metric']]}: {_fmt(state['best_valid'])} at step "
            f"{state['best_step']} (EMA weights; this checkpoint is the one evaluated)",
            "",
        ]
    results = [json.loads(path.read_text()) for path in sorted(root.glob("eval-*.json"))]
    for r in sorted(results, key=_is_partial):  # whole splits (the run's figures) first
        metric = r["metric"]
        where = (f"the first {r['examples']} of {r['split_examples']} examples of the {r['split']} split "
                 "(partial: not the run's figure)" if _is_partial(r) else f"the {r['split']} split")
        lines += [
            f"## Evaluation on {where}",
            "",
            f"- {METRIC_NAMES[metric]}: **{_fmt(r[metric])}** ± {_fmt(r[metric + '_std_err'])} (std. error) over "
            f"{r['examples']} examples, {r['samples']} sample(s) per example, checkpoint `{r['checkpoint']}`",
            f"- log-likelihood: {LOG_PROB_KINDS[r.get('log_prob', 'exact')]}",
            *([f"- class-conditional: the figure is the marginal p(x), the equal-weight mixture over the labels; "
               f"given the true labels {_fmt(r['bpd_given_label'])} ± {_fmt(r['bpd_given_label_std_err'])}"]
              if "bpd_given_label" in r else []),
            f"- command: `{r['command']}`",
            "",
        ]
    rows = [r for r in read_metrics(root / "metrics.csv") if r["event"] == "train"]
    if rows:
        last_row = rows[-1]
        metric = "bpd" if last_row["train_bpd"] else "nll"
        lines += ["## Last logged training window", "",
                  f"- step {last_row['step']}: train {METRIC_NAMES[metric]} {last_row['train_' + metric]}, "
                  f"{float(last_row['examples_per_s']):.0f} examples/s", ""]
    from flowforge.viz.nonfinite import recorded  # figures with NaN / inf samples (marked red in them)

    broken = recorded(root)
    if broken:
        lines += ["## Non-finite samples", ""] + [
            f"- {p.relative_to(root)}: **{n} of {total}** samples non-finite (NaN or inf), drawn as red cells with a cross"
            for p, n, total in broken] + [""]
    images = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    if images:
        lines += ["## Images", ""] + [f"- [{p}]({p})" for p in images[-12:]] + [""]
    path = root / "report.md"
    path.write_text("\n".join(lines))
    return path


def _data_line(data: dict) -> str:
    if data.get("path"):  # data of your own (data/user_arrays.py, data/user_images.py)
        cols = (f"; columns {list(data.get('columns') or []) or 'all'}, context {list(data.get('context_columns') or [])}"
                if data["dataset"] == "array" else f", {data['n_bits']}-bit")
        return (f"- data: {data['dataset']} `{data['path']}`{cols}; seeded split (seed {data.get('split_seed', 0)}): "
                f"valid {data.get('valid_fraction')}, test {data.get('test_fraction')} (or the file's own splits)")
    return f"- data: {data['dataset']}, {data['n_bits']}-bit, validation split of {data['n_valid']} carved from train"

"""Commands that do not take per-example contexts yet refuse a context-conditioned run in one line."""

from __future__ import annotations

from flowforge.errors import FlowforgeError


def context_dim_of(run_dir) -> int:
    from flowforge.runs.run_dir import read_run_config

    return int(read_run_config(run_dir).model.options.get("context_dim", 0) or 0)


def refuse_context_run(run_dir, what: str) -> None:
    dim = context_dim_of(run_dir)
    if dim:
        raise FlowforgeError(f"{what} does not take context vectors yet, and {run_dir} is a context-conditioned "
                             f"model (model.context_dim = {dim}); eval and sample work on it")

"""Non-finite samples per temperature of a trained run and where they start (which layers, what
scales): diagnostics/sampling_trace.py on the run's selected checkpoint.

    PYTHONPATH=src python benchmarks/sampling_blowup.py RUN_DIR [--n 64] [--temperatures 0.7,0.9,1.0] [--layers]"""

from __future__ import annotations

import argparse
import json

from flowforge.diagnostics.sampling_trace import summarise, trace_sampling
from flowforge.runs.run_dir import load_trained


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--temperatures", default="0.7,0.9,1.0")
    p.add_argument("--layers", action="store_true", help="print every layer of the last temperature")
    p.add_argument("--checkpoint", default="best")
    a = p.parse_args()
    _, model, _ = load_trained(a.run_dir, which=a.checkpoint)
    for t in (float(v) for v in a.temperatures.split(",")):
        traces = trace_sampling(model, a.n, t)
        print(json.dumps({"temperature": t, "n": a.n, **summarise(traces)}))
    if a.layers:
        for tr in traces:
            print(f"{tr.name:40s} {tr.kind:22s} max|out| {tr.max_abs:10.3g} non-finite {tr.non_finite:3d} "
                  f"min scale {tr.min_scale:9.3g} {tr.extra}")


if __name__ == "__main__":
    main()

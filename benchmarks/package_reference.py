"""Copy a trained run into a small, loadable reference directory: the selected checkpoint with
its EMA weights as the model weights (no optimizer state, no second weight copy), new checksums,
config.toml, metrics.csv, the eval results and sample figures. `flowforge sample OUT_DIR` and
`flowforge eval OUT_DIR` load it through the usual checkpoint loader (checksums verified).

    PYTHONPATH=src python benchmarks/package_reference.py RUN_DIR OUT_DIR"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from flowforge.runs.checksums import write_checksums


def main(run_dir: str, out_dir: str) -> None:
    src, out = Path(run_dir), Path(out_dir)
    ckpt = src / "checkpoints" / "best"
    dest = out / "checkpoints" / "best"
    dest.mkdir(parents=True, exist_ok=True)
    weights = ckpt / "ema.safetensors" if (ckpt / "ema.safetensors").is_file() else ckpt / "model.safetensors"
    shutil.copyfile(weights, dest / "model.safetensors")
    shutil.copyfile(ckpt / "state.json", dest / "state.json")
    for stale in ("ema.safetensors", "optimizer.pt"):
        (dest / stale).unlink(missing_ok=True)
    write_checksums(dest, ["model.safetensors", "state.json"])
    for name in ("config.toml", "metrics.csv", *(p.name for p in src.glob("eval-*.json"))):
        shutil.copyfile(src / name, out / name)
    if (src / "samples").is_dir():
        shutil.copytree(src / "samples", out / "samples", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("step-*", "density*"))
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main(*sys.argv[1:3])

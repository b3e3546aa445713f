"""`flowforge reproduce stability-2d` end to end at toy scale: three models train, every
diagnostic is computed on the grid (non-finite values counted), the figure and tables are written,
and a re-run reuses the finished runs."""

import json

from conftest import CONFIGS
from flowforge.cli import build_parser
from flowforge.experiments import stability_2d


def test_stability_2d_end_to_end(tmp_path):
    out = tmp_path / "stab"
    stability_2d.reproduce(out, config=CONFIGS / "stability-2d.toml", steps=10, progress=False, resolution=20)
    record = json.loads((out / "results.json").read_text())
    assert set(record) == {"affine-sigmoid", "affine-squashed-sigmoid", "resflow (fixed point only)",
                           "resflow (+ 2 Newton steps)"}
    for name, entry in record.items():
        grid = entry["reconstruction"]["grid"]
        assert grid["examples"] == 20**2
        assert grid["non_finite"] + (grid["max"] is not None) >= 1  # counted, never dropped
        assert entry["test_reconstruction"]["examples"] == 5000
        assert entry["condition"]["inside"]["examples"] > 0 and entry["condition"]["outside"]["examples"] > 0
    for entry in (record["resflow (+ 2 Newton steps)"], record["resflow (fixed point only)"]):
        assert entry["test_reconstruction"]["non_finite"] == 0  # a contraction's inverse always converges
        assert entry["test_reconstruction"]["max"] < 1e-3
    assert (out / "stability-2d.png").stat().st_size > 1000
    table = (out / "results.md").read_text()
    again = stability_2d.reproduce(out, config=CONFIGS / "stability-2d.toml", steps=10, progress=False,
                                   resolution=20)
    assert again in table  # the runs are reused: same trained models, same figures


def test_stability_2d_is_a_reproduce_command():
    parser = build_parser()
    args = parser.parse_args(["reproduce", "stability-2d", "--steps", "5"])
    assert args.name == "stability-2d" and args.steps == 5

"""The paper experiments end to end at toy scale: they train, evaluate, write their tables and
figures, and a re-run reuses finished runs."""

from conftest import CONFIGS, needs_mnist
from flowforge.cli import main
from flowforge.experiments import density_2d


def test_density_2d_trains_every_model_and_draws_the_figure(tmp_path):
    table = density_2d.reproduce(tmp_path, config=CONFIGS / "density-2d.toml", steps=20, datasets=("two-moons",),
                                 progress=False)
    assert table.count("|") > 8 and "two-moons" in table
    assert (tmp_path / "two-moons.png").stat().st_size > 1000
    for label in density_2d.MODELS:
        assert (tmp_path / "two-moons" / label / "eval-test.json").is_file()
    again = density_2d.reproduce(tmp_path, config=CONFIGS / "density-2d.toml", steps=20, datasets=("two-moons",),
                                 progress=False)
    assert again == table


@needs_mnist
def test_glow_permutations_table(tmp_path, capsys):
    out = tmp_path / "perm"
    assert main(["reproduce", "glow-permutations", "--config", str(CONFIGS / "tiny-mnist.toml"), "--steps", "3",
                 "--seeds", "1", "--out-dir", str(out), "--no-progress"]) == 0
    text = (out / "results.md").read_text()
    for variant in ("additive | reverse", "additive | shuffle", "additive | conv1x1", "affine | reverse",
                    "affine | shuffle", "affine | conv1x1"):
        assert variant in text
    assert "results.md" in capsys.readouterr().out


def test_flat_runs_evaluate_and_sample_from_the_command_line(tmp_path, capsys):
    density_2d.reproduce(tmp_path, config=CONFIGS / "density-2d.toml", steps=5, datasets=("rings",), progress=False)
    run = tmp_path / "rings" / "MAF-10"
    assert main(["eval", str(run), "--no-progress"]) == 0
    assert "test NLL" in capsys.readouterr().out
    assert main(["sample", str(run), "--n", "50"]) == 0
    assert (run / "samples" / "samples-T0.7.pt").is_file() and (run / "samples" / "density.png").is_file()
    assert main(["sample", str(run), "--sweep"]) == 2
    assert "need an image model" in capsys.readouterr().err

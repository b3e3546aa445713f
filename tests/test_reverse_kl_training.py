"""`train.objective = "reverse-kl"` on an energy data set through the shared Trainer and the CLI:
training lowers the negative ELBO, eval scores fresh draws against the boxed log Z, sample writes
points, a resumed run equals the uninterrupted one, and mismatched settings are refused in one line."""

import contextlib
import io

import pytest
import torch

from conftest import CONFIGS
from flowforge.cli import main
from flowforge.runs.config import load_config
from flowforge.runs.run_dir import load_trained
from flowforge.runs.trainer import Trainer
from flowforge.training.metrics import read_metrics

FIT = ["model.layers=2", "model.hidden=[16]", "train.lr=5e-3", "train.batch_size=128", "train.valid_examples=2000",
       "train.log_every=10", "train.checkpoint_every=20", "train.sample_every=1000", "train.kl_anneal_steps=20"]


def _config(dataset: str, *extra: str):
    return load_config(CONFIGS / "reverse-kl-u1.toml", [f'data.dataset="{dataset}"', *FIT, *extra])


def test_reverse_kl_training_lowers_the_negative_elbo_of_fresh_draws(tmp_path):
    state = Trainer(_config("energy-u2", "train.max_steps=150", "train.eval_every=50"), tmp_path / "run",
                    progress=False).fit()
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    valid = [float(r["valid_neg_elbo"]) for r in rows if r["event"] == "valid"]
    first = float(next(r for r in rows if r["event"] == "train")["train_neg_elbo"])  # steps 1-10
    assert len(valid) == 3 and valid[-1] < first - 1.0
    # the negative ELBO is KL(q || p) - log Z >= -log Z: on U2 (log Z = 2.08 on the box) within 1 nat of it
    assert -2.0821 - 0.05 < valid[-1] < -2.0821 + 1.0
    assert state.metric == "neg_elbo" and state.best_valid == pytest.approx(min(valid), abs=1e-5)  # csv: 6 digits
    assert all(r["train_neg_elbo"] for r in rows if r["event"] == "train")
    assert (tmp_path / "run" / "samples" / "step-0000150.png").is_file()  # target, q and samples


def test_eval_and_sample_on_an_energy_run(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(_config("energy-u1", "train.max_steps=40", "train.eval_every=20"), run, progress=False).fit()
    assert main(["eval", str(run), "--examples", "3000", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "negative ELBO" in out and "over the first 3000 of 20000 examples" in out and "KL to the boxed" in out
    import json

    result = json.loads((run / "eval-test-first3000.json").read_text())
    # E_q[log q - log p~] >= -log Z on the box's mass: the gap is a KL, so it is >= 0 (up to noise)
    assert result["box_log_z"] == pytest.approx(1.8775, abs=1e-3)  # exp(-U1) on [-4, 4]^2 by quadrature
    assert result["box_kl_gap"] > -3 * result["neg_elbo_std_err"]
    assert main(["sample", str(run), "--n", "100", "--no-progress"]) == 0
    points = torch.load(run / "samples" / "samples-T0.7.pt")
    assert points.shape == (100, 2) and torch.isfinite(points).all()


def test_a_resumed_reverse_kl_run_equals_the_uninterrupted_one(tmp_path):
    once = Trainer(_config("energy-u1", "train.max_steps=40", "train.eval_every=20"), tmp_path / "once",
                   progress=False).fit()
    Trainer(_config("energy-u1", "train.max_steps=20", "train.eval_every=20"), tmp_path / "split", progress=False).fit()
    twice = Trainer(_config("energy-u1", "train.max_steps=40", "train.eval_every=20"), tmp_path / "split",
                    progress=False).fit(resume=True)
    assert (twice.step, twice.best_valid) == (once.step, once.best_valid)
    a, b = (load_trained(tmp_path / d, which="last")[1].state_dict() for d in ("once", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sets, message", [
    (['train.objective="likelihood"'], 'train.objective = "reverse-kl" goes with an energy'),
    (['data.dataset="two-moons"'], "goes with an energy"),
    (['data.dataset="energy-u9"'], "energy-u9"),
    (['train.objective="forward-kl"'], "forward-kl"),
])
def test_mismatched_objective_and_data_are_refused_in_one_line(tmp_path, capsys, sets, message):
    run = tmp_path / "run"
    argv = ["train", "reverse-kl-u1", "--run-dir", str(run), "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv + [a for s in sets for a in ("--set", s)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (run / "checkpoints").exists()


def test_torchrun_training_refuses_a_reverse_kl_fit_and_a_classifier(tmp_path):
    from flowforge.errors import ConfigError
    from flowforge.runs.distributed_trainer import DistributedTrainer

    with pytest.raises(ConfigError, match="one process"):
        DistributedTrainer(_config("energy-u1", "train.max_steps=2"), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="one process"):
        DistributedTrainer(load_config(CONFIGS / "inn-classifier.toml"), tmp_path / "b", progress=False)

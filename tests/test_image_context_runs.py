"""Context-conditioned image runs from the command line: images of your own (image-array) with a
context file (data.context_path) train, evaluate and sample a Glow with model.context_dim; the
commands that take no contexts yet refuse such a run in one line; bad context files and a
context_dim that does not match are refused in one line, naming the file."""

import contextlib
import io

import numpy as np
import pytest

from flowforge.cli import main
from flowforge.data.user_images import load_user_images

N = 48


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctx")
    gen = np.random.default_rng(0)
    c = gen.normal(size=(N, 2)).astype(np.float32)
    # images whose brightness follows the first context value: the context is informative
    base = gen.integers(0, 64, (N, 1, 8, 8))
    images = np.clip(base + (128 + 40 * c[:, :1, None, None]), 0, 255).astype(np.uint8)
    np.save(d / "images.npy", images)
    np.save(d / "context.npy", c)
    return d


def _argv(files, run, *sets):
    base = ['data.dataset="image-array"', f'data.path="{files / "images.npy"}"',
            f'data.context_path="{files / "context.npy"}"', "model.context_dim=2", "model.levels=2", "model.depth=1",
            "model.hidden=8", "train.batch_size=8", "train.init_batch=16", "train.max_steps=4", "train.eval_every=4",
            "train.checkpoint_every=4", "train.sample_every=4", "train.valid_examples=0", "train.warmup_steps=1"]
    return ["train", "tiny-mnist", "--run-dir", str(run), "--no-progress"] + [a for s in (*base, *sets)
                                                                          for a in ("--set", s)]


def _quiet(argv):
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


def test_contexts_are_split_with_their_images(files):
    splits = load_user_images("image-array", files / "images.npy", context_path=files / "context.npy")
    c = np.load(files / "context.npy")
    assert splits["train"].labels.shape == (len(splits["train"]), 2)
    total = sum(len(s) for s in splits.values())
    assert total == N and splits["test"].labels.dtype.is_floating_point
    # every context row is one of the file's rows, and the rows of the three splits are disjoint
    rows = {tuple(r) for s in splits.values() for r in s.labels.numpy().round(6)}
    assert rows == {tuple(r) for r in c.round(6)}


def test_a_context_conditioned_glow_trains_evaluates_and_samples(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert _quiet(_argv(files, run)) == 0
    assert main(["eval", str(run), "--no-progress"]) == 0
    assert "bits/dim" in capsys.readouterr().out
    assert main(["sample", str(run), "--n", "16", "--no-progress"]) == 0
    assert (run / "samples" / "samples-T0.7.png").is_file()
    for argv, what in ((["diagnose", str(run)], "diagnose"), (["attack", str(run)], "attack"),
                       (["sample", str(run), "--sweep"], "--sweep")):
        capsys.readouterr()
        assert main(argv + ["--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert what in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("case, sets, message", [
    ("dim", ["model.context_dim=3"], "holds 2 values per image"),
    ("missing", ['data.context_path=""'], "is not set"),
    ("rows", [], "context rows for"),
    ("nan", [], "NaN or infinite"),
    ("builtin", ['data.dataset="mnist"'], "data.context_path"),
    ("diagnose", ["train.diagnose_every=2"], "diagnose_every"),
])
def test_bad_contexts_are_refused_in_one_line(files, tmp_path, capsys, case, sets, message):
    if case in ("rows", "nan"):
        c = np.load(files / "context.npy")
        c = c[:-3] if case == "rows" else np.where(np.arange(N)[:, None] == 5, np.nan, c)
        bad = tmp_path / "bad.npy"
        np.save(bad, c)
        sets = [f'data.context_path="{bad}"']
    run = tmp_path / "run"
    assert _quiet(_argv(files, run, *sets)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (run / "checkpoints").exists()

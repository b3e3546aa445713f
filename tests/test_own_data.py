"""Data of your own: .npy / .npz / .csv tables (with context columns), uint8 image arrays and PNG
folders; seeded splits, training-split standardisation saved with the run; train / eval / sample
end to end; every bad file refused with one line naming it, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import perturb
from flowforge.cli import main
from flowforge.data.user_arrays import load_user_arrays, read_table, split_rows
from flowforge.data.user_images import load_user_images
from flowforge.errors import ConfigError, DataError
from flowforge.models import create
from flowforge.runs.config import load_config
from flowforge.runs.data_sources import UserArraySource, UserImageSource, make_source


def _rows(n: int = 200, seed: int = 0) -> np.ndarray:
    """(n, 3): a scalar context `angle` and a 2-D point that depends on it, far from 0 and 1 in scale."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    xy = np.c_[np.cos(angle), np.sin(angle)] * 50 + rng.normal(0, 2, (n, 2)) + [1000.0, 5.0]
    return np.c_[angle, xy]


def _write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def moons_csv(tmp_path) -> Path:
    return _write_csv(tmp_path / "moons.csv", ["angle", "x", "y"], _rows().tolist())


def _train_toml(tmp_path: Path, path: Path, extra: str = "", model: str = 'name = "maf"\nlayers = 2\nhidden = [8]',
                dataset: str = "array", batch: int = 32) -> Path:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[data]\ndataset = "{dataset}"\npath = "{path}"\n{extra}\n[model]\n{model}\n'
                   f'[train]\nbatch_size = {batch}\nmax_steps = 6\nwarmup_steps = 0\neval_every = 3\nlog_every = 3\n'
                   "sample_every = 6\ncheckpoint_every = 6\ninit_batch = 32\n[eval]\nbatch_size = 64\n")
    return cfg


# ---------------------------------------------------------------------------------- reading files

def test_npy_npz_and_csv_read_the_same_numbers(tmp_path, moons_csv):
    a = _rows()
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "a.npz", x=a)
    t_csv, t_npy, t_npz = (read_table(p) for p in (moons_csv, tmp_path / "a.npy", tmp_path / "a.npz"))
    assert t_csv.names == ("angle", "x", "y") and t_npy.names == ("0", "1", "2")
    np.testing.assert_allclose(t_csv.parts["all"], a, rtol=1e-15)
    np.testing.assert_array_equal(t_npy.parts["all"], a)
    np.testing.assert_array_equal(t_npz.parts["all"], a)


def test_seeded_split_is_disjoint_complete_and_repeatable():
    rows = split_rows(101, 0.1, 0.2, seed=3)
    assert [len(rows[s]) for s in ("train", "valid", "test")] == [71, 10, 20]
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(101))
    again = split_rows(101, 0.1, 0.2, seed=3)
    assert all(np.array_equal(rows[s], again[s]) for s in rows)
    assert not np.array_equal(split_rows(101, 0.1, 0.2, seed=4)["test"], rows["test"])


def test_standardisation_fitted_on_the_training_split_only(moons_csv):
    u = load_user_arrays(moons_csv, columns=["x", "y"], context_columns=["angle"])
    train, test = u.splits.train.double(), u.splits.test.double()
    assert torch.allclose(train.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-5)
    assert not torch.allclose(test.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-5)  # test statistics were not used
    raw = read_table(moons_csv).parts["all"]
    rows = split_rows(len(raw), 0.1, 0.1, 0)
    np.testing.assert_allclose(u.x_standardiser.mean, raw[rows["train"]][:, 1:].mean(0))
    # back to the file's units exactly (float32 round trip)
    np.testing.assert_allclose(u.x_standardiser.invert(u.splits.test).numpy(), raw[rows["test"]][:, 1:], rtol=1e-6)
    assert u.context_dim == 1 and u.context["train"].shape == (len(u.splits.train), 1)


def test_npz_with_given_splits_keeps_them(tmp_path):
    a = _rows(90)
    np.savez(tmp_path / "s.npz", train=a[:60], valid=a[60:70], test=a[70:])
    u = load_user_arrays(tmp_path / "s.npz", columns=[1, 2], context_columns=[0])
    assert [len(u.splits.split(s)) for s in ("train", "valid", "test")] == [60, 10, 20]
    np.testing.assert_allclose(u.x_standardiser.invert(u.splits.test).numpy(), a[70:, 1:], rtol=1e-6)


def test_source_gives_context_and_context_dim_reaches_the_model(tmp_path, moons_csv):
    cfg = load_config(_train_toml(tmp_path, moons_csv, 'columns = ["x", "y"]\ncontext_columns = ["angle"]'))
    source = make_source(cfg)
    assert isinstance(source, UserArraySource)
    assert source.model_args() == {"dim": 2, "context_dim": 1}
    x, c = source.tensors("train", limit=16)
    assert x.shape == (16, 2) and c.shape == (16, 1)
    model = create("maf", layers=2, hidden=[8], **source.model_args())
    perturb(model, seed=0)  # the MADE's last layer starts at zero (an identity map)
    c = c.clone().requires_grad_(True)
    model.loss((x, c))["loss"].backward()
    assert c.grad.abs().sum() > 0  # the loss reads the context


def test_context_for_a_model_without_one_is_refused(tmp_path, moons_csv):
    cfg = load_config(_train_toml(tmp_path, moons_csv, 'context_columns = ["angle"]',
                                  model='name = "lgf-flat-realnvp"'))
    with pytest.raises(ConfigError, match="model 'lgf-flat-realnvp' takes no context"):
        make_source(cfg)


# ---------------------------------------------------------------------------------- end to end

def test_train_eval_sample_end_to_end_with_context(tmp_path, moons_csv, capsys):
    cfg = _train_toml(tmp_path, moons_csv, 'columns = ["x", "y"]\ncontext_columns = ["angle"]')
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    state = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    saved = state["data_state"]["user_arrays"]
    assert saved["columns"] == ["x", "y"] and saved["context_columns"] == ["angle"]
    assert state["model_data_args"] == {"dim": 2, "context_dim": 1}
    assert main(["eval", str(run), "--no-progress"]) == 0
    result = json.loads((run / "eval-test.json").read_text())
    assert result["examples"] == 20 and np.isfinite(result["nll"])
    log_std = sum(np.log(saved["standardise_x"]["std"]))
    assert result["nll_original_units"] == pytest.approx(result["nll"] + log_std)
    assert main(["sample", str(run), "--n", "7", "--no-progress"]) == 0
    out = run / "samples" / "samples-T0.7.csv"
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["angle", "x", "y"] and len(rows) == 8
    pts = np.array(rows[1:], dtype=float)
    assert np.all(np.isfinite(pts)) and 900 < np.median(pts[:, 1]) < 1100  # written back in the file's units
    # the context column of the samples is the test split's, in the file's units
    u = load_user_arrays(moons_csv, ["x", "y"], ["angle"])
    np.testing.assert_allclose(pts[:, 0], u.context_standardiser.invert(u.context["test"][:7]).numpy()[:, 0], rtol=1e-6)


def test_eval_uses_the_saved_standardisation_and_refuses_a_changed_file(tmp_path, moons_csv, capsys):
    run = tmp_path / "run"
    assert main(["train", str(_train_toml(tmp_path, moons_csv)), "--run-dir", str(run), "--no-progress"]) == 0
    _write_csv(moons_csv, ["angle", "x", "y"], _rows(seed=1).tolist())
    capsys.readouterr()
    assert main(["eval", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "moons.csv changed since the run was trained" in err
    assert not (run / "eval-test.json").exists()


def test_npy_without_context_and_its_2d_density_figure(tmp_path):
    np.save(tmp_path / "pts.npy", _rows()[:, 1:].astype(np.float32))
    run = tmp_path / "run"
    assert main(["train", str(_train_toml(tmp_path, tmp_path / "pts.npy")), "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "s.pt"), "--no-progress"]) == 0
    pts = torch.load(tmp_path / "s.pt")
    assert pts.shape == (5, 2) and pts.dtype == torch.float64
    assert (run / "samples" / "density.png").is_file()


# ---------------------------------------------------------------------------------- images

def test_uint8_npy_images_gray_and_colour(tmp_path):
    gen = np.random.default_rng(0)
    np.save(tmp_path / "g.npy", gen.integers(0, 256, (40, 4, 4), dtype=np.uint8))
    np.save(tmp_path / "c.npy", gen.integers(0, 256, (40, 3, 4, 4), dtype=np.uint8))
    g = load_user_images("image-array", tmp_path / "g.npy")
    c = load_user_images("image-array", tmp_path / "c.npy", n_bits=5)
    assert g["train"].images.shape == (32, 1, 4, 4) and len(g["valid"]) == 4 and len(g["test"]) == 4
    assert c["train"].images.shape[1:] == (3, 4, 4) and bool((c["train"].images % 8 == 0).all())  # 5 bits, on the 8-bit scale


def _png_folder(folder: Path, n: int = 20, mode: str = "L", size=(4, 4)) -> Path:
    from PIL import Image

    folder.mkdir()
    gen = np.random.default_rng(1)
    for i in range(n):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        Image.fromarray(gen.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(folder / f"{i:03d}.png")
    return folder


def test_png_folder_trains_evaluates_and_samples(tmp_path):
    folder = _png_folder(tmp_path / "pngs")
    splits = load_user_images("image-folder", folder)
    assert splits["train"].images.shape == (16, 1, 4, 4) and splits["train"].images.dtype == torch.uint8
    cfg = _train_toml(tmp_path, folder, dataset="image-folder", batch=8,
                      model='name = "glow"\nlevels = 1\ndepth = 1\nhidden = 4')
    source = make_source(load_config(cfg))
    assert isinstance(source, UserImageSource) and source.model_args()["image_shape"] == (1, 4, 4)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["eval", str(run), "--no-progress"]) == 0
    assert np.isfinite(json.loads((run / "eval-test.json").read_text())["bpd"])
    assert main(["sample", str(run), "--n", "4", "--no-progress"]) == 0


# ---------------------------------------------------------------------------------- bad files

def _bad_cases(tmp_path: Path):
    good = _rows(30)
    np.save(tmp_path / "obj.npy", np.array(["a", "b"]))
    np.save(tmp_path / "one_d.npy", good[:, 0])
    nan = good.copy()
    nan[4, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "many.npz", a=good, b=good)
    _write_csv(tmp_path / "good.csv", ["angle", "x", "y"], good.tolist())
    _write_csv(tmp_path / "cell.csv", ["angle", "x", "y"], [*good[:3].tolist(), [0.1, "abc", 2.0]])
    _write_csv(tmp_path / "nancell.csv", ["angle", "x", "y"], [*good[:3].tolist(), [0.1, "nan", 2.0]])
    _write_csv(tmp_path / "ragged.csv", ["angle", "x", "y"], [*good[:3].tolist(), [0.1, 2.0]])
    _write_csv(tmp_path / "noheader.csv", ["1.0", "2.0", "3.0"], good[:3].tolist())
    (tmp_path / "table.txt").write_text("1,2\n")
    const = good.copy()
    const[:, 2] = 7.0
    np.save(tmp_path / "const.npy", const)
    np.save(tmp_path / "img.npy", np.zeros((4, 4, 4, 3), dtype=np.uint8))
    np.save(tmp_path / "imgf.npy", np.zeros((4, 1, 4, 4), dtype=np.float32))
    folder = _png_folder(tmp_path / "mixed", n=3)
    _png_folder(tmp_path / "other", n=1, size=(5, 5))
    (tmp_path / "other" / "000.png").rename(folder / "zzz.png")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG nope")
    return [
        # (dataset, path, data extras, message fragment)
        ("array", "missing.csv", "", "missing.csv: no such file"),
        ("array", "table.txt", "", "table.txt: expected a file ending in .npy, .npz, .csv"),
        ("array", "obj.npy", "", "obj.npy: the array holds <U1 values"),
        ("array", "one_d.npy", "", "one_d.npy: the array has shape (30,); expected (N, D)"),
        ("array", "nan.npy", "", "nan.npy: row 4, column '2' is NaN"),
        ("array", "junk.npy", "", "junk.npy: not a readable .npy file"),
        ("array", "junk.npz", "", "junk.npz: not a readable .npz file"),
        ("array", "many.npz", "", "many.npz: expected one array, or the arrays 'train', 'valid' and 'test'"),
        ("array", "cell.csv", "", "cell.csv: row 5, column 'x': 'abc' is not a number"),
        ("array", "nancell.csv", "", "nancell.csv: row 5, column 'x' is NaN"),
        ("array", "ragged.csv", "", "ragged.csv: row 5 has 2 cells; the header has 3"),
        ("array", "noheader.csv", "", "noheader.csv: the first row ['1.0', '2.0', '3.0'] is numbers"),
        ("array", "good.csv", 'columns = ["x", "z"]', "data.columns names column 'z', which the file does not have"),
        ("array", "good.csv", 'columns = ["x", "y"]\ncontext_columns = ["x"]',
         "column 'x' is in both data.columns and data.context_columns"),
        ("array", "const.npy", "context_columns = [7]", "data.context_columns names column 7"),
        ("array", "const.npy", "", "const.npy: column '2' is constant (7) in the training split"),
        ("image-array", "img.npy", "", "img.npy: images have shape (4, 4, 4, 3); expected (N, H, W) or (N, C, H, W) "
                                       "with C = 1 or 3 (channels last? transpose to (N, C, H, W))"),
        ("image-array", "imgf.npy", "", "imgf.npy: images must be uint8"),
        ("image-folder", "mixed", "", "zzz.png: L 5x5, but 000.png is L 4x4"),
        ("image-folder", "broken", "", "a.png: not a readable PNG file"),
        ("image-folder", "nowhere", "", "nowhere: no such folder"),
    ]


def test_bad_files_are_refused_with_one_line_and_nothing_written(tmp_path, capsys):
    for dataset, name, extra, fragment in _bad_cases(tmp_path):
        run = tmp_path / f"run-{name}"
        cfg = _train_toml(tmp_path, tmp_path / name, extra, dataset=dataset, batch=4)
        capsys.readouterr()
        assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert fragment in err, (fragment, err)
        assert str(tmp_path / name) in err or name in err
        assert not run.exists(), f"{name}: the run directory was written"


def test_bad_files_raise_data_error_in_the_library(tmp_path):
    cases = [c for c in _bad_cases(tmp_path) if c[0] == "array" and not c[2]]
    for _, name, _, fragment in cases:
        with pytest.raises(DataError, match=None) as info:
            load_user_arrays(tmp_path / name)
        assert fragment in str(info.value)


def test_empty_path_is_a_config_error(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[data]\ndataset = "array"\n')
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "data.path: required for data.dataset = 'array'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

"""Table-driven fuzzing of the command line with bad inputs: configs, --set values, data files,
checkpoint files and arguments. Each must exit with code 2 and one error line on stderr (no
traceback), leaving the run directory byte for byte as it was."""

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import CONFIGS, needs_mnist
from flowforge.cli import main
from flowforge.runs.checksums import write_checksums

pytestmark = needs_mnist

TINY = str(CONFIGS / "tiny-mnist.toml")
SMALL = ["train.max_steps=2", "train.checkpoint_every=2", "train.eval_every=2", "train.sample_every=2",
         "train.log_every=1", "train.batch_size=8", "train.init_batch=16", "train.valid_examples=20",
         "train.warmup_steps=1", "model.hidden=4", "model.depth=1"]
FILES = ("model.safetensors", "ema.safetensors", "state.json", "optimizer.pt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    argv = ["train", TINY, "--run-dir", str(run), "--no-progress"] + [a for v in SMALL for a in ("--set", v)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return run


@pytest.fixture(scope="module")
def mnist_copy(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("data")
    shutil.copytree(Path(os.environ["FLOWFORGE_DATA"]) / "mnist", root / "mnist")
    return root


# ---------------------------------------------------------------- mutations of the run directory


def _edit_state(which="last", **changes):
    def mutate(run):
        ck = run / "checkpoints" / which
        state = json.loads((ck / "state.json").read_text())
        for key, value in changes.items():
            if value is _DROP:
                state.pop(key, None)
            else:
                state[key] = value
        (ck / "state.json").write_text(json.dumps(state))
        _reseal(ck)  # a consistent checksum: the state itself must be refused
    return mutate


_DROP = object()


def _reseal(ck):
    write_checksums(ck, [n for n in FILES if (ck / n).is_file()])


def _flip(name, which="best", offset=-9):
    def mutate(run):
        path = run / "checkpoints" / which / name
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x10
        path.write_bytes(bytes(data))
    return mutate


def _replace(name, content, which="last", reseal=False):
    def mutate(run):
        ck = run / "checkpoints" / which
        (ck / name).write_bytes(content)
        if reseal:
            _reseal(ck)
    return mutate


def _truncate(name, which="last", keep=100, reseal=True):
    def mutate(run):
        ck = run / "checkpoints" / which
        (ck / name).write_bytes((ck / name).read_bytes()[:keep])
        if reseal:
            _reseal(ck)
    return mutate


def _remove(name, which="last"):
    return lambda run: (run / "checkpoints" / which / name).unlink()


def _write_config(text: bytes):
    return lambda run: (run / "config.toml").write_bytes(text)


# ---------------------------------------------------------------- mutations of a copy of the data


def _data(mutate_file):
    def setup(data_root):
        mutate_file(data_root / "mnist")
    return setup


def _gz_payload(name, transform):
    def mutate(folder):
        path = folder / name
        path.write_bytes(gzip.compress(transform(gzip.decompress(path.read_bytes()))))
    return mutate


def _raw(name, content):
    return lambda folder: (folder / name).write_bytes(content)


CFG_FILES = {
    "bad_toml": b"[model\nlevels = 2\n",
    "not_utf8": b"\xff\xfe[model]\nlevels = 2\n",
    "unknown_section": b"[modle]\nlevels = 2\n",
    "unknown_field": b"[model]\ndepht = 3\n",
    "wrong_type": b"[train]\nlr = \"fast\"\n",
    "out_of_range": b"[train]\nbatch_size = 0\n",
    "unknown_model": b"[model]\nname = \"nope\"\n",
    "unknown_dataset": b"[data]\ndataset = \"cifar\"\n",
    "section_not_table": b"model = 3\n",
    "levels_too_many": b"[data]\ndataset = \"mnist\"\n[model]\nlevels = 5\n",
    "depth_zero": b"[data]\ndataset = \"mnist\"\n[model]\ndepth = 0\n",
    "bool_for_int": b"[train]\nmax_steps = true\n",
}

R = "{run}"  # the copy of the trained run
N = "{new}"  # a run directory that must not come into existence
CASES = [
    # configs (train CONFIG)
    *[(f"config-{name}", ["train", f"{{cfg_{name}}}", "--run-dir", N], None, None) for name in CFG_FILES],
    ("config-missing", ["train", "{tmp}/nowhere.toml", "--run-dir", N], None, None),
    ("config-is-a-directory", ["train", "{tmp}", "--run-dir", N], None, None),
    ("config-digits-without-sklearn", ["train", str(CONFIGS / "maf-digits.toml"), "--run-dir", N], None, "no-sklearn"),
    # --set values
    *[(f"set-{v}", ["train", TINY, "--set", v, "--run-dir", N], None, None) for v in [
        "model.levels=5", "model.depth=0", "model.hidden=-1", "model.levels=true", "model.name=nope",
        "model.coupling=weird", "model.permutation=7", "model.nope=1", "train.lr=fast", "train.lr=-1",
        "train.lr=nan", "train.max_steps=0", "train.max_steps=1.5", "train.batch_size=0", "train.ema_decay=1.5",
        "train.optimizer=sgd", "train.device=tpu", "train.seed=\"x\"", "data.n_bits=9", "data.dataset=cifar",
        "data.n_valid=59999", "eval.batch_size=0", "nosection=1", "train.lr", "nope.field=1"]],
    # data files (a copy of mnist passed with --data-dir)
    ("data-truncated-images", ["train", TINY, "--data-dir", "{data}", "--run-dir", N],
     _data(_gz_payload("train-images-idx3-ubyte.gz", lambda b: b[:-1000])), None),
    ("data-bad-magic", ["train", TINY, "--data-dir", "{data}", "--run-dir", N],
     _data(_gz_payload("train-images-idx3-ubyte.gz", lambda b: b"\x12\x34" + b[2:])), None),
    ("data-not-gzip", ["train", TINY, "--data-dir", "{data}", "--run-dir", N],
     _data(_raw("train-labels-idx1-ubyte.gz", b"plain text, not gzip")), None),
    ("data-empty-file", ["train", TINY, "--data-dir", "{data}", "--run-dir", N],
     _data(_raw("train-labels-idx1-ubyte.gz", gzip.compress(b""))), None),
    ("data-label-count", ["train", TINY, "--data-dir", "{data}", "--run-dir", N],
     _data(_gz_payload("train-labels-idx1-ubyte.gz", lambda b: b[:4] + (1000).to_bytes(4, "big") + b[8:1008])), None),
    ("data-missing-file", ["train", TINY, "--data-dir", "{data}", "--run-dir", N],
     _data(lambda folder: (folder / "train-images-idx3-ubyte.gz").unlink()), None),
    ("data-eval-truncated-test", ["eval", R, "--data-dir", "{data}"],
     _data(_gz_payload("t10k-images-idx3-ubyte.gz", lambda b: b[:-1])), None),
    ("data-dir-nowhere", ["eval", R, "--data-dir", "{tmp}/nowhere"], None, None),
    # checkpoint files
    ("ckpt-flipped-ema-byte", ["eval", R], _flip("ema.safetensors"), None),
    ("ckpt-flipped-model-byte-resume", ["train", "--resume", "--run-dir", R], _flip("model.safetensors", "last"), None),
    ("ckpt-flipped-optimizer-byte", ["train", "--resume", "--run-dir", R], _flip("optimizer.pt", "last", 200), None),
    ("ckpt-state-not-json", ["train", "--resume", "--run-dir", R], _replace("state.json", b"{not json"), None),
    ("ckpt-state-not-json-sealed", ["train", "--resume", "--run-dir", R],
     _replace("state.json", b"{not json", reseal=True), None),
    ("ckpt-state-array", ["train", "--resume", "--run-dir", R], _replace("state.json", b"[1, 2]", reseal=True), None),
    ("ckpt-step-ten", ["train", "--resume", "--run-dir", R], _edit_state(step="ten"), None),
    ("ckpt-step-negative", ["train", "--resume", "--run-dir", R], _edit_state(step=-5), None),
    ("ckpt-step-float", ["train", "--resume", "--run-dir", R], _edit_state(step=3.5), None),
    ("ckpt-lr-scale-zero", ["train", "--resume", "--run-dir", R], _edit_state(lr_scale=0), None),
    ("ckpt-skipped-negative", ["train", "--resume", "--run-dir", R], _edit_state(draws_skipped=-1), None),
    ("ckpt-config-broken", ["eval", R], _edit_state("best", config={"model": {"depth": 0}}), None),
    ("ckpt-config-missing", ["eval", R], _edit_state("best", config=_DROP), None),
    ("ckpt-truncated-model", ["train", "--resume", "--run-dir", R], _truncate("model.safetensors", "last"), None),
    ("ckpt-truncated-ema", ["sample", R], _truncate("ema.safetensors", "best"), None),
    ("ckpt-garbage-optimizer", ["train", "--resume", "--run-dir", R],
     _replace("optimizer.pt", b"not a torch file", reseal=True), None),
    ("ckpt-checksums-garbage", ["eval", R], _replace("checksums.json", b"{{{", "best"), None),
    ("ckpt-checksums-missing-entry", ["eval", R],
     _replace("checksums.json", json.dumps({"algorithm": "sha256", "files": {}}).encode(), "best"), None),
    ("ckpt-model-removed", ["train", "--resume", "--run-dir", R], _remove("model.safetensors"), None),
    ("ckpt-config-toml-garbage", ["eval", R], _write_config(b"[[[\n"), None),
    ("ckpt-config-toml-not-utf8", ["sample", R], _write_config(b"\xff\xff"), None),
    ("ckpt-already-a-run", ["train", TINY, "--run-dir", R], None, None),
    # arguments
    ("sample-n-zero", ["sample", R, "--n", "0"], None, None),
    ("sample-n-negative", ["sample", R, "--n", "-5"], None, None),
    ("sample-n-not-int", ["sample", R, "--n", "abc"], None, None),
    ("sample-temperature-nan", ["sample", R, "--temperature", "nan"], None, None),
    ("sample-temperature-negative", ["sample", R, "--temperature", "-1"], None, None),
    ("sample-temperature-inf", ["sample", R, "--temperature", "inf"], None, None),
    ("sample-class-edit-dash", ["sample", R, "--class-edit", "1-7"], None, None),
    ("sample-class-edit-range", ["sample", R, "--class-edit", "1:12"], None, None),
    ("sample-class-edit-negative", ["sample", R, "--class-edit", "-1:2"], None, None),
    ("sample-class-edit-words", ["sample", R, "--class-edit", "a:b"], None, None),
    ("sample-class-edit-same", ["sample", R, "--class-edit", "3:3"], None, None),
    ("sample-pairs-zero", ["sample", R, "--interpolate", "--pairs", "0"], None, None),
    ("sample-checkpoint-choice", ["sample", R, "--checkpoint", "worst"], None, None),
    ("sample-no-run", ["sample", "{tmp}/nowhere"], None, None),
    ("eval-batch-size-zero", ["eval", R, "--batch-size", "0"], None, None),
    ("eval-batch-size-negative", ["eval", R, "--batch-size", "-3"], None, None),
    ("eval-samples-zero", ["eval", R, "--samples", "0"], None, None),
    ("eval-examples-negative", ["eval", R, "--examples", "-1"], None, None),
    ("eval-examples-too-many", ["eval", R, "--examples", "20000"], None, None),
    ("eval-split-choice", ["eval", R, "--split", "dev"], None, None),
    ("eval-importance-not-lgf", ["eval", R, "--importance-samples", "4", "--examples", "10"], None, None),
    ("eval-no-run", ["eval", "{tmp}/nowhere"], None, None),
    ("train-no-config", ["train", "--run-dir", N], None, None),
    ("train-resume-no-run-dir", ["train", "--resume"], None, None),
    ("train-resume-nothing", ["train", "--resume", "--run-dir", N], None, None),
    ("reproduce-profile-not-taken", ["reproduce", "glow-permutations", "--profile", "paper", "--out-dir", N], None, None),
    ("reproduce-fid-not-taken", ["reproduce", "glow-permutations", "--fid-samples", "10", "--out-dir", N], None, None),
    ("reproduce-steps-zero", ["reproduce", "glow-permutations", "--steps", "0", "--out-dir", N], None, None),
    ("reproduce-minutes-nan", ["reproduce", "glow-permutations", "--minutes", "nan", "--out-dir", N], None, None),
    ("reproduce-unknown", ["reproduce", "nope", "--out-dir", N], None, None),
    ("bench-without-normflows", ["bench", "train-throughput", "--dataset", "none", "--depth", "1", "--hidden", "4",
                                 "--rounds", "1", "--out", N + "/bench"], None, "no-normflows"),
    ("bench-bad-variant", ["bench", "train-throughput", "--variants", "warp-speed"], None, None),
    ("bench-bad-batch-sizes", ["bench", "train-throughput", "--batch-sizes", "1,x"], None, None),
    ("unknown-command", ["frobnicate"], None, None),
]


def _digest(root: Path) -> dict:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def _run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("name,argv,mutate,missing", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, argv, mutate, missing, trained, mnist_copy, tmp_path,
                                                         monkeypatch):
    run, new = tmp_path / "run", tmp_path / "new-run"
    shutil.copytree(trained, run)
    data = mnist_copy
    if mutate is not None:
        if argv.count("{data}"):
            data = tmp_path / "data"
            shutil.copytree(mnist_copy, data)
            mutate(data)
        else:
            mutate(run)
    for key, text in CFG_FILES.items():
        (tmp_path / f"{key}.toml").write_bytes(text)
    fields = {"run": run, "new": new, "tmp": tmp_path, "data": data,
              **{f"cfg_{k}": tmp_path / f"{k}.toml" for k in CFG_FILES}}
    argv = [a.format(**fields) for a in argv] + (["--no-progress"] if argv[0] not in ("frobnicate",) else [])
    if missing == "no-sklearn":
        monkeypatch.setitem(sys.modules, "sklearn", None)
        monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    if missing == "no-normflows":
        monkeypatch.setitem(sys.modules, "normflows", None)
    before = _digest(run)
    code, err = _run_cli(argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, err)
    assert len(lines) == 1, err
    assert "error" in lines[0] and "Traceback" not in err
    assert _digest(run) == before, "the run directory changed"
    assert not new.exists(), "a run directory was created"

"""Checkpoint directory: round trips, non-finite refusal, atomic replace, crash safety, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from flowforge.errors import CheckpointError, NonFiniteError
from flowforge.runs import checkpoint as ckpt
from flowforge.runs.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint


class Small(nn.Module):
    """A linear layer with a bool flag buffer, a uint8 buffer and a float buffer."""

    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.register_buffer("initialised", torch.tensor(False))
        self.register_buffer("counts", torch.zeros(width, dtype=torch.uint8))
        self.register_buffer("running_mean", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + self.running_mean


def _trained(seed: int = 0) -> tuple[Small, torch.optim.Adam]:
    torch.manual_seed(seed)
    model = Small()
    model.initialised.fill_(True)
    model.counts.copy_(torch.tensor([1, 2, 250], dtype=torch.uint8))
    model.running_mean.normal_()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _step(model, opt, torch.randn(4, 3))
    return model, opt


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_round_trip_model_buffers_and_optimizer(tmp_path: Path) -> None:
    model, opt = _trained()
    rng = torch.get_rng_state()
    state = {"step": 7, "config": {"lr": 1e-2, "name": "small"}, "metrics": {"bpd": 3.5}}
    out = save_checkpoint(
        tmp_path / "ck", model=model, state=state, optimizer=opt, extra_tensors={"rng": rng}
    )
    assert out == tmp_path / "ck"
    assert checkpoint_exists(out)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["checksums.json", "model.safetensors", "optimizer.pt", "state.json"]
    assert json.loads((out / "state.json").read_text()) == state

    torch.manual_seed(123)
    fresh = Small()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    loaded = load_checkpoint(out, model=fresh, optimizer=fresh_opt)
    assert {k: v for k, v in loaded.items() if k != "extra_tensors"} == state
    assert loaded["extra_tensors"].keys() == {"rng"}
    assert torch.equal(loaded["extra_tensors"]["rng"], rng)
    _assert_same_state(model, fresh)
    assert fresh.initialised.dtype == torch.bool and bool(fresh.initialised)

    # The optimizer continues identically: one more step on both, parameters bit-equal.
    x = torch.randn(4, 3)
    _step(model, opt, x)
    _step(fresh, fresh_opt, x)
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)


def test_ema_round_trip_and_tied_weights(tmp_path: Path) -> None:
    model, _ = _trained(0)
    ema, _ = _trained(1)
    tied = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    tied[1].weight = tied[0].weight  # shared storage must not break safetensors
    save_checkpoint(tmp_path / "ck", model=model, ema=ema, state={"step": 1})
    save_checkpoint(tmp_path / "tied", model=tied, state={})

    fresh, fresh_ema = Small(), Small()
    state = load_checkpoint(tmp_path / "ck", model=fresh, ema=fresh_ema)
    assert state == {"step": 1, "extra_tensors": {}}
    _assert_same_state(model, fresh)
    _assert_same_state(ema, fresh_ema)

    fresh_tied = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    load_checkpoint(tmp_path / "tied", model=fresh_tied)
    assert torch.equal(fresh_tied[0].weight, tied[0].weight)
    assert torch.equal(fresh_tied[1].weight, tied[0].weight)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["model", "ema"])
def test_non_finite_weight_is_never_saved(tmp_path: Path, bad: float, where: str) -> None:
    good, _ = _trained()
    path = tmp_path / "ck"
    save_checkpoint(path, model=good, state={"step": 1})
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    broken, _ = _trained()
    with torch.no_grad():
        broken.lin.bias[1] = bad
    kwargs = {"model": broken} if where == "model" else {"model": good, "ema": broken}
    with pytest.raises(NonFiniteError, match=r"lin\.bias"):
        save_checkpoint(path, state={"step": 2}, **kwargs)
    with pytest.raises(NonFiniteError):
        save_checkpoint(tmp_path / "new", state={"step": 2}, **kwargs)

    assert not (tmp_path / "new").exists()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_atomic_replace_second_save_wins(tmp_path: Path) -> None:
    path = tmp_path / "ck"
    first, opt = _trained(0)
    save_checkpoint(path, model=first, state={"step": 1}, optimizer=opt, ema=first)
    second, _ = _trained(1)
    save_checkpoint(path, model=second, state={"step": 2})

    fresh = Small()
    assert load_checkpoint(path, model=fresh)["step"] == 2
    _assert_same_state(second, fresh)
    # The second save had no ema / optimizer: nothing of the first survives.
    assert sorted(p.name for p in path.iterdir()) == ["checksums.json", "model.safetensors", "state.json"]
    assert _leftovers(tmp_path) == []


def _failing_replace(monkeypatch: pytest.MonkeyPatch, fail_from_call: int, fail_all_after: bool):
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == fail_from_call or (fail_all_after and calls["n"] > fail_from_call):
            raise OSError(f"simulated crash on rename {calls['n']}")
        return real(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace)


@pytest.mark.parametrize("fail_on", [1, 2])
def test_failed_rename_keeps_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on: int
) -> None:
    path = tmp_path / "ck"
    old, _ = _trained(0)
    save_checkpoint(path, model=old, state={"step": 1})
    new, _ = _trained(1)
    _failing_replace(monkeypatch, fail_on, fail_all_after=False)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, model=new, state={"step": 2})
    monkeypatch.undo()

    fresh = Small()
    assert load_checkpoint(path, model=fresh)["step"] == 1
    _assert_same_state(old, fresh)
    assert _leftovers(tmp_path) == []


def test_crash_between_renames_old_checkpoint_still_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rename 1 (path -> .old) succeeds; rename 2 (tmp -> path) and the rollback both fail:
    # the state a process kill between the two renames leaves on disk.
    path = tmp_path / "ck"
    old, _ = _trained(0)
    save_checkpoint(path, model=old, state={"step": 1})
    new, _ = _trained(1)
    _failing_replace(monkeypatch, 2, fail_all_after=True)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, model=new, state={"step": 2})
    monkeypatch.undo()

    assert not path.exists()
    assert checkpoint_exists(path)
    fresh = Small()
    assert load_checkpoint(path, model=fresh)["step"] == 1
    _assert_same_state(old, fresh)

    # The next save recovers: new checkpoint in place, nothing left beside it.
    save_checkpoint(path, model=new, state={"step": 3})
    assert load_checkpoint(path, model=fresh)["step"] == 3
    _assert_same_state(new, fresh)
    assert _leftovers(tmp_path) == []


def test_crash_while_writing_leaves_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ck"
    old, _ = _trained(0)
    save_checkpoint(path, model=old, state={"step": 1})

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", boom)
    new, opt = _trained(1)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=new, state={"step": 2}, optimizer=opt)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert _leftovers(tmp_path) == []


def test_refuses_to_replace_a_non_checkpoint_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.txt").write_text("precious")
    model, _ = _trained()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        save_checkpoint(run_dir, model=model, state={})
    assert (run_dir / "log.txt").read_text() == "precious"


def test_unserialisable_state_is_rejected(tmp_path: Path) -> None:
    model, _ = _trained()
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "ck", model=model, state={"t": torch.zeros(1)})
    assert not (tmp_path / "ck").exists()


# --- load errors -------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model, opt = _trained()
    return save_checkpoint(tmp_path / "ck", model=model, state={"step": 1}, optimizer=opt)


def test_error_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    assert not checkpoint_exists(path)
    with pytest.raises(CheckpointError, match="no checkpoint at") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["model.safetensors", "state.json"])
def test_error_missing_required_file(saved: Path, name: str) -> None:
    (saved / name).unlink()
    assert not checkpoint_exists(saved)
    with pytest.raises(CheckpointError, match=name) as info:
        load_checkpoint(saved, model=Small())
    assert str(saved) in str(info.value)


def test_error_missing_optimizer_file(saved: Path) -> None:
    (saved / "optimizer.pt").unlink()
    (saved / "checksums.json").unlink()  # as a checkpoint written before checksums (else: "optimizer.pt is missing")
    assert load_checkpoint(saved)["extra_tensors"] == {}
    model = Small()
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        load_checkpoint(saved, optimizer=torch.optim.Adam(model.parameters()))


def test_error_invalid_json(saved: Path) -> None:
    (saved / "state.json").write_text("{not json")
    (saved / "checksums.json").unlink()  # the checksum would refuse the edited file first
    with pytest.raises(CheckpointError, match="state.json") as info:
        load_checkpoint(saved)
    assert "JSON" in str(info.value)


def test_error_key_mismatch(saved: Path) -> None:
    class Renamed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.other = nn.Linear(3, 3)

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved, model=Renamed())
    msg = str(info.value)
    assert "model.safetensors" in msg and str(saved) in msg
    assert "other.weight" in msg and "lin.weight" in msg
    assert "missing" in msg and "unexpected" in msg


def test_error_shape_mismatch(saved: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved, model=Small(width=4))
    msg = str(info.value)
    assert "model.safetensors" in msg and "lin.weight" in msg
    assert "(3, 3)" in msg and "(4, 4)" in msg


def test_error_ema_requested_but_absent(saved: Path) -> None:
    with pytest.raises(CheckpointError, match="ema.safetensors") as info:
        load_checkpoint(saved, model=Small(), ema=Small())
    assert str(saved) in str(info.value)


def test_error_corrupt_weights(saved: Path) -> None:
    (saved / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(saved, model=Small())

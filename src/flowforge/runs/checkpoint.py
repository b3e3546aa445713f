"""Checkpoints as a directory: weights in safetensors, run state in JSON, optimizer in torch.save.

Layout of a checkpoint directory ``PATH``::

    PATH/model.safetensors   model.state_dict() (parameters and persistent buffers)
    PATH/ema.safetensors     EMA model's state_dict(), when one was given
    PATH/state.json          the JSON-serialisable run state (step, config, metrics, ...)
    PATH/optimizer.pt        {"optimizer": optimizer.state_dict(), **extra_tensors}, when given
    PATH/checksums.json      sha256 of each file above, written last; verified on load (checksums.py)

A save is written into the sibling ``.PATH.tmp-<pid>`` and swapped in with two renames
(``PATH -> .PATH.old``, ``.PATH.tmp-<pid> -> PATH``), because POSIX cannot rename a directory
over a non-empty one. A crash between the two renames leaves only ``.PATH.old``;
:func:`load_checkpoint` and :func:`checkpoint_exists` fall back to it, so at every instant one
complete checkpoint (old or new) is reachable through ``PATH`` and none is ever half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from flowforge.errors import CheckpointError, NonFiniteError
from flowforge.runs.checksums import verify_checksums, write_checksums

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_exists"]

MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"
_REQUIRED = (MODEL_FILE, STATE_FILE)
_MAX_KEYS_SHOWN = 5


def _old_path(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def _tmp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


def _is_complete(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in _REQUIRED)


def _resolve(path: Path) -> Path | None:
    """The directory holding the checkpoint for ``path``: itself, or the ``.old`` sibling that a
    save interrupted between its two renames left behind."""
    if _is_complete(path):
        return path
    if not path.exists() and _is_complete(_old_path(path)):
        return _old_path(path)
    return None


def checkpoint_exists(path: str | Path) -> bool:
    """True when ``path`` (or what an interrupted save left of it) is a complete checkpoint."""
    return _resolve(Path(path)) is not None


def _check_finite(state_dict: dict[str, torch.Tensor], what: str, path: Path) -> None:
    for key, tensor in state_dict.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(
            torch.isfinite(tensor).all()
        ):
            raise NonFiniteError(
                f"{what} tensor '{key}' has NaN or infinite values; "
                f"refusing to save checkpoint at {path}"
            )


def _cpu_copy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone(): safetensors refuses tensors that share storage (tied weights, views).
    return {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    state: dict[str, Any],
    ema: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Atomically write a checkpoint directory at ``path`` and return it.

    Raises :class:`NonFiniteError` (writing nothing) if a floating tensor of ``model`` or ``ema``
    is NaN or infinite, and :class:`CheckpointError` if ``state`` is not JSON-serialisable or
    ``path`` exists and is not a checkpoint directory.
    """
    path = Path(path)
    extra_tensors = dict(extra_tensors or {})

    # Validate everything before touching the disk.
    model_sd = model.state_dict()
    _check_finite(model_sd, "model", path)
    ema_sd = ema.state_dict() if ema is not None else None
    if ema_sd is not None:
        _check_finite(ema_sd, "ema", path)
    if "extra_tensors" in state:
        raise CheckpointError(
            f"state key 'extra_tensors' is reserved (load_checkpoint returns it); "
            f"checkpoint at {path} not written"
        )
    if "optimizer" in extra_tensors:
        raise CheckpointError(
            f"extra_tensors key 'optimizer' is reserved; checkpoint at {path} not written"
        )
    try:
        state_text = json.dumps(state, indent=2, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"state for checkpoint at {path} is not JSON-serialisable: {exc}"
        ) from exc
    if path.exists() and not (_is_complete(path) or (path.is_dir() and not any(path.iterdir()))):
        raise CheckpointError(
            f"refusing to replace {path}: it exists and is not a checkpoint directory "
            f"(no {MODEL_FILE} and {STATE_FILE})"
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        written = [tmp / MODEL_FILE, tmp / STATE_FILE]
        save_file(_cpu_copy(model_sd), str(tmp / MODEL_FILE))
        if ema_sd is not None:
            save_file(_cpu_copy(ema_sd), str(tmp / EMA_FILE))
            written.append(tmp / EMA_FILE)
        (tmp / STATE_FILE).write_text(state_text + "\n", encoding="utf-8")
        if optimizer is not None or extra_tensors:
            payload: dict[str, Any] = {k: v.detach().cpu() for k, v in extra_tensors.items()}
            if optimizer is not None:
                payload["optimizer"] = optimizer.state_dict()
            torch.save(payload, tmp / OPTIMIZER_FILE)
            written.append(tmp / OPTIMIZER_FILE)
        written.append(write_checksums(tmp, [f.name for f in written]))
        for f in written:
            _fsync_file(f)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    _swap_in(tmp, path)
    return path


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace ``path`` by the complete directory ``tmp`` so that a complete checkpoint is
    reachable through ``path`` (see :func:`_resolve`) at every instant."""
    old = _old_path(path)
    if path.exists():
        # path is complete, so an .old beside it is a leftover of a finished swap.
        if old.exists():
            shutil.rmtree(old)
        moved_away = True
        try:
            os.replace(path, old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:
        # If an .old exists here it is the only complete checkpoint: keep it until tmp is in.
        moved_away = False
    try:
        os.replace(tmp, path)
    except BaseException:
        if moved_away:
            try:
                os.replace(old, path)  # roll back; if this fails too, _resolve finds .old
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _read_weights(file: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {file}: {exc}") from exc


def _load_weights(module: torch.nn.Module, file: Path, device: str) -> None:
    """Load ``file`` into ``module`` strictly, failing with the offending keys and shapes. Keys
    written by earlier versions are renamed first (the model's `upgrade_state_dict`)."""
    saved = _read_weights(file, device)
    upgrade = getattr(module, "upgrade_state_dict", None)
    if upgrade is not None:
        saved = upgrade(saved)
    expected = module.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {missing[:_MAX_KEYS_SHOWN]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) {unexpected[:_MAX_KEYS_SHOWN]}")
        raise CheckpointError(f"{file} does not match the model: " + "; ".join(parts))
    mismatched = [
        f"'{key}': checkpoint {tuple(saved[key].shape)}, model expects {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if tuple(saved[key].shape) != tuple(tensor.shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"{file}: {len(mismatched)} tensor(s) with the wrong shape: "
            + "; ".join(mismatched[:_MAX_KEYS_SHOWN])
        )
    module.load_state_dict(saved, strict=True)


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module | None = None,
    ema: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into the given objects and return its run state.

    The returned dict is ``state.json`` plus ``"extra_tensors"``: the tensors saved beside the
    optimizer state (empty if there is no ``optimizer.pt``). Weights load with ``strict=True``.
    Raises :class:`CheckpointError` naming the path and what is missing or inconsistent.
    """
    path = Path(path)
    root = _resolve(path)
    if root is None:
        if not path.exists():
            raise CheckpointError(f"no checkpoint at {path}")
        if not path.is_dir():
            raise CheckpointError(f"checkpoint path {path} is not a directory")
        for name in _REQUIRED:
            if not (path / name).is_file():
                raise CheckpointError(f"checkpoint at {path} is incomplete: {name} is missing")
        raise CheckpointError(f"checkpoint at {path} is unreadable")  # unreachable in practice
    device = str(torch.device(map_location))
    verify_checksums(root, (MODEL_FILE, EMA_FILE, STATE_FILE, OPTIMIZER_FILE))

    state_file = root / STATE_FILE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{state_file} is not valid JSON: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{state_file} must hold a JSON object, found {type(state).__name__}"
        )

    if model is not None:
        _load_weights(model, root / MODEL_FILE, device)
    if ema is not None:
        ema_file = root / EMA_FILE
        if not ema_file.is_file():
            raise CheckpointError(
                f"an EMA model was requested but checkpoint at {root} has no {EMA_FILE}"
            )
        _load_weights(ema, ema_file, device)

    opt_file = root / OPTIMIZER_FILE
    extra: dict[str, Any] = {}
    if opt_file.is_file():
        try:
            payload = torch.load(opt_file, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch.load raises many types on corrupt/unsafe files
            raise CheckpointError(f"cannot read {opt_file}: {exc}") from exc
        if not isinstance(payload, dict):
            raise CheckpointError(f"{opt_file} must hold a dict, found {type(payload).__name__}")
        extra = {k: v for k, v in payload.items() if k != "optimizer"}
        if optimizer is not None:
            if "optimizer" not in payload:
                raise CheckpointError(
                    f"an optimizer was requested but {opt_file} holds no optimizer state"
                )
            try:
                optimizer.load_state_dict(payload["optimizer"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(
                    f"optimizer state in {opt_file} does not fit the optimizer: {exc}"
                ) from exc
    elif optimizer is not None:
        raise CheckpointError(
            f"an optimizer was requested but checkpoint at {root} has no {OPTIMIZER_FILE}"
        )

    state["extra_tensors"] = extra
    return state

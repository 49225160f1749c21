"""Run-directory files: safetensors weights + JSON, written atomically, read without unpickling anything.

`model.safetensors` holds one run's weights (nanoGPT names) and is what `sample` and `evaluate` load.
`state.safetensors` holds everything `--resume` needs: weights, Adam moments, the step and the RNG state;
the data position is a function of (seed, step), so it needs no saving. Writes go to a temporary file in
the same folder, are fsynced and renamed over the old file, so a crash leaves the old or the new file,
never a torn one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from groklab.errors import CheckpointError
from groklab.files import atomic_write, read_bytes

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"
WEIGHTS_FORMAT = "groklab-weights/1"
STATE_FORMAT = "groklab-state/1"


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not a valid JSON file ({exc})") from None


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], fmt: str, meta: dict[str, Any]) -> None:
    metadata = {"format": fmt, "meta": json.dumps(meta, sort_keys=True)}
    atomic_write(path, st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def _load_tensors(path: Path, fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    raw = read_bytes(path, CheckpointError, "a checkpoint file")
    try:
        tensors = st_load(raw)  # safetensors parses a JSON header and raw buffers: nothing is executed
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {exc}") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != fmt:
        raise CheckpointError(f"{path}: not a groklab checkpoint (format {metadata.get('format')!r}, expected {fmt!r})")
    try:
        meta = json.loads(metadata.get("meta", "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: damaged checkpoint metadata") from None
    return tensors, meta


def saved_step(run_dir: str | Path) -> int | None:
    """The step of a run's resumable state, from the safetensors header alone; None if there is no state."""
    path = Path(run_dir) / STATE_FILE
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > path.stat().st_size - 8:  # a torn or foreign file: never trust the length it claims
                raise ValueError(f"header length {n} exceeds the file")
            header = json.loads(f.read(n))
        return int(json.loads(header["__metadata__"]["meta"])["step"])
    except (FileNotFoundError, NotADirectoryError):  # no run there (run_dir may not be a folder at all)
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable groklab state file (truncated or foreign?): {exc}") from None


def save_weights(run_dir: str | Path, weights: dict[str, torch.Tensor], step: int, **meta: Any) -> None:
    """`meta`: more JSON to keep with the weights (train passes the vocabulary, which `load_run` checks)."""
    _save_tensors(Path(run_dir) / WEIGHTS_FILE, weights, WEIGHTS_FORMAT, {"step": step, **meta})


def save_snapshot(run_dir: str | Path, weights: dict[str, torch.Tensor], step: int) -> Path:
    """Weights kept along the way (snapshots/step_0001234.safetensors), same format as model.safetensors."""
    path = Path(run_dir) / "snapshots" / f"step_{step:07d}.safetensors"
    _save_tensors(path, weights, WEIGHTS_FORMAT, {"step": step})
    return path


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return _load_tensors(Path(path), WEIGHTS_FORMAT)


def save_state(
    run_dir: str | Path,
    weights: dict[str, torch.Tensor],
    optim: dict[str, torch.Tensor],
    step: int,
    extra: dict[str, Any],
) -> None:
    tensors = {f"weights.{k}": v for k, v in weights.items()}
    tensors.update({f"optim.{k}": v for k, v in optim.items()})
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.torch_cuda"] = torch.cuda.get_rng_state()
    _save_tensors(Path(run_dir) / STATE_FILE, tensors, STATE_FORMAT, {"step": step, **extra})


def load_state(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, optimizer state, meta incl. step); restores the RNG state as a side effect."""
    tensors, meta = _load_tensors(Path(run_dir) / STATE_FILE, STATE_FORMAT)
    weights = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
    optim = {k[len("optim.") :]: v for k, v in tensors.items() if k.startswith("optim.")}
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    if "rng.torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.torch_cuda"])
    if "step" not in meta:
        raise CheckpointError(f"{Path(run_dir) / STATE_FILE}: no step recorded")
    return weights, optim, meta


def find_run_dir(path: str | Path) -> Path:
    """A run directory, or any file inside one (e.g. seed 003's `ckpt/model.pt` habit) -> the run directory."""
    p = Path(path)
    if not p.exists() and not (p.suffix and (p.parent / CONFIG_FILE).is_file()):
        raise CheckpointError(f"{p}: no such run directory or checkpoint")
    run_dir = p if p.is_dir() else p.parent
    if not (run_dir / CONFIG_FILE).is_file():
        raise CheckpointError(f"{p}: not a groklab run (no {CONFIG_FILE} in {run_dir})")
    return run_dir

"""Checkpoint files: safetensors tensors + JSON metadata, written atomically, read without unpickling anything.

Two formats, both safetensors with a format tag: weights (one run's named tensors: what `sample` and
`evaluate` load, and the snapshots `analyze` reads) and state (everything a resume needs: weights, Adam
moments, the RNG state). Every file carries a sha256 of its tensor data, checked on load, so a flipped bit in
a tensor is refused rather than trained on; metadata written by groklab 0.1 without it still loads. Which
file of a run folder is which is `rundir`'s business, not this module's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from groklab.errors import CheckpointError
from groklab.files import atomic_write, read_bytes

if TYPE_CHECKING:
    import torch

# torch and safetensors are imported where tensors are made or read, not here: reading a checkpoint's
# metadata (a run's step, for a status table or the results store) must not cost torch's import

WEIGHTS_FORMAT = "groklab-weights/1"
STATE_FORMAT = "groklab-state/1"
MAX_HEADER = 100 * 2**20  # a safetensors header is JSON of names and offsets: far below this


def _data_digest(raw: bytes) -> str:
    """sha256 of a safetensors file's tensor buffer (everything after the header)."""
    n = int.from_bytes(raw[:8], "little")
    return hashlib.sha256(memoryview(raw)[8 + n:]).hexdigest()


def _save(path: Path, tensors: dict[str, torch.Tensor], fmt: str, meta: dict[str, Any]) -> None:
    from safetensors.torch import save as st_save

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    # the buffer does not depend on the metadata (offsets come from the tensors alone): serialise once to hash
    # it, then again with the hash in the header
    digest = _data_digest(st_save(tensors, metadata={"format": fmt}))
    metadata = {"format": fmt, "meta": json.dumps(meta, sort_keys=True, allow_nan=False), "sha256": digest}
    atomic_write(path, st_save(tensors, metadata=metadata))


def _header(raw: bytes, path: Path) -> dict[str, Any]:
    if len(raw) < 8:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {len(raw)} bytes")
    n = int.from_bytes(raw[:8], "little")
    if n > min(len(raw) - 8, MAX_HEADER):  # a torn or foreign file: never trust the length it claims
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): header length {n} "
                              "exceeds the file")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?)")
    return header


def _metadata(header: dict[str, Any], path: Path, fmt: str) -> dict[str, Any]:
    metadata = header.get("__metadata__")
    metadata = metadata if isinstance(metadata, dict) else {}
    if metadata.get("format") != fmt:
        raise CheckpointError(f"{path}: not a groklab checkpoint (format {metadata.get('format')!r}, expected {fmt!r})")
    try:
        meta = json.loads(metadata.get("meta", "{}"))
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: damaged checkpoint metadata")
    return meta


def _load(path: Path, fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    raw = read_bytes(path, CheckpointError, "a checkpoint file")
    header = _header(raw, path)
    meta = _metadata(header, path, fmt)
    digest = header["__metadata__"].get("sha256")
    if digest is not None and digest != _data_digest(raw):
        raise CheckpointError(f"{path}: the tensor data does not match its checksum (the file is truncated or was "
                              "damaged after it was written); restore it from a copy, or train the run again")
    try:
        tensors = st_load(raw)  # safetensors parses a JSON header and raw buffers: nothing is executed
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {exc}") from None
    return tensors, meta


def read_meta(path: str | Path, fmt: str = STATE_FORMAT) -> dict[str, Any] | None:
    """A checkpoint's metadata from its header alone (no tensors read); None if there is no such file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            raw = head + f.read(min(n, MAX_HEADER))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    return _metadata(_header(raw, path), path, fmt)


def save_weights(path: str | Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """One run's named weights; `meta` (JSON) says what they are: step, model config, vocabulary."""
    _save(Path(path), weights, WEIGHTS_FORMAT, meta)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return _load(Path(path), WEIGHTS_FORMAT)


def save_state(path: str | Path, weights: dict[str, torch.Tensor], optim: dict[str, torch.Tensor],
               meta: dict[str, Any]) -> None:
    """What a resume needs: weights, optimizer (and gradient filter) state, the RNG state; `meta` holds the step."""
    import torch

    tensors = {f"weights.{k}": v for k, v in weights.items()}
    tensors.update({f"optim.{k}": v for k, v in optim.items()})
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.torch_cuda"] = torch.cuda.get_rng_state()
    _save(Path(path), tensors, STATE_FORMAT, meta)


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, optimizer state, meta incl. step); restores the RNG state as a side effect."""
    import torch

    path = Path(path)
    tensors, meta = _load(path, STATE_FORMAT)
    weights = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
    optim = {k[len("optim.") :]: v for k, v in tensors.items() if k.startswith("optim.")}
    if not isinstance(meta.get("step"), int) or isinstance(meta.get("step"), bool) or meta["step"] < 0:
        raise CheckpointError(f"{path}: no valid step recorded")
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    if "rng.torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.torch_cuda"])
    return weights, optim, meta


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    """Every value finite: a checkpoint is only ever written from finite weights and optimizer state."""
    import torch

    return all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())

"""The one writer of a run folder (`RunFolder`): it holds the folder's lock from `claim` until `close`, starts
or resumes the run's files, appends evaluations, writes finite checkpoints, the summary and failures. Every
file name is `rundir`'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import groklab
from groklab.config import ModelConfig, RunConfig, differences
from groklab.data.equations import fingerprint
from groklab.files import append_text, atomic_write, write_json
from groklab.store import checkpoint as ckpt
from groklab.lock import FolderLock
from groklab.store.rundir import (CONFIG_FILE, DATA_DIR, FAILED_FILE, META_FILE, METRICS_FILE, OWN_NAMES, REPORT_FILES,
                                  RUN_FORMAT, SNAPSHOT_DIR, STATE_FILE, SUMMARY_FILE, VOCAB_FILE, WEIGHTS_FILE,
                                  check_model, derived_files, read_config, read_meta, read_metrics, refuse_foreign,
                                  stale_outputs, written_report)

if TYPE_CHECKING:
    from groklab.data.dataset import RunData
    from groklab.data.tokenizer import Tokenizer


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunFolder:
    """The one writer of a run folder: it holds the folder's lock from `claim` until `close`."""

    path: Path
    lock: FolderLock = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.lock = FolderLock(self.path)

    def claim(self) -> "RunFolder":
        self.lock.acquire_checked(refuse_foreign)  # a foreign folder is left as it was
        return self

    def close(self) -> None:
        self.lock.release()

    def start(self, cfg: RunConfig, argv: list[str] | None, data: RunData, device: torch.device, group_size: int,
              engine: str, precision: dict | None = None) -> list[str]:
        """A fresh run: whatever an earlier start of it left goes (never other files, nor a report.md or
        report_files/ of the user's), then meta.json (the marker that makes the folder ours), the data, the
        vocabulary, and config.json last. Returns the earlier results it deleted (for the caller to say)."""
        users = set(REPORT_FILES) - set(written_report(self.path))
        replaced = []
        for name in OWN_NAMES:
            p = self.path / name
            if name == META_FILE or name in users:
                continue  # meta.json is replaced below, never removed: a kill here must leave a folder still ours
            if p.exists() or p.is_symlink():
                replaced += [] if name in (CONFIG_FILE, VOCAB_FILE, DATA_DIR) else [name]  # those: from the config
                _remove(p)
        write_json(self.path / META_FILE, {
            "format": RUN_FORMAT, "groklab_version": groklab.__version__, "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "git_commit": _git_commit(), "started": _now(), "group_size": group_size, "engine": engine,
            "host": platform.node(), "pid": os.getpid(), "resumes": [],
            "precision": precision,  # {"asked", "ran"[, "why"]}: tf32 is fp32 on a CPU and off the CUDA graph
        })
        for name, text in derived_files(data).items():
            atomic_write(self.path / name, text)
        write_json(self.path / CONFIG_FILE, {"config": cfg.to_dict(), "argv": argv,
                                             "data_hash": fingerprint(data.files())})
        return replaced

    def drop_stale_outputs(self) -> list[str]:
        """Before a resume: the outputs computed from the weights so far (analysis, curves, groklab's report)
        go, as a fresh start deletes them, since training goes on past them. Returns what went."""
        names = stale_outputs(self.path)
        for name in names:
            _remove(self.path / name)
        return names

    def resume(self, cfg: RunConfig, argv: list[str] | None, step: int, engine: str,
               precision: dict | None = None, data: RunData | None = None) -> list[dict[str, Any]]:
        """Continue from the checkpoint at `step`: the evaluations after it (to be redone) leave metrics.jsonl,
        a failed.json of a retried run goes, the files derived from the config that are missing are written
        again (`data`; rundir.plan refused any that changed), and meta.json records the resume and what
        changed in how the run executes (device, compile, ...). Returns the evaluations kept."""
        if data is not None:
            for name, text in derived_files(data).items():
                if not (self.path / name).exists():
                    atomic_write(self.path / name, text)
        history = read_metrics(self.path, upto=step)
        atomic_write(self.path / METRICS_FILE, "".join(_line(r) for r in history))
        (self.path / FAILED_FILE).unlink(missing_ok=True)
        saved = read_config(self.path).cfg
        changed = {k: [old, new] for k, old, new in differences(saved, cfg, roles=("how",)) if k != "resume"}
        meta = read_meta(self.path)
        meta.setdefault("resumes", []).append({"step": step, "host": platform.node(), "pid": os.getpid(),
                                               "at": _now(), "argv": argv, "engine": engine, "changed": changed,
                                               "precision": precision})  # what ran may change with the device
        write_json(self.path / META_FILE, meta)
        return history

    def load_state(self, model: ModelConfig) -> tuple[dict, dict, int]:
        """(weights, optimizer state, step) of the checkpoint; refused if it holds another architecture."""
        weights, optim, meta = ckpt.load_state(self.path / STATE_FILE)
        check_model(meta.get("model"), model, self.path / STATE_FILE)
        return weights, optim, meta["step"]

    def append(self, row: dict[str, Any]) -> None:
        append_text(self.path / METRICS_FILE, _line(row))

    def checkpoint(self, step: int, weights: dict[str, torch.Tensor], optim: dict[str, torch.Tensor],
                   model: ModelConfig, vocab: Tokenizer, group_size: int) -> bool:
        """Save the weights, then the state (written last: it is what a resume starts from, so a kill between
        the two leaves an older state that the resume replays past, never weights older than the state), and
        make metrics.jsonl durable. Nothing is written, and False returned, unless every number is finite:
        a run that went non-finite keeps its last finite checkpoint."""
        if not (ckpt.all_finite(weights) and ckpt.all_finite(optim)):
            return False
        model_meta = dataclasses.asdict(model)
        ckpt.save_weights(self.path / WEIGHTS_FILE, weights, {"step": step, "model": model_meta,
                                                              "vocab": vocab.to_dict()})
        ckpt.save_state(self.path / STATE_FILE, weights, optim, {"step": step, "model": model_meta,
                                                                 "group_size": group_size})
        metrics = self.path / METRICS_FILE
        if metrics.exists():
            with open(metrics, "rb+") as f:
                os.fsync(f.fileno())
        return True

    def snapshot(self, step: int, weights: dict[str, torch.Tensor], model: ModelConfig, vocab: Tokenizer) -> None:
        """Weights kept along the way (snapshots/step_0001234.safetensors), for `analyze` over training."""
        if ckpt.all_finite(weights):
            ckpt.save_weights(self.path / SNAPSHOT_DIR / f"step_{step:07d}.safetensors", weights,
                              {"step": step, "model": dataclasses.asdict(model), "vocab": vocab.to_dict()})

    def finish(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY_FILE, summary)

    def fail(self, reason: str, step: int | None = None) -> dict[str, Any]:
        return record_failure(self.path, reason, step)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def record_failure(run_dir: str | Path, reason: str, step: int | None = None) -> dict[str, Any]:
    """failed.json: why and when a run stopped (a sweep reports it; --retry_failed trains it again)."""
    failure = {"status": "failed", "run_dir": str(run_dir), "step": step, "reason": reason}
    write_json(Path(run_dir) / FAILED_FILE, failure)
    return failure


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, allow_nan=False) + "\n"



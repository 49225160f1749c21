"""torch.compile's on-disk cache filled for a wave's groups by worker processes, while this process opens
its first group itself.

Compiling is Python work, so the groups that one process opens compile one after another: seed 000's seven
took 148 s from an empty cache on an H200, where each alone takes 12-26 s (docs/benchmarks.md). A worker
builds one group's engine, which compiles it in the engine's rolled-back trial step, and exits; this process
then opens that group from the cache. A worker reads and writes no run folder, only the compile cache, so
whatever becomes of it (an error, a hang, a signal), the group opens exactly as it would have without it:
from the cache when the worker finished, compiling itself when not.

A group this process has opened compiled leaves a marker beside the cache: the next command with the same
group starts no worker for it (from a warm cache a worker's own start, torch's import and CUDA's, cost more
than the group's load: H200, seed 000's study opened in 64 s with workers, 44 s without).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from groklab.config import RunConfig
from groklab.data.dataset import load_run_data
from groklab.engine.compile_cache import cache_dir, compiles
from groklab.engine.device import resolve_device
from groklab.files import atomic_write
from groklab.training.loop import build_engine

WAIT_S = 300.0  # at most this long for one worker; after it the group compiles here (it never needs the worker)
DISABLE = "GROKLAB_PRECOMPILE"  # set to 0: no workers (each group compiles in this process, as before)
WORKER = (sys.executable, "-m", "groklab.training.precompile")  # what a worker runs (main() below)


def wanted(groups: Sequence[Sequence[RunConfig]]) -> bool:
    """Workers pay where a wave opens two or more compiled groups on a CUDA device."""
    if len(groups) < 2 or os.environ.get(DISABLE, "1") == "0":
        return False
    train = groups[0][0].train
    device = resolve_device(train.device)
    return device.type == "cuda" and compiles(train.compile, device)


def marker(configs: Sequence[RunConfig]) -> Path:
    """The marker of a group compiled by this torch on this GPU: a file named by a hash of its runs' settings
    (all but their folders), in the compile cache's folder, so that emptying the cache empties the markers."""
    settings = [c.to_dict() for c in configs]
    for d in settings:
        d["train"].pop("out_dir", None)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    text = json.dumps([settings, torch.__version__, gpu], sort_keys=True, default=str)
    base = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or cache_dir())
    return base / "groklab-groups" / hashlib.sha256(text.encode()).hexdigest()[:40]


class Precompile:
    """One worker a group but the first (this process compiles that one meanwhile) and those with a marker;
    `wait(k)` before opening group k; `opened(configs)` once a group has opened compiled; `close()` ends
    whatever still runs. Without workers every call but opened() is a no-op."""

    def __init__(self, groups: Sequence[Sequence[RunConfig]]):
        self.workers: dict[int, subprocess.Popen] = {}
        self.on = wanted(groups)
        if not self.on:
            return
        todo = [k for k in range(1, len(groups)) if not marker(groups[k]).exists()]
        # inductor compiles kernels in a pool of processes a worker: share the cores out between the workers
        threads = max(1, (os.cpu_count() or 1) // len(groups))
        env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": str(threads)}
        try:
            for k in todo:
                configs = groups[k]
                worker = subprocess.Popen(
                    list(WORKER), stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                    start_new_session=True)  # a terminal's Ctrl-C reaches this process only; close() ends them
                self.workers[k] = worker
                worker.stdin.write(json.dumps([c.to_dict() for c in configs]).encode())  # type: ignore[union-attr]
                worker.stdin.close()  # type: ignore[union-attr]
        except (OSError, ValueError):  # no worker could start (or take its configs): each compiles here
            self.close()

    def wait(self, k: int, stop: Callable[[], bool]) -> None:
        """Until worker k has ended, WAIT_S have passed or `stop()` says the command is stopping."""
        worker = self.workers.get(k)
        deadline = time.monotonic() + WAIT_S
        while worker is not None and worker.poll() is None and time.monotonic() < deadline and not stop():
            time.sleep(0.05)

    def opened(self, configs: Sequence[RunConfig]) -> None:
        """A group has opened compiled (from the cache, or compiling it here): its marker, where it can be
        written (nothing but a worker's start depends on it)."""
        if not self.on:
            return
        try:
            path = marker(configs)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, "", sync=False)
        except OSError:
            pass

    def close(self) -> None:
        """End every worker still running (killed: what it compiled is in the cache, or not) and reap them."""
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.kill()
            worker.wait()
        self.workers.clear()


def main() -> None:
    """A worker: the group's configs as JSON on stdin; its engine built (so compiled) once, then nothing."""
    configs = [RunConfig.from_dict(d) for d in json.load(sys.stdin)]
    build_engine(configs, [load_run_data(c.data, c.model) for c in configs])


if __name__ == "__main__":
    main()

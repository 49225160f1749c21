"""torch.compile's on-disk cache filled for a wave's groups by worker processes, while this process opens
its first group itself.

Compiling is Python work, so the groups that one process opens compile one after another: seed 000's seven
took 148 s from an empty cache on an H200, where each alone takes 12-26 s (docs/benchmarks.md). A worker
builds one group's engine, which compiles it in the engine's rolled-back trial step, and exits; this process
then opens that group from the cache. A worker reads and writes no run folder, only the compile cache, so
whatever becomes of it (an error, a hang, a signal), the group opens exactly as it would have without it:
from the cache when the worker finished, compiling itself when not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable, Sequence

from groklab.config import RunConfig
from groklab.data.dataset import load_run_data
from groklab.engine.compile_cache import compiles
from groklab.engine.device import resolve_device
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


class Precompile:
    """One worker a group but the first (this process compiles that one meanwhile); `wait(k)` before
    opening group k; `close()` ends whatever still runs. Without workers every call is a no-op."""

    def __init__(self, groups: Sequence[Sequence[RunConfig]]):
        self.workers: dict[int, subprocess.Popen] = {}
        if not wanted(groups):
            return
        # inductor compiles kernels in a pool of processes a worker: share the cores out between the workers
        threads = max(1, (os.cpu_count() or 1) // len(groups))
        env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": str(threads)}
        try:
            for k, configs in enumerate(groups[1:], start=1):
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

"""torch.compile's on-disk cache filled for a wave's groups by worker processes, while this process opens
its first group itself.

Compiling is Python work, so the groups that one process opens compile one after another: seed 000's seven
took 148 s from an empty cache on an H200, where each alone takes 12-26 s (docs/benchmarks.md). A worker
builds one group's engine, which compiles it in the engine's rolled-back trial step, and exits; this process
then opens that group from the cache. A worker reads and writes no run folder, only the compile cache, so
whatever becomes of it (an error, a hang, a signal), the group opens exactly as it would have without it:
from the cache when the worker finished, compiling itself when not.

A worker is started only for a group whose compiled step differs from the first group's and from the other
workers' (`graph_key`), and which has not opened compiled before: such a group leaves a marker beside the
cache, since from a warm cache a worker's own start (torch's import, CUDA's) costs more than the group's load
(H200: seed 000's study opened in 64 s from a warm cache with workers, 44 s in an earlier round without).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

import groklab
import groklab.data
import groklab.engine
import groklab.model
from groklab.config import RunConfig
from groklab.data.dataset import load_run_data
from groklab.engine.compile_cache import cache_dir, compiles
from groklab.engine.device import resolve_device
from groklab.files import atomic_write
from groklab.machine import usable_cores
from groklab.training.loop import build_engine

WAIT_S = 300.0  # at most this long for a worker, from its start; after it the group compiles here
DISABLE = "GROKLAB_PRECOMPILE"  # set to 0: no workers (each group compiles in this process, as before)
# what a worker runs (main() below); -P: a module in the current folder cannot shadow torch or json there
WORKER = (sys.executable, "-P", "-m", "groklab.training.precompile")
THREADS = "TORCHINDUCTOR_COMPILE_THREADS"
# the folder this groklab was imported from, as imported (a link not followed to another tree): the worker
# imports it too, and step_code() hashes the same packages
SRC = Path(groklab.__path__[0]).absolute().parent


def wanted(groups: Sequence[Sequence[RunConfig]]) -> bool:
    """Workers pay where a wave opens two or more compiled groups on a CUDA device, from a Python that can
    start itself again (not a frozen application)."""
    if len(groups) < 2 or os.environ.get(DISABLE, "1") == "0" or getattr(sys, "frozen", False):
        return False
    for configs in groups:
        train = configs[0].train
        device = resolve_device(train.device)
        if device.type != "cuda" or not compiles(train.compile, device):
            return False
    return True


def graph_key(configs: Sequence[RunConfig]) -> str:
    """What a group's compiled step depends on: its shapes and the switches that change its code, not the
    values that live in tensors (seeds, rates, weight decay, betas). Groups of one key compile one graph."""
    dicts = [c.to_dict() for c in configs]
    optims = [c.optim for c in configs]
    key = {
        "data": sorted({json.dumps(d["data"], sort_keys=True) for d in dicts}),
        "model": dicts[0]["model"],
        "batch": sorted(c.train.batch_size for c in configs),  # the runs, the largest batch, full-batch runs
        "train": {k: dicts[0]["train"][k] for k in ("device", "compile", "cuda_graph", "precision")},
        "filter": sorted({(o.grokfast, o.grokfast_window if o.grokfast == "ma" else 0) for o in optims}),
        "switches": [any(o.grad_clip > 0 for o in optims), any(o.weight_decay_mode == "l2" for o in optims),
                     any(o.lr_decay_steps > 0 for o in optims), any(o.orthograd for o in optims),
                     any(o.decay_on == "all" for o in optims)],
    }
    return json.dumps(key, sort_keys=True, default=str)


def step_code() -> str:
    """A hash of the code that a compiled step and its shapes come from (the data, engine and model packages,
    as imported): a marker left by other code says nothing of what this code compiles to. Never raises and
    never blocks: only regular files are read, and one that cannot be read counts as unreadable (a stale
    marker costs time, never a result)."""
    digest = hashlib.sha256()
    for package in (groklab.data, groklab.engine, groklab.model):
        for folder in package.__path__:
            for path in sorted(Path(folder).glob("*.py")):
                name = os.fsencode(path.name)
                try:
                    if name.startswith(b".") or not path.is_file():  # an editor's lock link, a pipe
                        continue
                    text = path.read_bytes()
                except OSError:
                    text = b"\0unreadable"
                digest.update(len(name).to_bytes(4, "big") + name + len(text).to_bytes(8, "big") + text)
    return digest.hexdigest()[:16]


def marker(configs: Sequence[RunConfig], code: str) -> Path:
    """The marker of a group compiled from this code (`step_code()`) by this torch on this GPU, in the compile
    cache's folder (emptying the cache empties the markers)."""
    device = resolve_device(configs[0].train.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    text = json.dumps([graph_key(configs), code, torch.__version__, torch.version.cuda, gpu])
    base = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or cache_dir())
    return base / "groklab-groups" / hashlib.sha256(text.encode()).hexdigest()[:40]


def _marked(configs: Sequence[RunConfig], code: str) -> bool:
    try:
        return marker(configs, code).exists()
    except Exception:  # noqa: BLE001 - e.g. a cache folder that cannot be searched: as if unmarked
        return False


class Precompile:
    """Workers for a wave's groups (see the module docstring); `wait(k)` before opening group k;
    `opened(configs)` once a group has opened compiled; `close()` ends whatever still runs. `room`: the
    caller's word that the GPU has memory for the workers' copies of the groups."""

    def __init__(self, groups: Sequence[Sequence[RunConfig]], room: bool = True):
        self.workers: dict[int, subprocess.Popen] = {}
        self.deadlines: dict[int, float] = {}
        self.files: list[str] = []
        self.on = False
        self.code = ""  # step_code(), read once: code changed on disk meanwhile is not what this process runs
        try:
            self.on = room and wanted(groups)
            if self.on:
                self.code = step_code()
                self._start(groups)
        except Exception:  # noqa: BLE001 - no worker is needed: each group compiles here
            self.on = False
            self.close()
        except BaseException:  # a stop while workers start: none is left behind
            self.close()
            raise

    def _start(self, groups: Sequence[Sequence[RunConfig]]) -> None:
        seen = {graph_key(groups[0])}
        todo = []
        for k in range(1, len(groups)):
            key = graph_key(groups[k])
            if key not in seen and not _marked(groups[k], self.code):
                seen.add(key)
                todo.append(k)
        # compiling is CPU work: two cores a process at least (on 2 cores, three groups opened in 70 s with
        # workers against 58 s without); the groups past that compile here
        cores = usable_cores()
        todo = todo[: max(0, cores // 2 - 1)]
        if not todo:
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
        if THREADS not in env:  # inductor compiles kernels in a pool of processes a worker: share the cores out
            env[THREADS] = str(max(1, cores // (len(todo) + 1)))
        for k in todo:
            # the configs in a file, not a pipe: a worker imports torch before it reads, and a large group's
            # configs would fill a pipe and block this process meanwhile
            fd, path = tempfile.mkstemp(prefix="groklab-precompile-", suffix=".json")
            self.files.append(path)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump([c.to_dict() for c in groups[k]], f)
            self.workers[k] = subprocess.Popen(
                [*WORKER, path, str(os.getpid())], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env,
                start_new_session=True)  # a terminal's Ctrl-C reaches this process only; close() ends them
            self.deadlines[k] = time.monotonic() + WAIT_S

    def wait(self, k: int, stop: Callable[[], bool]) -> None:
        """Until worker k has ended, its WAIT_S have passed or `stop()` says the command is stopping."""
        worker = self.workers.get(k)
        while worker is not None and worker.poll() is None and time.monotonic() < self.deadlines[k] and not stop():
            time.sleep(0.05)

    def opened(self, configs: Sequence[RunConfig]) -> None:
        """A group has opened compiled (from the cache, or compiling it here): its marker, where it can be
        written (nothing but a later command's workers depends on it)."""
        if not self.on:
            return
        try:
            path = marker(configs, self.code)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, "", sync=False)
        except Exception:  # noqa: BLE001 - a marker only saves a later command time
            pass

    def close(self) -> None:
        """End every worker still running (killed: what it compiled is in the cache, or not), reap them and
        remove their config files."""
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.kill()
            try:
                worker.wait(timeout=5)
            except subprocess.TimeoutExpired:  # a process stuck in the kernel: the system reaps it later
                pass
        self.workers.clear()
        for path in self.files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.files.clear()


def _exit_with(parent: int) -> None:
    """A worker's watch: it ends as soon as the process that started it has (killed, say), rather than
    compiling on for no one."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def main() -> None:
    """A worker: the path of the group's configs (JSON) and the process id of the command that started it;
    the group's engine built (so compiled) once."""
    threading.Thread(target=_exit_with, args=(int(sys.argv[2]),), daemon=True).start()
    with open(sys.argv[1], encoding="utf-8") as f:
        configs = [RunConfig.from_dict(d) for d in json.load(f)]
    build_engine(configs, [load_run_data(c.data, c.model) for c in configs])


if __name__ == "__main__":
    main()

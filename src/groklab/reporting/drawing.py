"""The report's figures, drawn in worker processes when that pays, byte for byte as drawn here.

A figure is a `Draw`: a module-level function of `groklab.plots` with its data bound (`functools.partial`:
the series, labels and limits as plain lists, dicts and strings), so the same call draws it in this process
or, pickled, in a worker. Workers are started with "spawn": the report may follow training in the same
process (`groklab reproduce`), and a fork after CUDA or threads can deadlock; a spawned worker imports only
this module, `groklab.plots` and matplotlib (no torch: about 0.4 s, not 1.5). Workers draw with this
process's matplotlib settings, so their PNGs are the serial path's.

Anything that stops the pool (no /dev/shm, a sandbox that forbids processes, a worker that dies) draws what
is left here; a Ctrl-C (or SIGTERM) ends the workers and reaches the caller as it would have without them.
`GROKLAB_REPORT_WORKERS=0` always draws here, `=N` uses N workers whatever the machine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from groklab.machine import usable_cores

Draw = Callable[[], bytes]
PoolFactory = Callable[[int], Executor]
WORKERS_ENV = "GROKLAB_REPORT_WORKERS"
# measured on 2 cores (docs/benchmarks.md): a pool is twice as fast with both cores free, as fast with one
# busy, and slower on a machine that others already load; on 2 cores the report is drawn here, never slower
MIN_CORES = 3
FIGURES_PER_WORKER = 2  # a worker's start (~0.5 s, in parallel) costs about 1.5 figures' drawing (~0.35 s each)
_STOP = {signal.SIGINT, signal.SIGTERM}


def worker_count(figures: int, cores: int) -> int:
    """How many workers draw `figures` figures on `cores` cores: 0 means none, draw in this process. One a
    core (this process only waits for them), each with FIGURES_PER_WORKER figures at least."""
    if cores < MIN_CORES:
        return 0
    workers = min(cores, figures // FIGURES_PER_WORKER)
    return workers if workers >= 2 else 0


def main_is_safe_to_import(main: Any = None) -> bool:
    """Whether a spawned worker may start from this process's main module. A worker imports it again (as
    `__mp_main__`), unless it is a package's `__main__` (`python -m groklab`) or there is none on disk (a
    notebook, a REPL); a user's script without an `if __name__ == "__main__"` guard would then run again in
    every worker, training included. So the rule draws here under anything but groklab's own entry points
    (`python -m groklab`, the `groklab` command, whose script pip writes guarded) and interactive sessions;
    `workers=` or GROKLAB_REPORT_WORKERS still start workers where the caller says so."""
    main = sys.modules.get("__main__") if main is None else main
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return True
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return spec.name == "__main__" or spec.name.endswith(".__main__")
    return os.path.basename(path) in ("groklab", "groklab.exe", "groklab-script.py")


def _workers_from_env() -> int | None:
    """GROKLAB_REPORT_WORKERS=N: N workers whatever the machine (0: none); unset or not a number: the rule."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    return int(value) if value.isdigit() else None


def _settings() -> dict[str, Any]:
    """This process's matplotlib settings (a style or rcParams a caller set), for the workers to draw with;
    the backend is left out: saving a PNG never uses it, and setting it would load one."""
    import matplotlib

    return {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}


def _start_worker(settings: dict[str, Any]) -> None:
    """In each worker: Ctrl-C is the parent's to handle (it ends the workers), and the same settings."""
    import matplotlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)  # blocked by the parent while it started this worker
    matplotlib.rcParams.update(settings)


def spawn_pool(workers: int) -> Executor:
    """The workers start at the first submits (under `_signals_held`). multiprocessing's resource tracker is
    started here, before: starting it unblocks SIGINT and SIGTERM in this thread, whatever was blocked."""
    from multiprocessing import resource_tracker

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(_settings(),))
    resource_tracker.ensure_running()  # its queues' locks have started it already; this says so
    return pool


def _end(pool: Executor) -> None:
    """Stop at once: running workers killed (each holds only its figure), queued figures dropped, and the
    pool's own thread waited for, so that nothing of it is half torn down when the process exits (the
    resource tracker would warn of a leaked semaphore)."""
    # ProcessPoolExecutor's table of its workers (no public way before Python 3.14's terminate_workers)
    processes = list(dict(getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        p.terminate()
    pool.shutdown(wait=True, cancel_futures=True)  # its thread sees the workers gone, and ends


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while the workers start: they inherit the mask and unblock once their
    handlers are set, so a Ctrl-C that reaches one while it imports cannot print a traceback. One that came
    meanwhile is delivered here when the mask is lifted."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _draw_in_pool(draws: Sequence[Draw], workers: int, pool_factory: PoolFactory,
                  done: dict[int, bytes]) -> None:
    pool = pool_factory(workers)  # outside the mask: see spawn_pool
    try:
        with _signals_held():
            futures = [pool.submit(d) for d in draws]
        for i, future in enumerate(futures):
            done[i] = future.result()
    except BaseException:
        _end(pool)
        raise
    pool.shutdown(wait=True)


def draw_all(draws: Sequence[Draw], workers: int | None = None, pool_factory: PoolFactory | None = None,
             note: Callable[[str], None] | None = None) -> list[bytes]:
    """Each figure's PNG, in order. `workers`: how many processes draw them (0: this one); by default
    GROKLAB_REPORT_WORKERS, else `worker_count`'s rule for this machine where the main module is safe to
    import again (main_is_safe_to_import), else none."""
    if workers is None:
        workers = _workers_from_env()
    if workers is None:
        workers = worker_count(len(draws), usable_cores()) if main_is_safe_to_import() else 0
    done: dict[int, bytes] = {}
    if workers > 0 and draws:
        try:
            _draw_in_pool(draws, workers, pool_factory or spawn_pool, done)
        except Exception as exc:  # noqa: BLE001  the pool failed, not the figures: what is left is drawn here
            if note is not None:
                note(f"figures drawn in this process: the worker pool stopped ({type(exc).__name__}: {exc})")
    return [done[i] if i in done else d() for i, d in enumerate(draws)]

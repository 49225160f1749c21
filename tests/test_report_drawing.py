"""The report's figures drawn in worker processes (`reporting.drawing`): the whole report folder is byte for
byte the serial path's, with a caller's matplotlib settings too; a pool that cannot start, or whose worker
dies, leaves the same report drawn here; how many workers a machine gets; and a Ctrl-C or SIGTERM while the
workers start or draw ends the command in one line, with no worker left and the earlier report intact.

The module imports nothing heavy at its top: a worker that runs one of its functions imports it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Executor
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest

import groklab
from groklab.reporting import drawing

SRC = str(Path(groklab.__file__).resolve().parent.parent)
SPEC = """name = "tiny-drawing"
[[experiment]]
name = "phase"
[experiment.grid]
weight_decay = [0.1, 1.0]
seed = [1, 2]

[[experiment]]
name = "diverge"
[experiment.base]
learning_rate = 1000.0
[experiment.grid]
seed = [3]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """5 tiny runs (a heatmap, a comparison, bands, each seed's curves, a failed run) with an earlier report,
    and one run with an analysis figure (read, not drawn): 10 figures."""
    from groklab.experiments.spec import load_spec
    from groklab.experiments.sweep import run_sweep
    from groklab.reporting.report import write_report
    from groklab.store import rundir
    from test_sweep import TINY_BASE

    root = tmp_path_factory.mktemp("drawing")
    (root / "spec.toml").write_text(SPEC.replace("[[experiment]]", TINY_BASE + "\n[[experiment]]", 1))
    out = root / "out"
    run_sweep(load_spec(root / "spec.toml"), out, argv=["groklab", "sweep", "spec.toml"], echo=lambda _: None)
    first_run = sorted((out / "runs" / "phase").iterdir())[0]
    (first_run / rundir.ANALYSIS_PLOTS[0]).write_bytes(b"\x89PNG\r\n\x1a\n not drawn, only read")
    write_report(out, workers=0)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by its path inside it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _Written(datetime):
    """The report's 'written' time, the same for both paths (it says the minute it was written)."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 12, 1, 12, 0, tzinfo=tz)


@pytest.fixture
def frozen(monkeypatch):
    import matplotlib

    import groklab.reporting.build as build

    monkeypatch.setattr(build, "datetime", _Written)
    # a caller's own settings (a notebook's style): the workers must draw with them too
    monkeypatch.setitem(matplotlib.rcParams, "lines.linewidth", 2.5)
    monkeypatch.setitem(matplotlib.rcParams, "font.size", 9.0)


def _report(folder: Path, workers: int, notes: list[str] | None = None) -> dict[str, bytes]:
    from groklab.reporting.report import write_report

    write_report(folder, (notes if notes is not None else []).append, workers=workers)
    written = snapshot(folder)
    figures = {p: png for p, png in written.items() if p.startswith("report_files/")}
    assert len(figures) == 10 and all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in figures.values())
    assert sum(png.endswith(b"not drawn, only read") for png in figures.values()) == 1
    return written


def test_the_pool_writes_the_serial_report_byte_for_byte(sweep, frozen, monkeypatch):
    started, spawn = [], drawing.spawn_pool

    def counted(workers: int) -> Executor:
        started.append(workers)
        return spawn(workers)

    monkeypatch.setattr(drawing, "spawn_pool", counted)
    serial = _report(sweep, 0)
    assert not started
    notes: list[str] = []
    pooled = _report(sweep, 2, notes)
    # the pool drew every figure: a fallback would have said so in a note
    assert started == [2] and not any("figures drawn in this process" in n for n in notes), notes
    assert pooled.keys() == serial.keys()
    assert [p for p in serial if pooled[p] != serial[p]] == []


class _NoPool(Executor):
    """A pool that cannot start its processes (a sandbox that forbids them)."""

    def submit(self, fn, /, *args, **kwargs):
        raise PermissionError("[Errno 1] Operation not permitted")


def _no_shm(workers: int) -> Executor:
    raise FileNotFoundError("[Errno 2] No such file or directory: '/dev/shm'")


@pytest.mark.parametrize("factory", [_no_shm, lambda workers: _NoPool()], ids=["no /dev/shm", "no processes"])
def test_a_pool_that_cannot_start_leaves_the_serial_report(sweep, frozen, monkeypatch, factory):
    serial = _report(sweep, 0)
    monkeypatch.setattr(drawing, "spawn_pool", factory)
    notes: list[str] = []
    assert _report(sweep, 2, notes) == serial
    assert len(notes) == 2 and "figures drawn in this process: the worker pool stopped" in notes[0], notes


def _here_or_die(parent: int, png: bytes) -> bytes:
    """A figure whose worker dies (the OOM killer, a crash in a C library); drawn in the parent, it is fine."""
    if os.getpid() != parent:
        os._exit(1)
    return png


def test_a_worker_that_dies_leaves_the_rest_drawn_here():
    from groklab import plots

    history = [{"step": s, "train_loss": 1 / s, "val_loss": 2 / s, "train_acc": 0.5, "val_acc": 0.4}
               for s in (1, 10, 100)]
    draws = [partial(plots.plot_curves, history, None, f"figure {i}", {}, dpi=40) for i in range(3)]
    draws.insert(1, partial(_here_or_die, os.getpid(), b"drawn here"))
    notes: list[str] = []
    assert drawing.draw_all(draws, workers=2, note=notes.append) == [d() for d in draws]
    assert len(notes) == 1 and "BrokenProcessPool" in notes[0], notes


def test_a_worker_draws_without_torch():
    """A spawned worker imports the plots and matplotlib, not the training code (1.5 s more each)."""
    from groklab import plots

    draws = [partial(plots.plot_curves, [{"step": 1, "train_loss": 1.0}], None, "t", {}, dpi=40),
             partial(eval, "sorted(__import__('sys').modules)")]
    png, modules = drawing.draw_all(draws, workers=1, note=pytest.fail)
    assert png[:4] == b"\x89PNG" and "groklab.plots" in modules and "matplotlib" in modules
    assert [m for m in modules if m.split(".")[0] == "torch"] == []


def test_how_many_workers():
    assert drawing.worker_count(53, 16) == 16  # seed 000's report on the GPU machine: one a core
    assert drawing.worker_count(53, 64) == 26  # two figures a worker at least
    assert drawing.worker_count(8, 16) == 4
    assert drawing.worker_count(53, 2) == drawing.worker_count(53, 1) == 0  # 2 cores: never slower than here
    assert drawing.worker_count(3, 16) == drawing.worker_count(0, 16) == 0  # a worker's start would not pay
    assert drawing.worker_count(53, 3) == 3


def test_the_rule_starts_workers_only_where_the_main_module_is_safe_to_import_again(monkeypatch):
    """A spawned worker imports the main module again: groklab's entry points and interactive sessions are
    safe, a user's script (which may have no __main__ guard and train at import) is not, unless asked."""
    from types import ModuleType, SimpleNamespace

    def main(file=None, spec=None):
        m = ModuleType("__main__")
        if file is not None:
            m.__file__ = file
        m.__spec__ = None if spec is None else SimpleNamespace(name=spec)
        return m

    safe = drawing.main_is_safe_to_import
    assert safe(main()) and safe(main("/venv/bin/groklab")) and safe(main("/src/groklab/__main__.py", "groklab.__main__"))
    assert not safe(main("/home/me/train_and_report.py")) and not safe(main("/home/me/m.py", "mypkg.m"))
    started = []
    monkeypatch.setattr(drawing, "spawn_pool", lambda workers: started.append(workers) or _no_shm(workers))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv(drawing.WORKERS_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "__main__", main("/home/me/train_and_report.py"))
    draws = [partial(bytes, 1)] * 53
    assert drawing.draw_all(draws) == [b"\0"] * 53 and started == []  # a user's script: drawn here
    monkeypatch.setenv(drawing.WORKERS_ENV, "4")
    drawing.draw_all(draws)
    assert started == [4]  # asked for: as asked


def test_the_rule_reads_the_affinity_and_the_variable(monkeypatch):
    monkeypatch.setattr(drawing, "main_is_safe_to_import", lambda: True)  # as under `groklab report`
    started = []
    monkeypatch.setattr(drawing, "spawn_pool", lambda workers: started.append(workers) or _no_shm(workers))
    draws = [partial(bytes, 1)] * 53
    monkeypatch.delenv(drawing.WORKERS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    drawing.draw_all(draws)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    drawing.draw_all(draws)
    monkeypatch.setenv(drawing.WORKERS_ENV, "0")
    drawing.draw_all(draws)
    monkeypatch.setenv(drawing.WORKERS_ENV, "3")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert drawing.draw_all(draws) == [b"\0"] * 53
    assert started == [16, 3]


IDLE_WORKER = """
import functools, sys, time
from groklab.reporting.drawing import draw_all
try:
    draw_all([functools.partial(time.sleep, 20), functools.partial(time.sleep, 0)], workers=2)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
"""


def test_a_ctrl_c_reaches_an_idle_worker_in_silence():
    """A worker waiting for a figure (the last ones are being drawn) leaves the Ctrl-C to the parent (a
    KeyboardInterrupt of its own would print a traceback), and one drawing is stopped, not waited for."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", IDLE_WORKER], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        workers = _workers_of(proc.pid)
        time.sleep(1.0)  # both started; one is drawing (sleeping), the other waits for work
        _ctrl_c(proc.pid, workers)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=30)
        waited = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (proc.returncode, out, err) == (130, "interrupted\n", "")
    assert waited < 10, "the figure being drawn was waited for, not stopped"  # it would take 20 s


def _workers_of(pid: int, timeout: float = 30) -> list[int]:
    """The pool's workers under process `pid`, once both have started (multiprocessing's resource tracker,
    also a child, is not one)."""
    import psutil

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            kids = psutil.Process(pid).children()
            workers = [k.pid for k in kids if "spawn_main" in " ".join(k.cmdline())]
        except psutil.Error:
            workers = []
        if len(workers) == 2:
            return workers
        time.sleep(0.01)
    raise AssertionError("the workers did not start")


def _ctrl_c(parent: int, workers: list[int], signum: int = signal.SIGINT) -> None:
    """A terminal's Ctrl-C reaches every process of the group, in an order of the kernel's choosing: here the
    workers first and the parent a moment later, so that what a worker does with it has time to show."""
    for w in workers:
        os.kill(w, signum)
    time.sleep(0.3)
    os.kill(parent, signum)


@pytest.mark.parametrize("signum, group, wait", [(signal.SIGINT, True, 0.0), (signal.SIGINT, True, 0.6),
                                                 (signal.SIGTERM, False, 0.6)],
                         ids=["ctrl-c as the workers start", "ctrl-c as they draw", "sigterm as they draw"])
def test_a_signal_during_the_pool_ends_the_command_in_one_line(sweep, signum, group, wait, reliability):
    """A terminal's Ctrl-C reaches the whole process group (the workers too); a SIGTERM, only the parent."""
    import psutil

    before = snapshot(sweep)
    env = {**os.environ, "PYTHONPATH": SRC, drawing.WORKERS_ENV: "2"}
    proc = subprocess.Popen([sys.executable, "-m", "groklab", "report", str(sweep)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        workers = _workers_of(proc.pid)
        time.sleep(wait)
        _ctrl_c(proc.pid, workers) if group else os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signum, (out, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert err.startswith("groklab: interrupted" if signum == signal.SIGINT else "groklab: stopped by SIGTERM"), err
    end = time.monotonic() + 5
    while any(psutil.pid_exists(w) and psutil.Process(w).status() != psutil.STATUS_ZOMBIE for w in workers):
        assert time.monotonic() < end, "a worker outlived the command"
        time.sleep(0.05)
    assert snapshot(sweep) == before  # the earlier report as it was, no temp folder left
    reliability("signals", f"{signal.Signals(signum).name} while the report's workers "
                + ("start" if wait == 0 else "draw"), f"exit {128 + signum}, one line, no worker left")

"""Signals outside the training loops: whatever a Ctrl-C or SIGTERM lands in (a figure being drawn, a
finalizer, the interpreter's shutdown, the imports), the command ends as an interrupt in one line, never a
traceback, and never goes on as if nothing had happened; and input the console cannot decode is no crash."""

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import groklab.reporting.report as report
from groklab.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _signal_swallowed_then_broken(*args, **kwargs):
    """As matplotlib does when a KeyboardInterrupt lands inside it: caught half-way, then a ValueError."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    except KeyboardInterrupt:
        pass
    raise ValueError("Invalid bounding box")


class _SignalInFinalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)  # its KeyboardInterrupt is raised inside __del__: "Exception ignored"


def _signal_in_a_finalizer(*args, **kwargs):
    _SignalInFinalizer()
    gc.collect()
    for _ in range(200):  # the drawing that goes on; an interrupt delivered again lands here
        time.sleep(0.01)
    return Path("report.html"), Path("report.md")


@pytest.mark.parametrize("draw", [_signal_swallowed_then_broken, _signal_in_a_finalizer])
def test_a_signal_during_the_report_is_an_interrupt_in_one_line(tmp_path, capsys, monkeypatch, reliability, draw):
    monkeypatch.setattr(report, "write_report", draw)
    code = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().count("\n") == 0 and err.startswith("groklab: interrupted"), err
    reliability("signals", f"Ctrl-C during report's drawing ({draw.__name__.strip('_').replace('_', ' ')})",
                "exit 130, one line")


def test_input_the_console_cannot_decode_is_a_message_not_a_crash(tiny_runs):
    """Under an ASCII locale a non-ASCII byte in piped input broke the whole chunk (valid prompts too)."""
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONIOENCODING": "ascii"}
    r = subprocess.run([sys.executable, "-m", "groklab", "sample", str(tiny_runs / "num"), "--interactive"],
                       input=b"1+2=\n\xe9\n3+4=\n", capture_output=True, env=env, timeout=120)
    out = r.stdout.decode("ascii")
    assert r.returncode == 0, r.stderr.decode()
    assert out.count("prompt> 1+2=") == 1 and out.count("prompt> 3+4=") == 1, out
    assert "not in the vocabulary" in out and b"Traceback" not in r.stderr, (out, r.stderr)


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": SRC})


def test_a_ctrl_c_during_the_imports_is_one_line(reliability):
    """`python -m groklab` interrupted while it imports the CLI (the first 0.1 s): no raw traceback."""
    r = _python("import runpy, sys\n"
                "class Interrupting:\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name == 'groklab.cli_commands':\n"
                "            raise KeyboardInterrupt\n"
                "sys.meta_path.insert(0, Interrupting())\n"
                "sys.argv = ['groklab', '--version']\n"
                "runpy.run_module('groklab', run_name='__main__')\n")
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("groklab: interrupted") and \
        r.stderr.strip().count("\n") == 0, r.stderr
    reliability("signals", "Ctrl-C while `python -m groklab` imports the CLI", "exit 130, one line")


def test_a_ctrl_c_during_the_shutdown_ends_with_the_commands_result(tmp_path, reliability):
    """A second Ctrl-C after the command ended, while the interpreter runs its atexit handlers (torch's): the
    process ends with the command's status, no KeyboardInterrupt traceback."""
    r = _python("import atexit, os, signal, sys, time\n"
                "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))\n"
                "sys.argv = ['groklab', 'data', '--op', '+', '--p', '7', '--out', sys.argv[1]]\n"
                "from groklab.cli import main\n"
                "raise SystemExit(main())\n", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr, r.stderr
    assert (tmp_path / "d/manifest.json").is_file()
    reliability("signals", "Ctrl-C during the interpreter's shutdown (atexit)", "exit with the command's status")


def test_a_signal_just_after_the_result_ends_with_the_commands_status(tmp_path, reliability):
    """SIGINT or SIGTERM 0-100 ms after a training command printed its result: it exited -2/-15 (killed, no
    message) or with a traceback (StopNow, as its handlers were put back) in 9 of 12 tries; the result is
    decided by then, so the status is the command's own. With the CPU busy (as here, two busy processes), a
    signal in the few lines between the result and the program's exit handling ended the finished run as
    interrupted, 130 and "run the same command to go on", in 8 of 25 tries at 0 ms (decide_result)."""
    import random

    rng = random.Random(5)
    outcomes = []
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for i in range(8):
            outcomes.append(_signal_after_result(tmp_path / str(i), rng))
    finally:
        for b in busy:
            b.kill()
            b.wait()
    assert outcomes == [(0, False)] * 8, outcomes
    reliability("signals", "SIGINT or SIGTERM 0-100 ms after a command printed its result (8 tries)",
                "exit 0 each time, no traceback")


def _signal_after_result(out, rng) -> tuple[int, bool]:
    """`groklab train` to its result line, then SIGINT or SIGTERM 0-100 ms later: (exit status, traceback?)."""
    p = subprocess.Popen([sys.executable, "-m", "groklab", "train", "--op", "+", "--prime", "23", "--max_steps",
                          "40", "--n_embd", "16", "--n_layer", "1", "--no_plot", "--device", "cpu", "-q",
                          "--out_dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": SRC})
    p.stdout.readline()  # the result line: the run is finished and saved
    delay = rng.choice([0.0, 0.0, 0.0, 0.0, 0.02, 0.1])  # mostly at once: the race was in the first ms
    if delay:  # (even time.sleep(0) gives the command the moment it needed to get past it)
        time.sleep(delay)
    p.send_signal(rng.choice([signal.SIGINT, signal.SIGTERM]))
    _, err = p.communicate(timeout=120)
    return p.returncode, b"Traceback" in err


def test_a_run_stopped_while_its_curves_were_drawn_gets_them_from_the_same_command(tmp_path, capsys, monkeypatch,
                                                                                  reliability):
    """Two Ctrl-Cs during the final plot: exit 130 and 'run the same command to go on', but the same command
    said only 'already finished', and curves.png was never drawn."""
    import groklab.training.loop as loop

    out = tmp_path / "run"
    argv = ["train", "--operators", "+", "--prime", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
            "--max_steps", "6", "--device", "cpu", "-q", "--out_dir", str(out)]

    def interrupted_plot(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(loop, "plot_curves", interrupted_plot)
        assert main(argv) == 130
    assert "run the same command to go on" in capsys.readouterr().err
    assert (out / "summary.json").is_file() and not (out / "curves.png").exists()
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "already finished" in said and "curves: " in said, said
    reliability("signals", "two Ctrl-Cs while the final curves are drawn", "the same command draws curves.png")

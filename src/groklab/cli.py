"""The `groklab` command: its parser (every flag from a dataclass, cli_args) and its error handling; what each
command does is cli_commands'.

Every user mistake ends as one line `groklab: error: ...` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, Sequence

from groklab import __version__
from groklab import cli_commands as commands
from groklab import cli_options as opt
from groklab.cli_args import Parser, add_config_flags, add_option_flags, short_usage
from groklab.errors import GroklabError


COMMANDS: tuple[tuple[str, str, type], ...] = (  # name, help, its options (cli_options)
    ("data", "write train/val/test equation files and a manifest", opt.DataOptions),
    ("train", "train a run (or --seeds: one run a seed, trained together)", opt.TrainOptions),
    ("run", "the main job: a grokking run on the CPU, with progress and curves", opt.RunOptions),
    ("sweep", "train every run of a sweep spec (TOML); resumable", opt.SweepOptions),
    ("reproduce", "a seed report's or paper's whole study: its runs, its tables (seed-000, seed-003, nanda)",
     opt.ReproduceOptions),
    ("report", "report.html (self-contained) and report.md of a run or a sweep: curves, tables, heatmaps",
     opt.ReportOptions),
    ("sample", "generate from a trained run", opt.SampleOptions),
    ("evaluate", "exact-match accuracy of a run on one of its splits", opt.EvaluateOptions),
    ("analyze", "progress measures (Nanda et al.): weight norm; for + - (over Z_p) and * / (over discrete logs) "
                "the embeddings' Fourier spectrum and restricted/excluded loss", opt.AnalyzeOptions),
    ("export", "a run for other tools: a Hugging Face GPT-2 folder or a plain torch module", opt.ExportOptions),
)
EPILOG = ("`groklab COMMAND --help` lists a command's flags. Every flag also takes its dashed form "
          "(--n-layer for --n_layer).")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="groklab", epilog=EPILOG,
                    description="Train small GPTs on modular arithmetic until they grok, and study them. "
                                f"Commands: {', '.join(name for name, _, _ in COMMANDS)}.")
    parser.add_argument("--version", action="version", version=f"groklab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, options in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                           epilog=EPILOG)
        add_option_flags(p, options, title=f"{name} options")
        if name in ("train", "run"):
            add_config_flags(p, commands.base_config(name))
        elif name in ("sweep", "reproduce"):
            add_config_flags(p, None, skip=("out_dir", "resume"))
        p.usage = short_usage(p)
    return parser


def _console_never_crashes() -> None:
    """A terminal whose locale cannot show '≥' or '·' gets an escape, not a crash after the work is done; piped
    input it cannot decode (`sample --interactive` under an ASCII locale) gets U+FFFD, which the prompt's check
    then names, not a UnicodeDecodeError that also loses the valid prompts read in the same chunk."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")


class _ReaderMayLeave:
    """sys.stdout or sys.stderr whose reader may close the pipe (`groklab train | head -30`): from then on it
    writes to /dev/null. A reader that stopped reading does not want the work killed: a training goes on to
    its end (or to a Ctrl-C, which stops it cleanly, saved), a sweep trains every run, and the folders say
    everything that was not shown; the command's status is what it would have been."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def _silence(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # what is still buffered, and the interpreter's last flush
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _readers_may_leave() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ReaderMayLeave(sys.stdout), _ReaderMayLeave(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


def main(argv: Sequence[str] | None = None) -> int:
    """`groklab ARGV` (sys.argv when None: the program itself): its exit status."""
    from groklab.training.interrupts import signals_as_interrupts

    from groklab.training.interrupts import StopNow

    code: int | None = None
    try:
        with signals_as_interrupts():  # first: a Ctrl-C from here on is one line, never a traceback
            _console_never_crashes()
            with _readers_may_leave():
                code = _main(list(sys.argv[1:] if argv is None else argv))
            if argv is None:  # the program: its result is decided, a signal from here on ends it with that
                _exit_on_signal(code)
    except (KeyboardInterrupt, StopNow):  # arrived as the handlers were put back
        if code is None:
            raise
    if argv is None:
        _end_program(code)
    return code


def _flush_console() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _exit_on_signal(code: int) -> None:
    """The program's result is decided; a signal while it ends (torch's atexit handlers can take a while)
    has nothing left to stop, so it ends the process with that result instead of a traceback or a kill."""
    def leave(signum: int, frame: object) -> None:
        _flush_console()
        os._exit(code)

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, leave)


def _end_program(code: int) -> None:
    """Run the exit handlers (torch's, W&B's, Ray's) under `leave`, then exit with the command's status: the
    interpreter's own finalization puts the default handlers back first, and a signal then killed a
    finished command (status -15, no message)."""
    import atexit

    atexit._run_exitfuncs()
    _flush_console()
    os._exit(code)


def _main(argv: list[str]) -> int:
    import shlex

    from groklab.training.interrupts import Interrupted, StopNow, last_signal

    command = shlex.join(["groklab", *argv])
    try:
        return _dispatch(build_parser().parse_args(argv), argv)
    except Interrupted as exc:
        print(f"groklab: {exc}; run the same command to resume: {command}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(signal.SIGINT, command)
    except StopNow as exc:
        return _interrupted(exc.signum, command)
    except Exception as exc:  # noqa: BLE001  an exception that follows a signal is the signal's doing
        signum = last_signal()
        if signum is not None:
            return _interrupted(signum, command)
        if isinstance(exc, (GroklabError, OSError)):  # OSError: e.g. an output folder that cannot be made: the
            print(f"groklab: error: {exc}", file=sys.stderr)  # system's words name the path
            return 2
        raise


def _interrupted(signum: int, command: str) -> int:
    """The one line of a command stopped by SIGINT (Ctrl-C) or SIGTERM outside a training loop's clean stop."""
    if signum == signal.SIGINT:
        print("groklab: interrupted; what was saved is intact (files are replaced whole, the resume point "
              f"last); run the same command to go on: {command}", file=sys.stderr)
    else:
        print(f"groklab: stopped by {signal.Signals(signum).name}; what was saved is intact; run the same command "
              f"to go on: {command}", file=sys.stderr)
    return 128 + signum


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command in ("train", "run"):
        return commands.train_cmd(args, argv)
    if args.command in ("sweep", "reproduce"):
        return getattr(commands, f"{args.command}_cmd")(args, argv)
    return getattr(commands, f"{args.command}_cmd")(args)


if __name__ == "__main__":
    raise SystemExit(main())

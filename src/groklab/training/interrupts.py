"""Clean stops: SIGINT (Ctrl-C) and SIGTERM only set a flag, and the training loops stop at the next step
boundary, after that step's evaluation is written, save, and raise `Interrupted`.

A signal that arrived as an exception (KeyboardInterrupt) could land anywhere: inside the optimizer step,
where the fused AdamW updates one parameter slice per call, it would leave a half-applied update that a save
would then record as step N. A flag polled between steps cannot. A second signal of the same kind while the
first is being honoured stops at once (the last checkpoint on disk is intact: files are replaced atomically
and the state file is written last).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from groklab.errors import GroklabError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(GroklabError):
    """Training stopped cleanly on a signal; the folders say where (the same command resumes)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopNow(BaseException):
    """A signal that must stop the process at once (SIGTERM outside a training loop, or a second signal inside
    one). A BaseException, like KeyboardInterrupt: no `except Exception` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


_received: list[int] = []  # the signals this process got through groklab's handlers, latest last


def last_signal() -> int | None:
    """The latest SIGINT or SIGTERM a groklab handler saw (None if none since `forget_signals`). An exception
    that follows one is the signal's doing (a KeyboardInterrupt that matplotlib or a finalizer caught half-way
    leaves its objects broken: `ValueError: Invalid bounding box`), not a bug of its own."""
    return _received[-1] if _received else None


def forget_signals() -> None:
    _received.clear()


def raise_stop_now(signum: int, frame: object) -> None:
    """A signal handler for SIGTERM outside training loops (the CLI installs it)."""
    _received.append(signum)
    raise StopNow(signum)


def raise_keyboard_interrupt(signum: int, frame: object) -> None:
    """Python's own SIGINT handler, which also notes the signal (the CLI installs it outside training loops)."""
    _received.append(signum)
    raise KeyboardInterrupt


_RAISING = (raise_keyboard_interrupt, raise_stop_now)  # the handlers signals_as_interrupts installs


def _result_decided(signum: int, frame: object) -> None:
    """The handler once a command's result is decided (decide_result): nothing is left to stop."""


def decide_result() -> None:
    """A command has decided its result and is about to print and return it: from here to the end of
    signals_as_interrupts, SIGINT and SIGTERM change nothing. (A signal just after `groklab train` printed its
    result was raised in the few lines left before the program's own exit handling, and a finished command
    ended as interrupted, status 130, in 8 of 25 tries at once on a busy 2-core machine.)"""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(s) in _RAISING:
                signal.signal(s, _result_decided)


def _redeliver_swallowed(previous: object) -> object:
    """A sys.unraisablehook: a KeyboardInterrupt or StopNow raised inside a finalizer (a weakref callback,
    __del__) is printed as "Exception ignored in ..." and lost, so the Ctrl-C would be ignored; it is sent to
    the process again instead, a moment later, from a thread of its own: delivered now (interrupt_main runs
    the handler at once) it would land in this hook and be lost the same way."""
    def hook(unraisable: object) -> None:
        exc = getattr(unraisable, "exc_value", None)
        if isinstance(exc, (KeyboardInterrupt, StopNow)):
            _thread.start_new_thread(_send_again, (getattr(exc, "signum", signal.SIGINT),))
            return
        previous(unraisable)  # type: ignore[operator]
    return hook


def _send_again(signum: int) -> None:
    time.sleep(0.02)  # the hook has returned by then: the handler runs in the code the finalizer interrupted
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """For one command outside its training loops (which install stop_on_signals): SIGINT raises
    KeyboardInterrupt and SIGTERM StopNow, both noted for `last_signal`, and one that a finalizer swallowed is
    delivered again. Only the main thread can install handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    forget_signals()
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, raise_keyboard_interrupt),
                signal.SIGTERM: signal.signal(signal.SIGTERM, raise_stop_now)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _redeliver_swallowed(sys.unraisablehook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for s, h in previous.items():
            if signal.getsignal(s) in (*_RAISING, _result_decided):  # a later handler stays
                signal.signal(s, h)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopRequest:
    """Polled by the loops at step boundaries: `if stop: ...`. Shared by every group of one command."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest | None = None) -> Iterator[StopRequest]:
    """SIGINT and SIGTERM set `stop` while the block runs (a second one of the same kind raises at once:
    KeyboardInterrupt for SIGINT, StopNow for SIGTERM). Only the main thread can install handlers; elsewhere
    (a notebook's worker thread, a Ray actor thread) the flag is simply never set by a signal."""
    stop = stop if stop is not None else StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        _received.append(signum)
        if stop.signum == signum:  # asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise StopNow(signum)
        stop.request(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        for s in SIGNALS:
            signal.signal(s, handler)
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

"""Atomic file writes: a temp file in the same folder, fsync, rename, fsync the folder. A crash at any
instant leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | os.PathLike[str], data: str | bytes, sync: bool = True) -> None:
    """`sync=False` skips the fsyncs: still old-or-new if the process is killed (rename is atomic), but a
    power cut may lose the latest version. For files rewritten often, whose durable copy comes later."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not sync:
        return
    with contextlib.suppress(OSError):  # persist the rename too; not possible everywhere (Windows)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def open_binary(path: Path, error: type[Exception], expected: str) -> BinaryIO:
    """The file opened for reading bytes, or `error` with one line naming the path (missing, a folder,
    unreadable): the one place that turns a failed open into a user-facing message."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected {expected}") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None


def read_bytes(path: Path, error: type[Exception], expected: str, limit: int | None = None) -> bytes:
    """The file's bytes (at most limit + 1 of them when `limit` is given, so that a caller can tell a file
    over its limit, or an endless device, without reading it all), or `error` naming the path."""
    with open_binary(path, error, expected) as f:
        try:
            return f.read() if limit is None else f.read(limit + 1)
        except OSError as e:
            raise error(f"{path}: cannot read ({e.strerror})") from None

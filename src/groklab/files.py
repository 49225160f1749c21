"""Files on disk, the one way groklab writes and reads them.

Writes are atomic: a temp file in the same folder, fsync, rename, fsync the folder, so a crash at any instant
leaves the old file or the new one, never a torn one. Every text file is UTF-8 whatever the locale, and files
get the permissions the umask gives (a temp file is born 0600; it is widened before the rename, so a shared
results folder or a served report is as readable as any other file the user makes).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO


def _read_umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux /proc), else by the classic
    set-and-restore (at import, in the main thread, before any other thread makes files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK
DIR_MODE = 0o777 & ~UMASK


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
            os.fchmod(f.fileno(), FILE_MODE)
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Persist renames and new names in `folder` (not possible everywhere: Windows)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def is_temp_file(name: str) -> bool:
    """A temp file atomic_write left behind when it was killed mid-write: ours, never a result."""
    return name.startswith(".") and name.endswith(".tmp")


def append_text(path: str | os.PathLike[str], text: str, sync: bool = False) -> None:
    """Append UTF-8 text in one write (a kill can cut only the last line, which readers drop)."""
    with open(path, "ab") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        if sync:
            os.fsync(f.fileno())


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _not_json(constant: str):
    """NaN and Infinity are Python's extensions, not JSON: a file holding one was not written by groklab."""
    raise ValueError(f"{constant} is not a JSON value")


def parse_json(text: str) -> Any:
    """Strict JSON (no NaN/Infinity); ValueError or RecursionError otherwise."""
    return json.loads(text, parse_constant=_not_json)


def read_json(path: str | os.PathLike[str], error: type[Exception], expected: str = "a JSON file") -> Any:
    """The file's JSON value, or `error` with one line naming the path (missing, unreadable, not UTF-8, not
    JSON). Shape checks are the caller's: see `require`."""
    raw = read_bytes(Path(path), error, expected)
    try:
        return parse_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{path}: not a valid JSON file ({str(exc)[:120]})") from None


def require(ok: bool, path: str | os.PathLike[str], error: type[Exception], what: str) -> None:
    """A shape check of a file groklab reads back: `error` naming the file and what is wrong."""
    if not ok:
        raise error(f"{path}: {what}; not a file groklab wrote, or damaged")


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

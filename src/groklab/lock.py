"""One writer per folder: an OS file lock (flock) on a file inside it.

The lock belongs to an open file, so it dies with its process: a SIGKILL, a crash or a power cut never leaves
a stale lock, and nothing has to be cleaned up by hand. The holder writes its pid into the file so that a
second writer can say who holds it. Readers (report, sample, evaluate, results.load) never take it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from groklab.errors import GroklabError
from groklab.files import is_temp_file

LOCK_FILE = ".groklab-lock"

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows: a byte-range lock on the first byte does the same
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def entries(folder: Path) -> list[str]:
    """The names in a folder that count as content (the lock file and torn temp files do not)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE and not is_temp_file(p.name))


class FolderInUse(GroklabError):
    """Another process (or another part of this one) is writing this folder."""


class FolderLock:
    """Exclusive write access to `folder` while held; `with FolderLock(folder): ...` or acquire()/release().
    The folder is created if it does not exist (the lock file must live somewhere)."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FolderLock":
        if self._fd is not None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise GroklabError(f"{self.folder} is a file, not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            try:
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise FolderInUse(f"{self.folder} is in use by {who}; wait for it to finish, or use another folder")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def acquire_checked(self, check: Callable[[Path], None]) -> "FolderLock":
        """acquire(), with `check(folder)` (which raises to refuse it) run before the lock file is made, so that
        a refused folder is left as it was, and again once held, for what another writer did meanwhile. A folder
        refused by the first check but holding the lock file (which only a writer that passed it makes) may be
        mid-write by another command (its files, not yet its marker): the lock then says "in use", or, free,
        the check under it decides."""
        try:
            check(self.folder)
        except Exception:
            if not (self.folder / LOCK_FILE).is_file():
                raise
        self.acquire()
        try:
            check(self.folder)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

"""One writer per file: an exclusive lock file that names the process holding it.

A service that writes a file (an SQLite store, a spool folder, the lock-state
file) first takes ``<file>.lock``. The lock is `flock(2)` on the open lock
file, so the kernel releases it when the holder exits, even by kill -9: a
stale lock file never blocks anyone. The file holds the holder's PID and
command line, so the second process can say who is in its way::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ionlab.sqlite.lock"
    >>> first = PidLock(path).acquire()
    >>> try:
    ...     PidLock(path).acquire()
    ... except LockHeld as exc:
    ...     exc.pid == os.getpid()
    True
    >>> first.release()

Two locks on the same file conflict within one process too (each is its own
open file), so a second service in the same process is refused alike.
"""

from __future__ import annotations

import fcntl
import os
import time
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["LockHeld", "PidLock"]


class LockHeld(Exception):
    """Another live process holds the lock; the message names it (`pid` may be None)."""

    def __init__(self, path: Path, pid: int | None, holder: str):
        who = f"PID {pid}" if pid is not None else "a process that has not written its PID yet"
        if holder:
            who += f", {holder}"
        super().__init__(f"{path} is held by another running ionlab ({who})")
        self.path, self.pid = path, pid


def _command_line() -> str:
    try:
        words = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text if len(text) <= 200 else text[:197] + "..."


class PidLock:
    """An exclusive lock on `path` (created when missing); see the module docstring."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def __repr__(self):
        return f"<PidLock {str(self.path)!r} {'held' if self._fd is not None else 'free'}>"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> PidLock:
        """Take the lock at once or raise LockHeld; OSError when the file cannot be made."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._held() from None
        except BaseException:
            os.close(fd)
            raise
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{_command_line()}\nsince {since}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let go (the file stays: removing it would race with the next holder)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)

    def _held(self) -> LockHeld:
        """Who holds the lock, read from its file (the holder may still be writing it)."""
        for _ in range(20):
            try:
                lines = self.path.read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            if lines and lines[0].strip().isdigit():
                return LockHeld(self.path, int(lines[0]), "; ".join(lines[1:]))
            time.sleep(0.01)
        return LockHeld(self.path, None, "")

"""Scratch folders of one import run: `.hg/importrepo-*` in the parent, or in the
system's temporary folder (a dry run, --verify and --export, which write nothing
into the parent).

Each holds an `owner` file with the pid of the process working in it; the next
run removes the folders whose owner is gone (an import killed with -9), and in
the parent refuses to start while a live one is working.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from .errors import StateAbort
from .ui import UI

__all__ = ["Scratch"]

_PREFIX = "importrepo-"
_OWNER = "owner"


class Scratch:
    """A scratch folder under `parent` (a folder; the system's temporary folder
    when None), removed by `close()`."""

    def __init__(self, parent: str | None):
        if parent is None:  # what killed runs left there goes first
            for _name, folder, pid in _left(tempfile.gettempdir()):
                if pid and not _alive(pid):
                    shutil.rmtree(folder, ignore_errors=True)
        self.dir = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
        try:
            self.write(_OWNER, f"{os.getpid()}\n")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<Scratch {self.dir}>"

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def write(self, name: str, text: str) -> str:
        with open(self.path(name), "w", encoding="utf-8") as fh:
            fh.write(text)
        return self.path(name)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def sweep(parent: str, ui: UI) -> None:
        """Remove the scratch folders in `parent` that killed imports left; abort
        if a live import is working there."""
        for name, folder, pid in _left(parent):
            if pid and _alive(pid):
                raise StateAbort(f"another import is running in {os.path.dirname(parent)} "
                                 f"(process {pid})", "wait for it to finish, then import again")
            shutil.rmtree(folder, ignore_errors=True)
            ui.status(f"removed {name}, left by an import that was killed")


def _left(parent: str):
    """(name, path, owner pid or 0) of each scratch folder in `parent`."""
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return
    for name in names:
        folder = os.path.join(parent, name)
        if not name.startswith(_PREFIX) or not os.path.isdir(folder):
            continue
        try:
            with open(os.path.join(folder, _OWNER), encoding="utf-8") as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            pid = 0
        yield name, folder, pid


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

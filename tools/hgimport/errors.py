"""The errors the import raises on purpose: a message and what to do next.

Their exit codes are Mercurial's with `ui.detailed-exit-code`: 10 for bad input
(`InputAbort`), 20 for a repository in the wrong state (`StateAbort`), 100 for a
remote that failed (`RemoteAbort`), 255 for anything else. `hg importrepo`
raises the matching Mercurial error (so without that setting Mercurial exits
255 for all of them); `ionlab-import` exits with the code itself.
"""

from __future__ import annotations

__all__ = ["ImportAbort", "InputAbort", "RemoteAbort", "StateAbort"]


class ImportAbort(Exception):
    """The import cannot go on; the parent repository is unchanged.

    `hint` tells the user what to do next (shown as Mercurial's "(...)" hint).
    """

    exit_code = 255

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return self.message + (f"\n({self.hint})" if self.hint else "")


class InputAbort(ImportAbort):
    """What the user gave is wrong: an argument, a name, a path, a manifest."""

    exit_code = 10


class StateAbort(ImportAbort):
    """The repository is not in a state that allows the import (uncommitted
    changes, an interrupted transaction, an import already there)."""

    exit_code = 20


class RemoteAbort(ImportAbort):
    """A remote source could not be reached or cloned."""

    exit_code = 100

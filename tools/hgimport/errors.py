"""The one error the import raises on purpose: a message and what to do next."""

from __future__ import annotations

__all__ = ["ImportAbort"]


class ImportAbort(Exception):
    """The import cannot go on; the parent repository is unchanged.

    `hint` tells the user what to do next (shown as Mercurial's "(...)" hint).
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return self.message + (f"\n({self.hint})" if self.hint else "")

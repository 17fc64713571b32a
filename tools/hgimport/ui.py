"""Where an import reports to: status lines and progress.

The `hg importrepo` command passes one backed by Mercurial's ui (so progress is
Mercurial's own progress bar); the console script uses `Console`.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["UI", "Console"]


class UI:
    """Silent reporter; subclasses override what they show."""

    def status(self, text: str) -> None:
        """One line of the report."""

    def progress(self, topic: str, pos: int | None, total: int | None, unit: str = "") -> None:
        """`pos` of `total` done on `topic`; pos None means the topic is finished."""


class Console(UI):
    """Status on stdout; progress on stderr at every tenth of the work."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr):
        self.out, self.err, self._shown = out, err, {}

    def status(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def progress(self, topic: str, pos: int | None, total: int | None, unit: str = "") -> None:
        if pos is None or not total:
            self._shown.pop(topic, None)
            return
        tenth = pos * 10 // total
        if self._shown.get(topic) != tenth:
            self._shown[topic] = tenth
            print(f"{topic} {pos}/{total} {unit}".rstrip(), file=self.err, flush=True)

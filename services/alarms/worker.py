"""What the alarms' threads share: a condition to sleep on, a stop flag, a daemon thread.

`stop()` sets the flag and wakes the thread, so a worker waiting out a retry
backoff ends at once instead of holding the shutdown for minutes; it waits
`timeout` at most and says what was left undone.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """Base of a daemon thread: subclasses implement `_run` and `_left`."""

    def __init__(self, name: str):
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """End the thread (waiting `timeout` at most); log what it leaves undone."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        left = self._left()
        if left:
            log.warning("%s: %s before stopping", self._thread.name, left)

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds` unless stopped meanwhile (hold the condition); False if stopping."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            self._cond.wait(deadline - time.monotonic())
        return not self._stopping

    def _run(self) -> None:
        raise NotImplementedError

    def _left(self) -> str | None:
        """What is still undone, in words (None: nothing)."""
        raise NotImplementedError

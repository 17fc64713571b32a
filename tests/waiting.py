"""Waiting for a condition instead of for a time: what no test may do is assume speed."""

from __future__ import annotations

import time

import pytest

__all__ = ["wait_until"]


def wait_until(predicate, timeout: float = 20.0, what="condition", interval: float = 0.02):
    """Poll until `predicate()` is truthy and return it; fail after `timeout` s naming `what`
    (or what `what()` says, so the message can tell how things stood at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for "
                        f"{what() if callable(what) else what}")
        time.sleep(interval)

"""What the simulated twins share: deterministic noise and slow drift.

A twin's values depend only on its name, its `seed` and how often it was
read, never on the clock, so a test (or a demo) sees the same series every run.

An open twin can be found by its device name (`opened_twin`), so the demo
lab's fault switches (a leak, a mode hop) reach the one the services opened.

>>> a, b = Wander("gauge", 0), Wander("gauge", 0)
>>> [a.step() or a.gauss(1) for _ in range(3)] == [b.step() or b.gauss(1) for _ in range(3)]
True
>>> typical("Load lock", [(("load",), 2e-6)], 1e-10)
2e-06
"""

from __future__ import annotations

import math
import random
import threading
import weakref

from .options import integer

__all__ = ["Wander", "opened_twin", "register_twin", "typical", "unregister_twin"]

_twins: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_twins_lock = threading.Lock()


def register_twin(device) -> None:
    """Make an opened twin findable by its name (the latest one opened wins)."""
    with _twins_lock:
        _twins[device.name] = device


def unregister_twin(device) -> None:
    """Forget a closing twin, unless another of the same name was opened since."""
    with _twins_lock:
        if _twins.get(device.name) is device:
            del _twins[device.name]


def opened_twin(name: str):
    """The open simulated device named `name`, or None."""
    with _twins_lock:
        return _twins.get(name)


def typical(name: str, table: list[tuple[tuple[str, ...], float]], default: float) -> float:
    """The value of the first row of `table` with a word found in `name`, else `default`."""
    lowered = name.lower()
    return next((value for words, value in table if any(w in lowered for w in words)), default)


class Wander:
    """Seeded noise plus a sine drift over the number of reads."""

    def __init__(self, name: str, seed: int):
        self.seed = integer("seed", seed)
        self.count = 0
        self._rng = random.Random(f"{seed}/{name}")

    def step(self) -> None:
        """Advance to the next read."""
        self.count += 1

    def drift(self, period: int, phase: float = 0.0) -> float:
        """A slow swing in [-1, 1] with `period` reads, shifted by `phase` (in periods)."""
        return math.sin(2 * math.pi * (self.count / period + phase))

    def gauss(self, sigma: float) -> float:
        """Noise with standard deviation `sigma`."""
        return self._rng.gauss(0, sigma)

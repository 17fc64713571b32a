"""The analog-output interface that laser locks drive.

Anything with numbered ports that hold a voltage implements it: the wavemeter's
own deviation-signal ports, a DAC. Voltages are in volts; a value outside the
port's limits raises ValueError and changes nothing.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["AnalogOutput"]


@runtime_checkable
class AnalogOutput(Protocol):
    """Numbered output ports, each holding a voltage (blocking, thread-safe)."""

    name: str

    def ports(self) -> list[int]:
        """The port numbers this output has."""
        ...

    def limits(self, port: int) -> tuple[float, float]:
        """The lowest and highest voltage the port accepts."""
        ...

    def voltage(self, port: int) -> float:
        """The voltage the port holds now."""
        ...

    def set_voltage(self, port: int, volts: float) -> None:
        """Set the port; ValueError outside limits(port)."""
        ...

"""Analog outputs: one interface for the wavemeter's ports and any DAC."""

from .output import AnalogOutput

__all__ = ["AnalogOutput"]

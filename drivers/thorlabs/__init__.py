"""Thorlabs instruments: PM100 optical power meters."""

"""The ``wavemeter`` and ``locks`` pc_rpc targets, made of the services' own RPC methods.

A target is a service's `rpc_methods()` table (the one JSON-RPC serves) under
the names an experiment expects once the target says whose they are
(``wavemeter_status`` is ``wavemeter.status()``, ``lock_status`` is
``locks.status(channel)``, ``set_lock_setpoint`` is ``locks.set_setpoint``).
"""

from __future__ import annotations

from ..web.pcrpc import Target
from ..web.rpc import Method

__all__ = ["LOCKS_DOC", "WAVEMETER_DOC", "service_target"]

WAVEMETER_DOC = ("The wavemeter: each channel's latest frequency (THz) and vacuum wavelength "
                 "(nm), read in the background, and its exposure and fiber-switch settings.")
LOCKS_DOC = ("The laser locks: lock a wavemeter channel at a setpoint (THz or nm), move the "
             "setpoint between shots, unlock, and each lock's state.")
#: a service's JSON-RPC name -> its name in the service's target
RENAMES = {"wavemeter_status": "status", "lock_status": "status",
           "set_lock_setpoint": "set_setpoint"}


def service_target(name: str, doc: str, *tables: dict[str, Method]) -> Target:
    """A target offering the methods of `tables` (a name offered twice is a ValueError)."""
    methods: dict[str, Method] = {}
    for table in tables:
        for rpc_name, method in table.items():
            key = RENAMES.get(rpc_name, rpc_name)
            if key in methods:
                raise ValueError(f"target {name}: {key!r} is offered twice")
            methods[key] = method
    return Target(name, doc, methods)

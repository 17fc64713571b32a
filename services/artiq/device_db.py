"""The ``device_db.py`` entries that make the lab's targets ARTIQ devices.

One process serves every target on one port, so ARTIQ sees one controller
(the first entry, ``wavemeter`` when there is one), which ``artiq_ctlmgr``
starts with its ``command``, and one ``controller_aux_target`` entry per other
target, which reaches the same process::

    >>> print(entries(["wavemeter", "chamber"], "::1", 3280, "ionlab artiq --port {port}"))
    device_db.update({
        "wavemeter": {
            "type": "controller",
            "host": "::1",
            "port": 3280,
            "target_name": "wavemeter",
            "command": "ionlab artiq --port {port}",
        },
        "chamber": {
            "type": "controller_aux_target",
            "controller": "wavemeter",
            "target_name": "chamber",
        },
    })

Without a command (the lab process, ``ionlab run``, serves the targets) the
controller entry has none and ``artiq_ctlmgr`` leaves it alone.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

__all__ = ["command_line", "entries"]


def _entry(name: str, fields: dict[str, Any]) -> list[str]:
    lines = [f"    {json.dumps(name)}: {{"]
    lines += [f"        {json.dumps(k)}: {json.dumps(v)}," for k, v in fields.items()]
    return lines + ["    },"]


def entries(targets: list[str], host: str, port: int, command: str | None) -> str:
    """Python source adding a controller for `targets` (the first is the controller) to
    ``device_db``."""
    main, *aux = targets
    controller = {"type": "controller", "host": host, "port": port, "target_name": main}
    if command is not None:
        controller["command"] = command
    lines = ["device_db.update({", *_entry(main, controller)]
    for name in aux:
        lines += _entry(name, {"type": "controller_aux_target", "controller": main,
                               "target_name": name})
    return "\n".join(lines + ["})"])


def command_line(program: str, config_file: str | None) -> str:
    """The ``command`` artiq_ctlmgr runs: ``{bind}`` and ``{port}`` are its substitutions."""
    words = [program, "artiq"] + (["--config", config_file] if config_file else [])
    return shlex.join(words) + " --bind {bind} --port {port}"

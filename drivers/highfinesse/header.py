"""The vendor header's functions (wlmdata.txt) as ctypes prototypes.

The list is kept once: the driver declares its functions from it and the tests
check the simulated library against it. Integers are 32-bit (`c_int32`, never
`c_long`, which is 8 bytes on 64-bit Linux) and the header's bool is a byte.

>>> p = prototypes()["GetFrequencyNum"]
>>> p.restype.__name__, [ctypes.sizeof(t) for t in p.argtypes]
('c_double', [4, 8])
"""

from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PATH", "Prototype", "declare", "prototypes"]

PATH = Path(__file__).with_name("wlmdata.txt")

_TYPES = {
    "void": None,
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint16_t": ctypes.c_uint16,
    "double": ctypes.c_double,
    "bool": ctypes.c_ubyte,
    "intptr_t": ctypes.c_ssize_t,
    "uintptr_t": ctypes.c_size_t,
    "int32_t*": ctypes.POINTER(ctypes.c_int32),
    "int64_t*": ctypes.POINTER(ctypes.c_int64),
    "double*": ctypes.POINTER(ctypes.c_double),
    "char*": ctypes.POINTER(ctypes.c_char),
}
_LINE = re.compile(r"(\w+\*?)\s+(\w+)\((.*)\)$")
_ARG = re.compile(r"(\w+\*?)\s*(\w+)$")


@dataclass(frozen=True)
class Prototype:
    """One function of the header: its C text and its ctypes types."""

    name: str
    restype: type | None
    argtypes: tuple[type, ...]
    text: str


def _type(name: str, where: str):
    try:
        return _TYPES[name]
    except KeyError:
        raise ValueError(f"{where}: unknown type {name!r}") from None


def _parse(text: str, file: str) -> dict[str, Prototype]:
    result = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{file}:{number}"
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"{where}: not a C prototype: {line!r}")
        ret, name, args = match.groups()
        argtypes = []
        for arg in args.split(",") if args.strip() != "void" else ():
            parts = _ARG.match(arg.strip())
            if not parts:
                raise ValueError(f"{where}: cannot read argument {arg.strip()!r}")
            argtypes.append(_type(parts.group(1), where))
        result[name] = Prototype(name, _type(ret, where), tuple(argtypes), line)
    return result


@functools.cache
def prototypes(path: Path = PATH) -> dict[str, Prototype]:
    """Every function of the header by name, in the header's order."""
    return _parse(path.read_text(encoding="utf-8"), str(path))


def declare(lib, names):
    """Set argtypes/restype of `names` on a loaded library; AttributeError if one is missing."""
    table = prototypes()
    for name in names:
        function = getattr(lib, name)
        function.restype = table[name].restype
        function.argtypes = table[name].argtypes
    return lib

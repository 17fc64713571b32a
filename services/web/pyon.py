"""PYON, the value encoding of sipyco's pc_rpc: v2 (JSON) and v1 (Python literals).

PYON v2 is JSON on one ASCII line; the types JSON lacks travel as
``{"__jsonclass__": [TYPE, ARGS]}`` with ARGS the constructor's arguments::

    >>> encode({"args": (3,), "names": {"ping"}})
    '{"args":{"__jsonclass__":["tuple",[[3]]]},"names":{"__jsonclass__":["set",[["ping"]]]}}'
    >>> decode('{"__jsonclass__": ["dict", [[[1, "a"], [2, "b"]]]]}')
    {1: 'a', 2: 'b'}

PYON v1, spoken by ARTIQ releases before v2, is Python literal syntax with
``null``/``true``/``false``, ``nan``/``inf`` and a few calls (``Fraction(1, 3)``,
``OrderedDict([...])``, ``slice(...)``, ``nparray(...)``, ``npscalar(...)``). It is
parsed with `ast` into a syntax tree and only that grammar is accepted, never
evaluated::

    >>> decode_v1('{"action": "call", "name": "frequency", "args": (3,), "kwargs": {}}')
    {'action': 'call', 'name': 'frequency', 'args': (3,), 'kwargs': {}}
    >>> encode_v1({"status": "ok", "ret": (None, True, float("nan"))})
    '{"status": "ok", "ret": (null, true, nan)}'
    >>> decode_v1("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: not PYON v1: a call of '__import__' (known: Fraction, OrderedDict, nparray, npscalar, slice)

Both decoders raise ValueError for malformed or too deeply nested input
(more than `MAX_DEPTH` levels) and TypeError for a type PYON does not know, as
sipyco's decoder does. Numpy arrays and scalars decode to (nested) lists and
Python numbers when numpy is installed, and are refused otherwise. Encoding
accepts what the services return: JSON types, tuples, sets, dicts with any
hashable keys, bytes, complex, Fraction, OrderedDict, slice, and datetimes (as
ISO 8601 strings, like the JSON API).
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import math
from collections import OrderedDict
from datetime import datetime
from fractions import Fraction
from typing import Any

__all__ = ["MAX_DEPTH", "decode", "decode_v1", "encode", "encode_v1"]

#: deepest nesting of containers a decoded value may have
MAX_DEPTH = 100
_CLASS = "__jsonclass__"
_NUMPY_KINDS = "biufc"  # bool, int, unsigned, float, complex: never objects or strings


# -- v2: JSON ---------------------------------------------------------------------------


def encode(value: Any) -> str:
    """`value` as one line of PYON v2 (ASCII JSON); TypeError for what PYON cannot carry."""
    return _ENCODER.encode(_wrap(value))


def _jsonclass(name: str, args: list) -> dict:
    return {_CLASS: [name, args]}


def _pairs(mapping: dict) -> list:
    return [[_wrap(k), _wrap(v)] for k, v in mapping.items()]


def _wrap(value: Any) -> Any:
    """JSON-ready form of `value`, with the non-JSON types as ``__jsonclass__`` objects."""
    kind = type(value)
    if kind is str or kind is float or kind is int or kind is bool or value is None:
        return value
    if kind is list:
        return [_wrap(v) for v in value]
    if kind is dict:
        if _CLASS not in value and all(type(k) is str for k in value):
            return {k: _wrap(v) for k, v in value.items()}
        return _jsonclass("dict", [_pairs(value)])
    if kind is tuple:
        return _jsonclass("tuple", [[_wrap(v) for v in value]])
    if isinstance(value, set | frozenset):
        return _jsonclass("set", [[_wrap(v) for v in value]])
    if isinstance(value, OrderedDict):
        return _jsonclass("OrderedDict", [_pairs(value)])
    if isinstance(value, int | float | str):  # subclasses (enums, numpy.float64): json's own
        return value
    if isinstance(value, bytes):
        return _jsonclass("bytes", [base64.b64encode(value).decode()])
    if isinstance(value, complex):
        return _jsonclass("complex", [value.real, value.imag])
    if isinstance(value, Fraction):
        return _jsonclass("Fraction", [value.numerator, value.denominator])
    if isinstance(value, slice):
        return _jsonclass("slice", [_wrap(value.start), _wrap(value.stop), _wrap(value.step)])
    if isinstance(value, datetime):
        return value.isoformat()
    for base in (tuple, list, dict):  # named tuples and other subclasses
        if isinstance(value, base):
            return _wrap(base(value))
    raise TypeError(f"`{value!r}`: Object of type `{kind.__name__}` is not PYON encodable")


def decode(text: str | bytes) -> Any:
    """A value from one line of PYON v2."""
    try:
        value = _DECODER.decode(text.decode() if isinstance(text, bytes) else text)
    except RecursionError:
        raise ValueError(f"not PYON: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not PYON v2 (JSON): {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not PYON v2: not UTF-8 ({exc.reason})") from None
    opening = ("[", "{") if isinstance(text, str) else (b"[", b"{")
    if text.count(opening[0]) + text.count(opening[1]) > MAX_DEPTH:  # else it cannot be deeper
        _check_depth(value)
    return value


def _object_hook(obj: dict) -> Any:
    """A ``__jsonclass__`` object as the value it stands for (json calls this per object)."""
    if _CLASS not in obj:
        return obj
    spec = obj[_CLASS]
    if len(obj) != 1 or not (isinstance(spec, list) and len(spec) == 2
                             and isinstance(spec[0], str) and isinstance(spec[1], list)):
        raise ValueError(f"not PYON v2: {_CLASS} must be the only key and hold [TYPE, [ARGS]], "
                         f"got {_short(obj)}")
    name, args = spec
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise TypeError(f"Object of type `{name}` is not PYON decodable")
    return _construct(name, decoder, args)


# -- the constructors both versions share -----------------------------------------------


def _construct(name: str, decoder, args: list) -> Any:
    try:
        return decoder(*args)
    except ZeroDivisionError:
        raise ValueError(f"PYON {_call_text(name, args)}: a zero denominator") from None
    except (TypeError, ValueError, binascii.Error, OverflowError) as exc:
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"PYON {_call_text(name, args)}: {exc}") from None


def _call_text(name: str, args: list) -> str:
    return _short(f"{name}({', '.join(map(repr, args))})", 80)


def _items(items: list | tuple) -> list:
    if not isinstance(items, list | tuple):
        raise TypeError(f"expected a list of items, got {type(items).__name__}")
    return list(items)


def _pairs_of(pairs: list | tuple) -> list[tuple]:
    out = []
    for pair in _items(pairs):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"expected [key, value] pairs, got {_short(pair)}")
        out.append((pair[0], pair[1]))
    return out


def _bytes(data: str | bytes) -> bytes:
    if not isinstance(data, str | bytes):
        raise TypeError(f"expected base64 text, got {type(data).__name__}")
    return base64.b64decode(data, validate=True)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_short(value)}")
    return value


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {_short(value)}")
    return value


def _slice(start=None, stop=None, step=None) -> slice:
    for part in (start, stop, step):
        if part is not None:
            _integer(part)
    return slice(start, stop, step)


def _numpy():
    try:
        import numpy
    except ImportError:
        raise TypeError("numpy arrays need numpy, which is not installed on this server; "
                        "send a list instead") from None
    return numpy


def _dtype(numpy, name: Any):
    if not isinstance(name, str):
        raise TypeError(f"expected a dtype name, got {_short(name)}")
    dtype = numpy.dtype(name)
    if dtype.kind not in _NUMPY_KINDS:
        raise TypeError(f"dtype {name!r}: only boolean and numeric arrays are accepted")
    return dtype


def _nparray(shape: list | tuple, dtype: str, data: str | bytes) -> list:
    numpy = _numpy()
    shape = tuple(_integer(n) for n in _items(shape))
    array = numpy.frombuffer(_bytes(data), _dtype(numpy, dtype))
    return array.reshape(shape).tolist()


def _npscalar(dtype: str, data: str | bytes) -> Any:
    numpy = _numpy()
    values = numpy.frombuffer(_bytes(data), _dtype(numpy, dtype))
    if values.size != 1:
        raise ValueError(f"expected one value, got {values.size}")
    return values[0].item()


_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder(object_hook=_object_hook)
_DECODERS = {
    "tuple": lambda items: tuple(_items(items)),
    "set": lambda items: set(_items(items)),
    "dict": lambda pairs: dict(_pairs_of(pairs)),
    "OrderedDict": lambda pairs: OrderedDict(_pairs_of(pairs)),
    "complex": lambda re, im: complex(_real(re), _real(im)),
    "bytes": _bytes,
    "slice": _slice,
    "Fraction": lambda n, d: Fraction(_integer(n), _integer(d)),
    "nparray": _nparray,
    "npscalar": _npscalar,
}


def _check_depth(value: Any) -> None:
    """ValueError when containers nest deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"not PYON: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list | tuple | set | frozenset))


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- v1: Python literal syntax ------------------------------------------------------------


def encode_v1(value: Any) -> str:
    """`value` as one line of PYON v1 (what sipyco's pyon_v1.encode writes).

    As in sipyco, an empty set is written ``{}`` (which reads back as a dict).
    """
    out: list[str] = []
    _write_v1(value, out)
    return "".join(out)


def _write_sequence(items, out: list[str], start: str, end: str) -> None:
    out.append(start)
    for n, item in enumerate(items):
        if n:
            out.append(", ")
        _write_v1(item, out)
    out.append(end)


def _write_v1(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int | float | complex):
        base = int if isinstance(value, int) else float if isinstance(value, float) else complex
        out.append(repr(base(value)))
    elif isinstance(value, str):
        out.append(json.dumps(value))
    elif isinstance(value, bytes):
        out.append(repr(bytes(value)))
    elif isinstance(value, tuple):
        if len(value) == 1:
            out.append("(")
            _write_v1(value[0], out)
            out.append(", )")
        else:
            _write_sequence(value, out, "(", ")")
    elif isinstance(value, list):
        _write_sequence(value, out, "[", "]")
    elif isinstance(value, set | frozenset):
        _write_sequence(value, out, "{", "}")
    elif isinstance(value, OrderedDict):
        out.append("OrderedDict(")
        _write_sequence(value.items(), out, "[", "]")
        out.append(")")
    elif isinstance(value, dict):
        out.append("{")
        for n, (k, v) in enumerate(value.items()):
            if n:
                out.append(", ")
            _write_v1(k, out)
            out.append(": ")
            _write_v1(v, out)
        out.append("}")
    elif isinstance(value, Fraction):
        out.append(f"Fraction({value.numerator}, {value.denominator})")
    elif isinstance(value, slice):
        _write_sequence((value.start, value.stop, value.step), out, "slice(", ")")
    elif isinstance(value, datetime):
        out.append(json.dumps(value.isoformat()))
    else:
        raise TypeError(f"`{value!r}` ({type(value)}) is not PYON serializable")


_V1_NAMES = {"null": None, "true": True, "false": False, "None": None, "True": True,
             "False": False, "inf": math.inf, "nan": math.nan}
_V1_CALLS = {"slice": _slice, "Fraction": _DECODERS["Fraction"],
             "OrderedDict": lambda pairs: OrderedDict(_pairs_of(pairs)),
             "nparray": _nparray, "npscalar": _npscalar}
_V1_ATOMS = (int, float, complex, str, bytes, bool, type(None))


def decode_v1(text: str | bytes) -> Any:
    """A value from one line of PYON v1, parsed (never evaluated) as a restricted literal."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise ValueError(f"not PYON v1: not UTF-8 ({exc.reason})") from None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        if "too many nested" not in exc.msg:  # the parser's own limit (200) on nesting
            raise ValueError(f"not PYON v1: {exc.msg}") from None
        raise ValueError(f"not PYON: nested deeper than {MAX_DEPTH} levels") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"not PYON: nested deeper than {MAX_DEPTH} levels") from None
    return _literal(tree.body, 1)


def _literal(node: ast.AST, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"not PYON: nested deeper than {MAX_DEPTH} levels")
    inner = depth + 1
    if isinstance(node, ast.Constant) and isinstance(node.value, _V1_ATOMS):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in _V1_NAMES:
            raise ValueError(f"not PYON v1: unknown name {node.id!r}")
        return _V1_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _literal(node.operand, inner)
        if isinstance(operand, bool) or not isinstance(operand, int | float | complex):
            raise ValueError("not PYON v1: a sign before something that is not a number")
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        return _complex(node, inner)
    if isinstance(node, ast.Tuple):
        return tuple(_elements(node.elts, inner))
    if isinstance(node, ast.List):
        return _elements(node.elts, inner)
    if isinstance(node, ast.Set):
        return _construct("set", set, [_elements(node.elts, inner)])
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise ValueError("not PYON v1: ** in a dict")
        pairs = [(_literal(k, inner), _literal(v, inner)) for k, v in zip(node.keys, node.values,
                                                                           strict=True)]
        return _construct("dict", dict, [pairs])
    if isinstance(node, ast.Call):
        return _call(node, inner)
    raise ValueError(f"not PYON v1: {type(node).__name__.lower()} is not a PYON value")


def _elements(nodes: list[ast.AST], depth: int) -> list:
    if any(isinstance(n, ast.Starred) for n in nodes):
        raise ValueError("not PYON v1: * in a sequence")
    return [_literal(n, depth) for n in nodes]


def _complex(node: ast.BinOp, depth: int) -> complex:
    """``1+2j`` and ``-0.5-1j``: a real part and an imaginary literal, as repr(complex) writes."""
    real, imag = _literal(node.left, depth), _literal(node.right, depth)
    if (isinstance(real, bool) or not isinstance(real, int | float)
            or not isinstance(imag, complex) or imag.real != 0):
        raise ValueError("not PYON v1: only a complex number may use + or -")
    return complex(real, imag.imag if isinstance(node.op, ast.Add) else -imag.imag)


def _call(node: ast.Call, depth: int) -> Any:
    name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
    decoder = _V1_CALLS.get(name)
    if decoder is None:
        known = ", ".join(sorted(_V1_CALLS))
        raise ValueError(f"not PYON v1: a call of {name!r} (known: {known})")
    if node.keywords:
        raise ValueError(f"not PYON v1: {name}() takes positional arguments only")
    return _construct(name, decoder, _elements(node.args, depth))

"""A pc_rpc client written from the wire description (shared/reference/sipyco.md).

It shares no code with the server: its own framing over a blocking socket,
its own PYON v2 (json plus ``__jsonclass__`` objects) and v1 (the standard
library's ``ast.literal_eval`` over a tree whose ``null``/``true``/``false``
names are replaced by constants), the way a sipyco client of either
generation speaks.
"""

from __future__ import annotations

import ast
import base64
import json
import socket

INIT = b"ARTIQ pc_rpc\n"


class RemoteError(Exception):
    """A failed reply: the exception's class name, message and traceback lines."""

    def __init__(self, cls: str, message: str, traceback: list):
        super().__init__(f"{cls}: {message}")
        self.cls, self.message, self.traceback = cls, message, traceback


# -- PYON v2 ----------------------------------------------------------------------------

def _wrap(value):
    if isinstance(value, bytes):
        return {"__jsonclass__": ["bytes", [base64.b64encode(value).decode()]]}
    if isinstance(value, tuple):
        return {"__jsonclass__": ["tuple", [[_wrap(v) for v in value]]]}
    if isinstance(value, set | frozenset):
        return {"__jsonclass__": ["set", [[_wrap(v) for v in value]]]}
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _wrap(v) for k, v in value.items()}
        return {"__jsonclass__": ["dict", [[[_wrap(k), _wrap(v)] for k, v in value.items()]]]}
    return value


def v2_encode(value) -> bytes:
    return json.dumps(_wrap(value)).encode()


def _unwrap(obj):
    if "__jsonclass__" not in obj:
        return obj
    name, args = obj["__jsonclass__"]
    return {"tuple": tuple, "set": set, "dict": dict, "bytes": base64.b64decode}[name](*args)


def v2_decode(line: bytes):
    return json.loads(line, object_hook=_unwrap)


# -- PYON v1 ----------------------------------------------------------------------------

def v1_encode(value) -> bytes:
    """Python literal syntax with null/true/false, as sipyco's pyon_v1 writes it."""
    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return json.dumps(value).encode()
    if isinstance(value, int | float | bytes):
        return repr(value).encode()
    if isinstance(value, tuple):
        inner = b", ".join(map(v1_encode, value))
        return b"(" + inner + (b", )" if len(value) == 1 else b")")
    if isinstance(value, list):
        return b"[" + b", ".join(map(v1_encode, value)) + b"]"
    if isinstance(value, set):
        return b"{" + b", ".join(map(v1_encode, value)) + b"}"
    if isinstance(value, dict):
        return b"{" + b", ".join(v1_encode(k) + b": " + v1_encode(v)
                                 for k, v in value.items()) + b"}"
    raise TypeError(f"v1_encode cannot write {value!r}")


class _Names(ast.NodeTransformer):
    VALUES = {"null": None, "true": True, "false": False}

    def visit_Name(self, node):
        if node.id in self.VALUES:
            return ast.copy_location(ast.Constant(self.VALUES[node.id]), node)
        return node


def v1_decode(line: bytes):
    tree = _Names().visit(ast.parse(line.decode().strip(), mode="eval"))
    return ast.literal_eval(tree)


# -- a connection -------------------------------------------------------------------------

class Wire:
    """One TCP connection: raw lines out and in."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line with its newline, or what came before the server closed (b"")."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def closed_by_server(self) -> bool:
        """True when the server closed the connection with nothing (more) sent."""
        return self.line() == b""

    def close(self) -> None:
        self.sock.close()


class Client:
    """Handshake, target selection and calls, in PYON v2 (default) or v1."""

    def __init__(self, port: int, target: str, v2: bool = True, host: str = "127.0.0.1"):
        self.wire = Wire(port, host)
        self.wire.send(INIT)
        self.identity = json.loads(self.wire.line())
        self.v2 = v2
        self.wire.send(target.encode() + (b" pyon_v2" if v2 else b"") + b"\n")
        self.method_line = self.wire.line()
        self.methods = self.decode(self.method_line)

    def encode(self, value) -> bytes:
        return v2_encode(value) if self.v2 else v1_encode(value)

    def decode(self, line: bytes):
        return v2_decode(line) if self.v2 else v1_decode(line)

    def request(self, obj) -> dict:
        self.wire.send(self.encode(obj) + b"\n")
        return self.decode(self.wire.line())

    def result(self, reply: dict):
        if reply["status"] == "ok":
            return reply["ret"]
        exc = reply["exception"]
        raise RemoteError(exc["class"], exc["message"], exc["traceback"])

    def call(self, name: str, *args, **kwargs):
        return self.result(self.request({"action": "call", "name": name, "args": args,
                                         "kwargs": kwargs}))

    def method_list(self) -> dict:
        return self.result(self.request({"action": "get_rpc_method_list"}))

    def close(self) -> None:
        self.wire.close()

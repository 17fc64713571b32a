"""JSON-RPC 2.0 over HTTP: a method table that any service can add to.

A service offers methods as a table ``name -> Method``; `Method` wraps a
callable (plain or async) and reads its parameter spec from the signature,
so the types a caller must send are declared once, in the function itself::

    def set_exposure(self, channel: int, ms: int) -> int: ...
    methods = {"set_exposure": Method(service.set_exposure, needs_token=True)}

`RpcHandler` serves the merged table at ``POST /api/v1/rpc``: single calls,
batches (at most `MAX_BATCH`), notifications (no ``id``: no answer) and the
standard error codes. A body that is not JSON, or holds NaN, Infinity or a
number no double holds (``1e400``), is a parse error (-32700). Methods that
change the lab need the bearer token. Errors raised by a method as `ApiError`
keep their message and field: a 4xx becomes "invalid params" (-32602), 401
and 403 `UNAUTHORIZED`, a 5xx `SERVER_ERROR`. Anything else is an internal
error (-32603), logged with the request id its ``data`` carries.

The built-in method ``methods`` lists the table with parameters and doc lines.

The table is the one registry of a server's methods: any other transport
(such as a sipyco pc_rpc listener) serves the same `method_table` by looking a
name up, checking the arguments with `Method.arguments`, refusing a
``needs_token`` method to a caller without the token, and calling ``func``
(awaiting what it returns if that is awaitable). The Python client needs no
copy of it: it calls whatever name it is asked for, and ``methods`` tells it
what there is.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import math
import secrets
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .http import ApiError, JsonError, JsonHandler, check_token, parse_json

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_BATCH",
    "METHOD_NOT_FOUND",
    "Method",
    "PARSE_ERROR",
    "Param",
    "RpcError",
    "RpcHandler",
    "SERVER_ERROR",
    "UNAUTHORIZED",
    "method_table",
]

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
UNAUTHORIZED = -32001
MAX_BATCH = 100

_REQUIRED = inspect.Parameter.empty
_TYPES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
          list: "an array", dict: "an object"}


class RpcError(Exception):
    """A JSON-RPC error object: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass(frozen=True)
class Param:
    """One parameter: its name, JSON type (int, float, bool, str, list, dict) and default."""

    name: str
    kind: type
    default: Any = _REQUIRED

    def check(self, value: Any) -> Any:
        kind = self.kind
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            given = json.dumps(value)
            raise RpcError(INVALID_PARAMS, f"{self.name}: expected {_TYPES[kind]}, got "
                           f"{given if len(given) <= 60 else given[:57] + '...'}",
                           {"field": self.name})
        if kind is float and not math.isfinite(value):
            raise RpcError(INVALID_PARAMS, f"{self.name}: expected a finite number",
                           {"field": self.name})
        return value

    def to_json(self) -> dict:
        spec = {"name": self.name, "type": self.kind.__name__}
        if self.default is not _REQUIRED:
            spec["default"] = self.default
        return spec


@dataclass(frozen=True)
class Method:
    """A callable offered over RPC; `params` default to its signature's annotations."""

    func: Callable[..., Any]
    needs_token: bool = False
    params: tuple[Param, ...] = field(default=None)
    doc: str = ""

    def __post_init__(self):
        if self.params is None:
            object.__setattr__(self, "params", _params_of(self.func))
        if not self.doc:
            object.__setattr__(self, "doc", (inspect.getdoc(self.func) or "").split("\n")[0])

    def bind(self, params: list | dict | None) -> dict[str, Any]:
        """Keyword arguments for `func` from JSON-RPC params (positional or named), checked."""
        if isinstance(params, dict):
            return self.arguments((), params)
        return self.arguments(params or (), {})

    def arguments(self, args: list | tuple = (), kwargs: dict | None = None) -> dict[str, Any]:
        """Keyword arguments for `func` from positional and named arguments, checked; an
        RpcError (INVALID_PARAMS) names the first wrong one."""
        kwargs = kwargs or {}
        if len(args) > len(self.params):
            raise RpcError(INVALID_PARAMS, f"expected at most {len(self.params)} params, "
                           f"got {len(args)}")
        given = {p.name: v for p, v in zip(self.params, args, strict=False)}
        known = {p.name for p in self.params}
        for name in kwargs:
            if name not in known:
                raise RpcError(INVALID_PARAMS, f"{name}: unknown parameter; expected "
                               f"{', '.join(sorted(known)) or 'none'}", {"field": name})
            if name in given:
                raise RpcError(INVALID_PARAMS, f"{name}: given by position and by name",
                               {"field": name})
        given.update(kwargs)
        bound = {}
        for p in self.params:
            if p.name in given:
                bound[p.name] = p.check(given[p.name])
            elif p.default is _REQUIRED:
                raise RpcError(INVALID_PARAMS, f"{p.name}: missing parameter", {"field": p.name})
        return bound

    def describe(self, name: str) -> dict:
        return {"name": name, "params": [p.to_json() for p in self.params],
                "needs_token": self.needs_token, "doc": self.doc}


def _params_of(func: Callable) -> tuple[Param, ...]:
    hints = typing.get_type_hints(func)
    params = []
    for p in inspect.signature(func).parameters.values():
        kind = hints.get(p.name)
        if kind not in _TYPES:
            raise TypeError(f"{func.__qualname__}: parameter {p.name!r} needs an annotation "
                            f"of {', '.join(t.__name__ for t in _TYPES)} to be offered over RPC")
        params.append(Param(p.name, kind, p.default))
    return tuple(params)


def _error(exc: RpcError, id_: Any) -> dict:
    return {"jsonrpc": "2.0", "error": exc.to_json(), "id": id_}


def _from_api_error(exc: ApiError) -> RpcError:
    data = {"status": exc.status_code}
    if exc.field:
        data["field"] = exc.field
    if exc.status_code in (401, 403):
        return RpcError(UNAUTHORIZED, exc.message, data)
    if exc.status_code < 500:
        return RpcError(INVALID_PARAMS, exc.message, data)
    return RpcError(SERVER_ERROR, exc.message, data)


def method_table(*tables: dict[str, Method]) -> dict[str, Method]:
    """The tables of several services merged, plus the built-in ``methods``.

    A name offered twice is a ValueError.
    """
    merged: dict[str, Method] = {}
    for table in tables:
        for name, method in table.items():
            if name in merged or name == "methods":
                raise ValueError(f"RPC method {name!r} is offered twice")
            merged[name] = method

    def methods() -> list:
        """The methods offered here, with their parameters."""
        return [m.describe(name) for name, m in sorted(merged.items())]

    merged["methods"] = Method(methods)
    return merged


class RpcHandler(JsonHandler):
    """``POST /api/v1/rpc``: JSON-RPC 2.0 over a method table (see `method_table`)."""

    def initialize(self, methods: dict[str, Method], stats=None):
        self.methods = methods
        self.stats = stats  # services.web.metrics.ServerStats, counting calls and errors

    async def post(self):
        try:
            request = parse_json(self.request.body)
        except JsonError as exc:
            return self.write_json(_error(RpcError(PARSE_ERROR, f"parse error: {exc}"), None))
        if isinstance(request, list):
            if not request:
                error = RpcError(INVALID_REQUEST, "invalid request: an empty batch")
                return self.write_json(_error(error, None))
            if len(request) > MAX_BATCH:
                error = RpcError(INVALID_REQUEST, f"invalid request: a batch holds at most "
                                 f"{MAX_BATCH} calls, got {len(request)}")
                return self.write_json(_error(error, None))
            answers = [a for a in [await self._call(r) for r in request] if a is not None]
        else:
            answer = await self._call(request)
            answers = answer if answer is not None else []
        if answers == []:
            self.set_status(204)
            return self.finish()
        self.write_json(answers)

    async def _call(self, request: Any) -> dict | None:
        answer = await self._answer(request)
        if self.stats is not None:
            name = request.get("method") if isinstance(request, dict) else None
            name = name if name in self.methods else "(invalid)"
            error = answer.get("error") if isinstance(answer, dict) else None
            self.stats.rpc_call(name, error["code"] if error else None)
        return answer

    async def _answer(self, request: Any) -> dict | None:
        """The answer to one call (None for a notification)."""
        if not isinstance(request, dict):
            return _error(RpcError(INVALID_REQUEST, "invalid request: expected an object"), None)
        id_ = request.get("id")
        notification = "id" not in request
        try:
            name = self._check_request(request)
            method = self.methods.get(name)
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, _not_found(name, self.methods))
            if method.needs_token:
                check_token(self.settings.get("token"), self.bearer_token(), name)
            result = method.func(**method.bind(request.get("params")))
            if inspect.isawaitable(result):
                result = await result
        except RpcError as exc:
            if exc.code == INVALID_REQUEST:  # answered even without an id
                return _error(exc, id_ if _valid_id(id_) else None)
            return None if notification else _error(exc, id_)
        except ApiError as exc:
            return None if notification else _error(_from_api_error(exc), id_)
        except Exception as exc:
            request_id = secrets.token_hex(6)
            log.exception("request %s: RPC method %r failed", request_id, request.get("method"))
            error = RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}",
                             {"request_id": request_id})
            return None if notification else _error(error, id_)
        return None if notification else {"jsonrpc": "2.0", "result": result, "id": id_}

    @staticmethod
    def _check_request(request: dict) -> str:
        if request.get("jsonrpc") != "2.0":
            raise RpcError(INVALID_REQUEST, "invalid request: 'jsonrpc' must be \"2.0\"")
        if "id" in request and not _valid_id(request["id"]):
            raise RpcError(INVALID_REQUEST, "invalid request: 'id' must be a string, a number "
                           "or null")
        name = request.get("method")
        if not isinstance(name, str):
            raise RpcError(INVALID_REQUEST, "invalid request: 'method' must be a string")
        if not isinstance(request.get("params", []), list | dict):
            raise RpcError(INVALID_REQUEST, "invalid request: 'params' must be an array or "
                           "an object")
        return name


def _not_found(name: str, methods: dict[str, Method]) -> str:
    close = difflib.get_close_matches(name, list(methods), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"method not found: {name[:60]!r}; {hint}call 'methods' for the list"


def _valid_id(id_: Any) -> bool:
    return id_ is None or isinstance(id_, str) or (isinstance(id_, int | float)
                                                   and not isinstance(id_, bool))

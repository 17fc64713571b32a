"""JSON request handlers: errors as JSON bodies, bearer-token checks, typed arguments.

Every error leaves as `{"error": "<message>", "field": "<name or null>"}` with a
4xx/5xx status; a write that lacks a valid token gets 401 (403 when the server
has no token at all) and changes nothing. A 5xx also carries a ``request_id``,
sent as the ``X-Request-ID`` header too and logged on the line that explains it.

Request bodies are read with `parse_json`, which refuses what would break a
handler later: NaN and Infinity, numbers no double holds (``1e400``, an integer
of 400 digits), nesting deeper than `MAX_DEPTH`. A handler answers HEAD wherever
it answers GET, and a 405 says in ``Allow`` which methods the resource has.

>>> parse_json(b'{"setpoint_thz": 755.2}')
{'setpoint_thz': 755.2}
>>> parse_json(b'[1e400]')
Traceback (most recent call last):
...
services.web.http.JsonError: a number out of range: 1e400
>>> redact_url("postgresql://logger:pw@db/ionlab?sslmode=require&password=pw")
'postgresql://logger:***@db/ionlab?sslmode=require&password=***'
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
import math
import re
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tornado.web

from . import times

__all__ = ["MAX_DEPTH", "ApiError", "JsonError", "JsonErrors", "JsonHandler", "allowed_methods",
           "check_token", "parse_json", "parse_time", "path_number", "redact_url",
           "token_matches"]

log = logging.getLogger(__name__)

#: how deeply arrays and objects may nest in a request body
MAX_DEPTH = 32
#: query parameters whose values are secrets (masked wherever a URL is logged or shown)
SECRET_PARAMS = re.compile(r"^p$|token|ticket|pass(word|wd)?|secret|key|auth", re.IGNORECASE)  # p: InfluxDB's
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ApiError(tornado.web.HTTPError):
    """A client error with a message and the field it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(status, reason=None)
        self.message = message
        self.field = field


class JsonError(ValueError):
    """A request body that is not JSON this server takes; the message says why."""


def _no_constant(name: str):
    raise JsonError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"a number out of range: {text[:40]}")
    return value


def _int(text: str) -> int:
    try:
        value = int(text)
        float(value)  # what no double holds is refused, as 1e400 is
    except (ValueError, OverflowError):
        raise JsonError(f"a number out of range: {text[:40]}"
                        f"{'...' if len(text) > 40 else ''} ({len(text)} digits)") from None
    return value


def parse_json(body: bytes | str) -> Any:
    """A request body as JSON, or JsonError naming what this server refuses in it."""
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise JsonError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except JsonError:
        raise
    except ValueError as exc:
        raise JsonError(str(exc)) from None
    if _depth(value) > MAX_DEPTH:
        raise JsonError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest if isinstance(value, dict | list) else 0


def token_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time token comparison; no configured token means writes are refused."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def check_token(expected: str | None, given: str | None, what: str = "this write") -> None:
    """ApiError unless `given` is the server's token: 403 when the server has none, else 401
    saying whether the token was missing or wrong, and how to give it."""
    if not expected:
        raise ApiError(403, f"{what} is disabled: this server has no write token (set "
                       "[server] token or IONLAB_TOKEN where it runs)")
    if not given:
        raise ApiError(401, f"{what} needs the lab's write token: send 'Authorization: Bearer "
                       "<token>' (ionlab and the Python client take it from IONLAB_TOKEN)")
    if not token_matches(expected, given):
        raise ApiError(401, f"{what} was refused: the token sent is not this server's write "
                       "token (check IONLAB_TOKEN)")


def path_number(text: str, field: str, max_digits: int = 6) -> int | None:
    """A URL segment as a whole number of at most `max_digits` ASCII digits, else None.

    >>> path_number("3", "channel"), path_number("²", "channel"), path_number("9" * 50, "lock")
    (3, None, None)
    """
    if text.isascii() and text.isdigit() and len(text) <= max_digits:
        return int(text)
    return None


def redact_url(url: str) -> str:
    """`url` with the password of its user and the values of secret query parameters masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(_redact_param(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_param(param: str) -> str:
    name, eq, _ = param.partition("=")
    return f"{name}=***" if eq and SECRET_PARAMS.search(name) else param


def parse_time(text: str, field: str) -> datetime:
    """A time as people type it (services.web.times: ISO 8601 with an offset, ``-1h``,
    ``now``, ``today``); a 400 naming `field` otherwise. Naive times are refused."""
    try:
        return times.parse_time(text, field)
    except times.TimeError as exc:
        raise ApiError(400, f"{field}: {exc.message}", field) from None


def allowed_methods(handler_class: type[tornado.web.RequestHandler]) -> list[str]:
    """The HTTP methods a handler class answers (HEAD wherever GET)."""
    base = tornado.web.RequestHandler
    methods = [m for m in _HTTP_METHODS if m != "HEAD" and m in handler_class.SUPPORTED_METHODS
               and getattr(handler_class, m.lower()) is not getattr(base, m.lower())]
    return ["GET", "HEAD", *methods[1:]] if methods[:1] == ["GET"] else methods


class JsonErrors:
    """Errors as JSON bodies for any RequestHandler (mixed in before it).

    A 405 lists the allowed methods in ``Allow``; a 5xx gets a request id that
    the log line about it carries too (the path is logged, never the query,
    which may hold a secret).
    """

    _request_id: str | None = None

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = secrets.token_hex(6)
        return self._request_id

    def log_exception(self, typ, value, tb):
        if isinstance(value, tornado.web.HTTPError) and value.status_code < 500:
            return super().log_exception(typ, value, tb)
        where = f"{self.request.method} {self.request.path}"
        if isinstance(value, tornado.web.HTTPError):  # an answer we chose: no traceback
            message = value.message if isinstance(value, ApiError) else value.log_message
            log.warning("request %s: %s: %d %s", self.request_id, where, value.status_code,
                        message)
        else:
            log.error("request %s: %s failed", self.request_id, where,
                      exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, ApiError):
            body = {"error": exc.message, "field": exc.field}
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            body = {"error": exc.log_message % exc.args if exc.args else exc.log_message,
                    "field": None}
        elif status_code >= 500:
            body = {"error": f"internal error: the server log has the details under request "
                    f"id {self.request_id}", "field": None}
        elif status_code == 404:
            path = self.request.path
            body = {"error": f"no such resource: {path if len(path) <= 200 else path[:200]}",
                    "field": None}
        else:
            body = {"error": self._reason, "field": None}
        if status_code == 405:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
            body["error"] = (f"{self.request.method} is not allowed here; this resource "
                             f"answers {', '.join(allowed_methods(type(self)))}")
        if status_code == 401:  # send_error cleared the headers set before raising
            self.set_header("WWW-Authenticate", 'Bearer realm="ionlab"')
        if status_code >= 500:
            body["request_id"] = self.request_id
            self.set_header("X-Request-ID", self.request_id)
            if exc is None:
                log.error("request %s: %s %s answered %d", self.request_id,
                          self.request.method, self.request.path, status_code)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))


class JsonHandler(JsonErrors, tornado.web.RequestHandler):
    """Base for the JSON API. The application setting `token` holds the write token."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    async def head(self, *args, **kwargs):
        """HEAD wherever GET: the same status and headers, no body."""
        if type(self).get is tornado.web.RequestHandler.get:
            raise tornado.web.HTTPError(405)
        result = self.get(*args, **kwargs)
        if inspect.isawaitable(result):
            await result

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, allow_nan=False, default=_default))

    def json_body(self) -> dict:
        """The request body as a JSON object, or 400 naming the problem."""
        try:
            data = parse_json(self.request.body or b"null")
        except JsonError as exc:
            raise ApiError(400, f"body is not JSON this server takes: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        return data

    def bearer_token(self) -> str | None:
        """The token of the Authorization header (never one in the URL, which gets logged)."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None

    def require_token(self) -> None:
        """401 (403) unless the request carries the configured write token."""
        check_token(self.settings.get("token"), self.bearer_token())

    def float_argument(self, name: str, default: float | None = None) -> float | None:
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ApiError(400, f"{name}: expected a number, got {text!r}", name) from None
        if not math.isfinite(value):
            raise ApiError(400, f"{name}: expected a finite number, got {text!r}", name)
        return value


def _default(obj):
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

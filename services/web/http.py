"""JSON request handlers: errors as JSON bodies, bearer-token checks, typed arguments.

Every error leaves as `{"error": "<message>", "field": "<name or null>"}` with a
4xx/5xx status; a write that lacks a valid token gets 401 and changes nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from datetime import datetime
from typing import Any

import tornado.web

__all__ = ["ApiError", "JsonHandler", "parse_time", "token_matches"]

log = logging.getLogger(__name__)


class ApiError(tornado.web.HTTPError):
    """A client error with a message and the field it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(status, reason=None)
        self.message = message
        self.field = field


def token_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time token comparison; no configured token means writes are refused."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def parse_time(text: str, field: str) -> datetime:
    """An ISO 8601 time with an offset; naive times are refused, not guessed."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ApiError(400, f"{field}: not an ISO 8601 time: {text!r}", field) from None
    if value.tzinfo is None:
        raise ApiError(400, f"{field}: time needs a UTC offset (e.g. 'Z' or '+01:00'): {text!r}",
                       field)
    return value


class JsonHandler(tornado.web.RequestHandler):
    """Base for the JSON API. The application setting `token` holds the write token."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, allow_nan=False, default=_default))

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, ApiError):
            body = {"error": exc.message, "field": exc.field}
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            body = {"error": exc.log_message % exc.args if exc.args else exc.log_message,
                    "field": None}
        else:
            body = {"error": self._reason, "field": None}
        if status_code == 401:  # send_error cleared the headers set before raising
            self.set_header("WWW-Authenticate", 'Bearer realm="ionlab"')
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def json_body(self) -> dict:
        """The request body as a JSON object, or 400 naming the problem."""
        try:
            data = json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        return data

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return token.strip()
        return self.get_query_argument("token", None)

    def require_token(self) -> None:
        """401 unless the request carries the configured write token."""
        if not token_matches(self.settings.get("token"), self.bearer_token()):
            raise ApiError(401, "this write needs 'Authorization: Bearer <token>' with the lab's "
                           "token (config [server] token or IONLAB_TOKEN)")

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

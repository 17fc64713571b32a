"""`ionlab wavemeter` (the server) and `ionlab rpc` (call one of its methods).

    ionlab wavemeter [--config FILE] [--bind 127.0.0.1] [--port 8888]
    ionlab rpc [--url URL] METHOD [ARGS...]

RPC arguments are JSON where they parse as JSON (``3``, ``true``,
``"text"``) and strings otherwise; ``name=value`` passes a named parameter.
The result is printed as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

from ..config import load
from ..web.app import add_server_options, serve, server_from_args
from ..web.hub import Hub
from ..web.rpc import UNAUTHORIZED
from .client import DEFAULT_URL, HttpError, RpcError, Unreachable, Wavemeter
from .lock_api import LockService
from .service import WavemeterService

__all__ = ["parse_rpc_args", "register"]

_NAMED = re.compile(r"^([A-Za-z_]\w*)=(.*)$", re.DOTALL)


def wavemeter_command(args) -> int:
    config = load(args.config)
    server = server_from_args(config, args)
    hub = Hub()
    wavemeter = WavemeterService(config, hub)
    asyncio.run(serve([wavemeter, LockService(config, hub, wavemeter)], hub, server))
    return 0


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_rpc_args(words: list[str]) -> tuple[list, dict]:
    """Positional and named parameters from command-line words.

    >>> parse_rpc_args(["3", "true", "name=729 qubit", "x"])
    ([3, True, 'x'], {'name': '729 qubit'})
    """
    args, kwargs = [], {}
    for word in words:
        match = _NAMED.match(word)
        if match:
            kwargs[match.group(1)] = _value(match.group(2))
        else:
            args.append(_value(word))
    return args, kwargs


def rpc_command(args) -> int:
    params, named = parse_rpc_args(args.args)
    if params and named:
        print("ionlab rpc: give the parameters by position or as name=value, not both",
              file=sys.stderr)
        return 2
    client = Wavemeter(args.url, token=args.token, timeout=args.timeout)
    try:
        result = client.call(args.method, *params, **named)
    except RpcError as exc:
        print(f"ionlab rpc: {args.method}: {exc.message} (JSON-RPC error {exc.code})",
              file=sys.stderr)
        if exc.code == UNAUTHORIZED:
            print(f"ionlab rpc: {_token_hint(args.token)}", file=sys.stderr)
        return 1
    except (HttpError, Unreachable) as exc:
        print(f"ionlab rpc: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _token_hint(option: str | None) -> str:
    """Where this command's token came from, and how to give the right one."""
    if option:
        return "the token of --token was sent; give the lab's write token instead"
    if os.environ.get("IONLAB_TOKEN"):
        return "the token of IONLAB_TOKEN was sent; set it to the lab's write token"
    return "no token was sent: set IONLAB_TOKEN to the lab's write token (or use --token)"


def register(sub) -> None:
    p = sub.add_parser("wavemeter", help="serve the wavemeter: HTTP API, JSON-RPC, live stream",
                       description="Read the wavemeter in the background and serve its channels "
                       "over HTTP (/api/v1/channels), JSON-RPC (/api/v1/rpc) and server-sent "
                       "events (/api/v1/stream). Ctrl-C or SIGTERM stops it.")
    p.add_argument("--config", metavar="FILE", help="lab config (TOML); default: the demo lab")
    add_server_options(p)
    p.set_defaults(func=wavemeter_command)
    p = sub.add_parser("rpc", help="call a JSON-RPC method of a running server",
                       description="Call one JSON-RPC method and print its result as JSON. "
                       "`ionlab rpc methods` lists them. Arguments are JSON where they parse "
                       "(3, true, \"text\"), strings otherwise; name=value gives a named "
                       "parameter. Exit 1 when the call fails.")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    p.add_argument("--token", help="write token (default: the IONLAB_TOKEN environment variable)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the answer (default 10)")
    p.add_argument("method", metavar="METHOD", help="method name, e.g. frequency")
    p.add_argument("args", nargs="*", metavar="ARG", help="parameters")
    p.set_defaults(func=rpc_command)

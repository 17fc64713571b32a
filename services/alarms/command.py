"""`ionlab alarms`: the alarms of a running lab, from the terminal.

    ionlab alarms [list] [--all]                   firing and pending alarms (--all: every one)
    ionlab alarms ack NAME [--why TEXT]            acknowledge (a rule's name: all its alarms)
    ionlab alarms silence NAME --for 2h [--why T]  no notifications for that long
    ionlab alarms silence NAME --end               end a silence
    ionlab alarms history [NAME] [--since 24h | --start T --end T] [--json]

Every command talks to the server at --url (default http://127.0.0.1:8888);
the writes need the token (--token or IONLAB_TOKEN) and say who you are
(--who, default your login name).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

from ..logger.queries import QueryError, parse_duration

__all__ = ["format_alarms", "format_history", "register"]

DEFAULT_URL = "http://127.0.0.1:8888"


class _Failed(Exception):
    """The server could not be reached or refused; the text says why."""


def _call(args, method: str, path: str, body: dict | None = None):
    url = args.url.rstrip("/") + path
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        token = args.token if args.token is not None else os.environ.get("IONLAB_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error") or exc.reason
        except ValueError:
            message = exc.reason
        raise _Failed(f"{message} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Failed(f"cannot reach the lab at {args.url}: "
                      f"{getattr(exc, 'reason', exc)}") from None


def _when(text: str | None) -> str:
    if not text:
        return "-"
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(header: tuple, rows: list[tuple]) -> str:
    lines = [header, *rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join([str(c).ljust(w) for c, w in zip(line, widths, strict=False)]
                               + [str(line[-1])]).rstrip() for line in lines)


def format_alarms(alarms: list[dict]) -> str:
    """A table of alarms: state, severity, since (UTC), name, flags and message."""
    rows = []
    for a in alarms:
        flags = []
        if a.get("acknowledged"):
            flags.append(f"acked by {a['acknowledged']['who']}")
        if a.get("silenced"):
            flags.append(f"silenced until {_when(a['silenced']['until'])}")
        rows.append((a["state"], a["severity"], _when(a["since"]), a["name"],
                     "; ".join(flags) or "-", a["message"]))
    return _table(("STATE", "SEVERITY", "SINCE (UTC)", "ALARM", "", "MESSAGE"), rows)


def format_history(events: list[dict]) -> str:
    """A table of stored transitions, oldest first."""
    rows = []
    for e in events:
        by = f"{e['who']}: {e['why']}" if e.get("who") and e.get("why") else (e.get("who") or "")
        rows.append((_when(e["time"]), e["alarm"], f"{e['previous']} -> {e['state']}",
                     by or "-", e["message"]))
    return _table(("TIME (UTC)", "ALARM", "CHANGE", "BY", "MESSAGE"), rows)


def _list(args) -> int:
    overview = _call(args, "GET", "/api/v1/alarms")
    alarms = overview["alarms"] if args.all else [
        a for a in overview["alarms"] if a["state"] in ("firing", "pending") or a["silenced"]]
    if args.json:
        print(json.dumps(alarms, indent=2))
        return 0
    print(format_alarms(alarms) if alarms else
          f"no alarm firing or pending ({len(overview['alarms'])} alarms; --all lists them)")
    for channel in overview["notify"]:
        if channel["state"] == "failing":
            left = (f"{channel['dropped']} dropped, not retried" if channel.get("refused")
                    else f"{channel['pending']} waiting")
            print(f"notify {channel['channel']} ({channel['kind']}) FAILING: "
                  f"{channel['last_error']} ({left})")
    return 0


def _write(args, action: str, body: dict) -> int:
    result = _call(args, "POST", f"/api/v1/alarms/{action}",
                   {"alarm": args.name, "who": args.who, "why": args.why, **body})
    print(format_alarms(result["alarms"]))
    return 0


def _history(args) -> int:
    query = {"limit": str(args.limit)}
    if args.start or args.end:
        query.update({k: v for k, v in (("start", args.start), ("end", args.end)) if v})
    else:
        try:
            start = datetime.now(UTC) - timedelta(seconds=parse_duration(args.since, "--since"))
        except QueryError as exc:
            raise _Failed(str(exc)) from None
        except OverflowError:
            raise _Failed(f"--since: {args.since!r} reaches back before the year 1") from None
        query["start"] = start.isoformat()
    if args.name:
        query["alarm"] = args.name
    result = _call(args, "GET", "/api/v1/alarms/history?" + urllib.parse.urlencode(query))
    if args.json:
        print(json.dumps(result["events"], indent=2))
    else:
        print(format_history(result["events"]) if result["events"] else "no transitions")
    return 0


def alarms_command(args) -> int:
    try:
        if args.action in (None, "list"):
            return _list(args)
        if args.action == "ack":
            return _write(args, "ack", {})
        if args.action == "silence":
            if args.end:
                return _write(args, "unsilence", {})
            if not args.duration:
                raise _Failed("give --for DURATION (e.g. 2h) or --end")
            return _write(args, "silence", {"duration": args.duration})
        return _history(args)
    except _Failed as exc:
        print(f"ionlab alarms: {exc}", file=sys.stderr)
        return 1


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def register(sub) -> None:
    p = sub.add_parser("alarms", help="list, acknowledge and silence a running lab's alarms",
                       description="The alarms of a running lab (`ionlab run`): what fires, "
                       "acknowledging and silencing (these need the token), and the stored "
                       "history of transitions. Times are shown in UTC.")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    p.add_argument("--token", help="write token (default: the IONLAB_TOKEN environment variable)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the server (default 10)")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="firing and pending alarms (the default)",
                                 description="Firing, pending and silenced alarms, firing "
                                 "first; failing notification channels are named below.")
    for q in (p, listing):
        q.add_argument("--all", action="store_true", help="every alarm, ok ones too")
        q.add_argument("--json", action="store_true", help="print JSON")
    who = _login()
    ack = actions.add_parser("ack", help="acknowledge a firing alarm (stops the reminders)",
                             description="Acknowledge a firing alarm: no more reminders until "
                             "it resolves. A rule's name acknowledges all its firing alarms.")
    silence = actions.add_parser("silence", help="silence an alarm's notifications for a while",
                                 description="No notifications from the alarm (or all alarms "
                                 "of a rule) for --for; its state still shows. --end ends it.")
    for q in (ack, silence):
        q.add_argument("name", metavar="NAME", help="alarm or rule name")
        q.add_argument("--who", default=who, help=f"who you are (default {who})")
        q.add_argument("--why", default="", help="a note for the others")
    silence.add_argument("--for", dest="duration", metavar="DURATION",
                         help="how long: 90s, 30min, 2h, 1d")
    silence.add_argument("--end", action="store_true", help="end the silence now")
    history = actions.add_parser("history", help="stored transitions of the alarms",
                                 description="Stored transitions (and acknowledges, silences), "
                                 "oldest first: of one alarm or rule, or of all.")
    history.add_argument("name", metavar="NAME", nargs="?", help="alarm or rule (default all)")
    history.add_argument("--since", default="24h", help="how far back (default 24h)")
    history.add_argument("--start", metavar="T", help="ISO 8601 with offset, inclusive")
    history.add_argument("--end", metavar="T", help="ISO 8601 with offset, exclusive")
    history.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    history.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=alarms_command)

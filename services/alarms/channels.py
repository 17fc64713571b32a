"""The ``[notify.NAME]`` channels: e-mail over SMTP and webhooks, and the messages they send.

    [notify.oncall]
    email = ["oncall@lab.example"]          # one address or an array
    smtp = "smtp://127.0.0.1:2525"          # smtp:// or smtps://, user:password@ allowed
    from = "ionlab@lab.example"
    starttls = false                        # smtp:// only: upgrade with STARTTLS first
    password_env = "IONLAB_SMTP_PASSWORD"   # the password from the environment instead
    ca_file = "/etc/ionlab/smtp-ca.pem"     # trust these certificates, not the system's

    [notify.chat]
    webhook = "http://127.0.0.1:9000/hook"  # generic JSON; format = "slack" for Slack/Mattermost

Every channel also takes ``timeout_s`` (10), ``group_s`` (1: alarms within
that long of the first go out in one message), ``max_per_hour`` (60, in
bursts of up to ``burst`` = 10; beyond that messages wait and are merged) and
``retry_max_s`` (300: the longest wait between retries). A channel with both
``email`` and ``webhook`` delivers through each. Passwords and webhook paths
(a Slack hook's path is its secret) are never logged or shown.

A `Transport` turns a list of notices (dicts made by the service) into one
message and sends it, blocking, raising DeliveryError; it runs on its
channel's worker thread (outbox.py), never on the IO loop. A server's TLS
certificate is always checked (against `ca_file` if given); a login the
server refuses is a DeliveryError marked `permanent`: retrying cannot help.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from ..config import Config, Section
from ..logger.store import redact

__all__ = ["ChannelSettings", "DeliveryError", "Email", "Transport", "Webhook",
           "parse_channels", "summary"]

log = logging.getLogger(__name__)

_KEYS = {"email", "smtp", "from", "starttls", "password_env", "ca_file", "webhook", "format",
         "timeout_s", "group_s", "max_per_hour", "burst", "retry_max_s", "queue"}
_COLORS = {"critical": "#a40e26", "warning": "#bf8700", "info": "#0969da"}
_RANK = {"info": 0, "warning": 1, "critical": 2}
MAX_RESPONSE = 64 * 1024


class DeliveryError(Exception):
    """A message could not be delivered; the text says why (never a secret). `permanent`:
    the same attempt can never succeed (a login refused), so it is not retried."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class ChannelSettings:
    """How one channel's worker paces what it sends."""

    timeout_s: float = 10.0
    group_s: float = 1.0
    max_per_hour: float = 60.0
    burst: int = 10
    retry_min_s: float = 1.0
    retry_max_s: float = 300.0
    queue: int = 1000


class Transport:
    """Sends one message made of notices; `target` says where, without secrets."""

    kind = "transport"
    target = ""

    def send(self, notices: list[dict], timeout_s: float) -> None:
        raise NotImplementedError


def summary(notices: list[dict]) -> str:
    """One line for a message: the alarm and its text, or how many fired and resolved.

    >>> summary([{"notice": "firing", "alarm": "p", "message": "high", "severity": "info"}])
    'FIRING p: high'
    >>> summary([{"notice": "firing", "alarm": "a"}, {"notice": "resolved", "alarm": "b"},
    ...          {"notice": "reminder", "alarm": "c"}])
    '3 alarms: 2 firing, 1 resolved'
    """
    if len(notices) == 1:
        n = notices[0]
        word = "STILL FIRING" if n["notice"] == "reminder" else n["notice"].upper()
        return f"{word} {n['alarm']}: {n['message']}"
    resolved = sum(n["notice"] == "resolved" for n in notices)
    return f"{len(notices)} alarms: {len(notices) - resolved} firing, {resolved} resolved"


def _severity(notices: list[dict]) -> str:
    return max((n.get("severity", "info") for n in notices), key=lambda s: _RANK.get(s, 0))


def _text(notices: list[dict]) -> str:
    """The plain-text body: each alarm with its condition, times and recent values."""
    out = []
    for n in notices:
        word = "STILL FIRING" if n["notice"] == "reminder" else n["notice"].upper()
        out.append(f"{word}  {n['alarm']}  ({n['severity']})")
        out.append(f"  {n['message']}")
        out.append(f"  condition: {n['condition']}")
        out.append(f"  {n['state']} since {n['since']}")
        if n.get("recent"):
            out.append("  recent values (UTC):")
            out.extend(f"    {t}  {v:.6g} {n.get('unit') or ''}".rstrip() for t, v in n["recent"])
        out.append("")
    out.append("-- ionlab alarms (acknowledge or silence on the dashboard or with "
               "`ionlab alarms ack NAME`)")
    return "\n".join(out) + "\n"


class Email(Transport):
    """One e-mail per message, to every address, over SMTP (STARTTLS and login optional)."""

    kind = "email"

    def __init__(self, url: str, sender: str, to: list[str], starttls: bool = False,
                 password: str | None = None, ca_file: str | None = None):
        parts = urlsplit(url)
        self.context = ssl.create_default_context(cafile=ca_file)
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname or ""
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self._password = password if password is not None else (
            unquote(parts.password) if parts.password else None)
        self.sender, self.to, self.starttls = sender, list(to), starttls
        self.target = f"{redact(url)} -> {', '.join(self.to)}"

    def __repr__(self):
        return f"<Email {self.target}>"

    def message(self, notices: list[dict]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[ionlab {_severity(notices).upper()}] {summary(notices)}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg.set_content(_text(notices))
        return msg

    def send(self, notices: list[dict], timeout_s: float) -> None:
        msg = self.message(notices)
        where = f"SMTP {self.host}:{self.port}"
        try:
            if self.tls:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=timeout_s,
                                        context=self.context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=timeout_s)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=self.context)
                if self.user:
                    self._login(smtp)
                refused = smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where}: login as {self.user} refused ({exc.smtp_code} "
                                f"{_text_of(exc.smtp_error)}): check the channel's user and "
                                f"password, then restart", permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"{where}: its TLS certificate is not trusted "
                                f"({exc.verify_message}); give its CA as ca_file") from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"{where}: {_reason(exc)}") from None
        if refused:
            log.warning("%s: refused recipients: %s", self.target, ", ".join(refused))


    def _login(self, smtp: smtplib.SMTP) -> None:
        """Log in with one mechanism (PLAIN, else LOGIN): smtplib's `login` would try the
        next after a refusal, counting a wrong password twice against a lockout."""
        smtp.ehlo_or_helo_if_needed()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:  # smtplib says what is missing, or finds another way
            smtp.login(self.user, self._password or "")
            return
        smtp.user, smtp.password = self.user, self._password or ""
        smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))


class Webhook(Transport):
    """A JSON POST per message: ionlab's own body, or Slack/Mattermost's (`slack`)."""

    kind = "webhook"

    def __init__(self, url: str, fmt: str = "json"):
        self.url, self.format = url, fmt
        parts = urlsplit(url)
        self.target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/… ({fmt})"

    def __repr__(self):
        return f"<Webhook {self.target}>"

    def body(self, notices: list[dict]) -> dict:
        if self.format == "slack":
            return {"text": f"*{summary(notices)}*", "attachments": [{
                "color": _COLORS.get(n["severity"], "#59636e"),
                "title": f"{'STILL FIRING' if n['notice'] == 'reminder' else n['notice'].upper()}"
                         f" {n['alarm']} ({n['severity']})",
                "text": f"{n['message']}\n{n['condition']}, {n['state']} since {n['since']}",
                "fields": [{"title": "value", "value": f"{n['value']:.6g} {n.get('unit') or ''}",
                            "short": True}] if n.get("value") is not None else [],
                "fallback": f"{n['alarm']}: {n['message']}",
            } for n in notices]}
        return {"source": "ionlab", "summary": summary(notices), "severity": _severity(notices),
                "alarms": notices}

    def send(self, notices: list[dict], timeout_s: float) -> None:
        data = json.dumps(self.body(notices), allow_nan=False).encode()
        request = urllib.request.Request(self.url, data, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "ionlab-alarms"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read(MAX_RESPONSE)
        except urllib.error.HTTPError as exc:
            excerpt = exc.read(200).decode("utf-8", "replace").strip()
            raise DeliveryError(f"webhook {self.target}: HTTP {exc.code} {excerpt}".rstrip()) \
                from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DeliveryError(f"webhook {self.target}: "
                                f"{_reason(getattr(exc, 'reason', exc))}") from None


def _text_of(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _reason(exc) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def parse_channels(config: Config, environ=os.environ) -> dict[str, tuple[ChannelSettings,
                                                                          list[Transport]]]:
    """Every ``[notify.NAME]``: its pacing and its transports, checked."""
    table = config.section("notify")
    out = {}
    for name in table.data:
        sec = table.section(name)
        if not name or "/" in name:
            raise table.error(name, "a channel name without '/'")
        sec.check_keys(_KEYS)
        transports: list[Transport] = []
        if "email" in sec.data:
            transports.append(_email(sec, environ))
        elif any(k in sec.data for k in ("smtp", "from", "starttls", "password_env", "ca_file")):
            raise sec.error("email", "missing: smtp, from and the like need `email` (the "
                            "addresses to write to)")
        if "webhook" in sec.data:
            transports.append(_webhook(sec))
        elif "format" in sec.data:
            raise sec.error("format", "only for a `webhook`")
        if not transports:
            raise sec.error("email", "missing; a channel needs `email` (with `smtp`) or "
                            "`webhook`")
        retry_max = sec.positive("retry_max_s", ChannelSettings.retry_max_s)
        burst = sec.get("burst", int, ChannelSettings.burst)
        queue = sec.get("queue", int, ChannelSettings.queue)
        if burst < 1 or queue < 1:
            raise sec.error("burst" if burst < 1 else "queue", "expected an integer >= 1")
        group = sec.get("group_s", float, ChannelSettings.group_s)
        if group < 0:
            raise sec.error("group_s", f"expected seconds >= 0, got {group!r}")
        settings = ChannelSettings(
            timeout_s=sec.positive("timeout_s", ChannelSettings.timeout_s), group_s=group,
            max_per_hour=sec.positive("max_per_hour", ChannelSettings.max_per_hour),
            burst=burst, retry_min_s=min(1.0, retry_max), retry_max_s=retry_max, queue=queue)
        out[name] = (settings, transports)
    return out


def _addresses(sec: Section) -> list[str]:
    value = sec.data["email"]
    addresses = [value] if isinstance(value, str) else value
    if not isinstance(addresses, list) or not addresses or not all(
            isinstance(a, str) and "@" in a and a.strip() == a and "," not in a
            for a in addresses):
        raise sec.error("email", f"expected an address or an array of addresses "
                        f"(name@host), got {value!r}")
    return addresses


def _email(sec: Section, environ) -> Email:
    to = _addresses(sec)
    url = sec.get("smtp", str)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname or port == -1 \
            or parts.path not in ("", "/"):
        raise sec.error("smtp", f"expected smtp://[user:password@]host[:port] or "
                        f"smtps://..., got {redact(url)!r}")
    starttls = sec.get("starttls", bool, False)
    if starttls and parts.scheme == "smtps":
        raise sec.error("starttls", "smtps:// is TLS from the start; STARTTLS is for smtp://")
    password = None
    variable = sec.get("password_env", str, None)
    if variable is not None:
        if not parts.username:
            raise sec.error("password_env", "needs a user in the smtp URL (smtp://user@host)")
        password = environ.get(variable)
        if password is None:
            raise sec.error("password_env", f"the environment variable {variable} is not set")
    sender = sec.get("from", str, f"ionlab@{socket.gethostname()}")
    if "@" not in sender:
        raise sec.error("from", f"expected an address (name@host), got {sender!r}")
    ca_file = sec.get("ca_file", str, None)
    if ca_file is not None:
        if not (starttls or parts.scheme == "smtps"):
            raise sec.error("ca_file", "only for TLS: smtps://, or smtp:// with starttls = true")
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise sec.error("ca_file", f"expected a PEM file of certificates, cannot use "
                            f"{ca_file!r} ({exc.strerror or exc})") from None
    return Email(url, sender, to, starttls, password, ca_file)


def _webhook(sec: Section) -> Webhook:
    url = sec.get("webhook", str)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise sec.error("webhook", "expected an http:// or https:// URL")
    fmt = sec.get("format", str, "json")
    if fmt not in ("json", "slack", "mattermost"):
        raise sec.error("format", f"expected json, or slack (Slack and Mattermost), got {fmt!r}")
    return Webhook(url, "slack" if fmt == "mattermost" else fmt)

"""Real receivers for notifications: an aiosmtpd SMTP server and a Tornado webhook app,
each on 127.0.0.1 on a free port, in its own thread, keeping what arrived; TLS
certificates for the server made by the openssl command."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import require


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """An aiosmtpd server; `messages` holds (envelope recipients, parsed message, whether it
    came over TLS). With `tls` (a server SSLContext) it offers STARTTLS and takes a login
    and mail only after it, or (`smtps`) speaks TLS from the start; `attempts` counts the
    logins tried."""

    def __init__(self, port: int | None = None, login: tuple[str, str] | None = None,
                 tls: ssl.SSLContext | None = None, smtps: bool = False):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.over_tls: list[bool] = []
        self.logins: list[str] = []
        self.attempts = 0
        self.port = port or free_port()
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                mailbox.messages.append((list(envelope.rcpt_tos), message))
                mailbox.over_tls.append(server.transport.get_extra_info("ssl_object") is not None)
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            self.attempts += 1
            ok = isinstance(auth_data, LoginPassword) and login is not None and \
                (auth_data.login.decode(), auth_data.password.decode()) == login
            if ok:
                self.logins.append(auth_data.login.decode())
            return AuthResult(success=ok, handled=False)  # a failure answers 535

        options = {"authenticator": authenticate, "auth_require_tls": tls is not None and not smtps,
                   "auth_required": True} if login else {}
        if tls is not None and not smtps:
            options.update(tls_context=tls, require_starttls=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     ssl_context=tls if smtps else None, **options)

    def start(self) -> Mailbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def bodies(self) -> list[str]:
        return [m.get_content() for _, m in self.messages]


class Receiver:
    """A Tornado app taking webhook POSTs; `hang` makes it never answer, `status` fail."""

    def __init__(self):
        self.port = free_port()
        self.posts: list[tuple[float, dict]] = []
        self.hang = False
        self.status = 200
        self.loop = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="webhook-receiver")

    def _run(self):
        import tornado.web

        receiver = self

        class Hook(tornado.web.RequestHandler):
            async def post(self):
                if receiver.hang:
                    await asyncio.sleep(3600)
                receiver.posts.append((time.monotonic(), json.loads(self.request.body)))
                self.set_status(receiver.status)
                self.finish("ok")

        async def main():
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            app = tornado.web.Application([(r"/hook", Hook)])
            server = app.listen(self.port, address="127.0.0.1")
            self._ready.set()
            await self._stop.wait()
            server.stop()

        asyncio.run(main())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def bodies(self) -> list[dict]:
        return [body for _, body in self.posts]


class Certificates:
    """A CA and a certificate it signed for 127.0.0.1, and a self-signed one, in `folder`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ca = folder / "ca.pem"
        self._openssl("req", "-x509", "-new", "-key", self._key("ca"), "-out", self.ca,
                      "-days", "2", "-subj", "/CN=ionlab test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._openssl("req", "-new", "-key", self._key("server"), "-out", folder / "server.csr",
                      "-subj", "/CN=127.0.0.1")
        (folder / "server.ext").write_text("subjectAltName = IP:127.0.0.1\n"
                                           "extendedKeyUsage = serverAuth\n")
        self._openssl("x509", "-req", "-in", folder / "server.csr", "-CA", self.ca,
                      "-CAkey", folder / "ca.key", "-CAcreateserial", "-days", "2",
                      "-extfile", folder / "server.ext", "-out", folder / "server.pem")
        self._openssl("req", "-x509", "-new", "-key", self._key("self"), "-days", "2",
                      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                      "-out", folder / "self.pem")

    def _key(self, name: str) -> Path:
        key = self.folder / f"{name}.key"
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", key)
        return key

    @staticmethod
    def _openssl(*args) -> None:
        done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
        assert done.returncode == 0, f"openssl {args[0]} failed: {done.stderr}"

    def server_context(self, name: str = "server") -> ssl.SSLContext:
        """What the SMTP server presents: `server` (signed by the CA) or `self` (self-signed)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        return context


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    require(shutil.which("openssl") is not None, "the openssl command",
            "Install it (apt-get install openssl).")
    return Certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def mailbox():
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()

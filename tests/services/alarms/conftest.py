"""Real receivers for notifications: an aiosmtpd SMTP server and a Tornado webhook app,
each on 127.0.0.1 on a free port, in its own thread, keeping what arrived."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    """Poll until `predicate()` is truthy (returned); fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for "
                        f"{what() if callable(what) else what}")
        time.sleep(0.02)


class Mailbox:
    """An aiosmtpd server; `messages` holds (envelope recipients, parsed message)."""

    def __init__(self, port: int | None = None, login: tuple[str, str] | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.logins: list[str] = []
        self.port = port or free_port()
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                mailbox.messages.append((list(envelope.rcpt_tos), message))
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and login is not None and \
                (auth_data.login.decode(), auth_data.password.decode()) == login
            if ok:
                self.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        options = {"authenticator": authenticate, "auth_require_tls": False,
                   "auth_required": True} if login else {}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     server_kwargs=options)

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

"""The Python client against a real server: every method it offers, and the same exception
for the same failure whether it is used sync or async."""

import asyncio
import http.server
import socket
import threading

import pytest

from services.config import load
from services.wavemeter.client import AsyncWavemeter, HttpError, RpcError, Unreachable, Wavemeter
from services.wavemeter.lock_api import LockService
from services.wavemeter.service import WavemeterService
from services.web.rpc import METHOD_NOT_FOUND, UNAUTHORIZED

#: every method the wavemeter and lock services offer, and the built-in list
SERVER_METHODS = {
    "channels", "channel", "frequency", "wavelength", "wavemeter_status", "set_exposure",
    "set_auto_exposure", "set_signal_state", "set_name", "update_channel", "start_measurement",
    "stop_measurement", "set_switcher_mode", "frequency_fresh", "exposure", "auto_exposure",
    "signal_state", "switcher_mode", "lock", "unlock", "lock_status", "locks", "set_lock",
    "set_lock_setpoint", "methods"}


@pytest.fixture
def lab(server_thread, tmp_path):
    """The demo lab's wavemeter and locks (pure-Python simulation) on a real server."""
    config = load(None)

    def services(hub):
        wavemeter = WavemeterService(config, hub)
        return [wavemeter, LockService(config, hub, wavemeter, state_file=tmp_path / "l.json")]

    srv = server_thread(services)
    channels = srv.services[0].acquisition.channels
    srv.wait_for(lambda: len(channels) == 8 and all(c.status.value == "ok"
                                                    for c in channels.values()),
                 what="a reading of every channel")
    return srv


def both(api, url, method, *args, **client):
    """What `method(*args)` gives (or raises) from the sync and from the async client."""

    def outcome(call):
        try:
            return "result", call()
        except Exception as exc:  # noqa: BLE001 - the exception is what is compared
            return type(exc), vars(exc), str(exc)

    sync = outcome(lambda: getattr(Wavemeter(url, **client), method)(*args))

    async def use_async():
        return await getattr(AsyncWavemeter(url, **client), method)(*args)

    async_ = outcome(lambda: api.in_thread(asyncio.run, use_async()))
    return sync, async_


def test_every_server_method_is_a_method_of_the_client(lab, api):
    client = Wavemeter(lab.url, token=api.token)
    listed = {m["name"] for m in client.methods()}
    assert listed == SERVER_METHODS
    for name in listed:
        assert callable(getattr(client, name)) and getattr(client, name).__name__ == name
    assert [s["channel"] for s in client.locks()] == list(range(1, 9))
    assert client.lock_status(3)["state"] == "unlocked"
    assert client.set_name(3, "854 quench laser")["name"] == "854 quench laser"
    assert client.channel(channel=3)["name"] == "854 quench laser"
    lab.wait_for(lambda: lab.services[1].controllers[6].frequency_thz is not None,
                 what="a reading of channel 6")
    setpoint = client.lock_status(6)["frequency_thz"] + 5e-6
    assert client.lock(6, setpoint)["state"] == "locked"
    assert client.unlock(6)["reason"] == "unlocked on request"
    with pytest.raises(RpcError) as info:
        client.frequncy(3)
    assert info.value.code == METHOD_NOT_FOUND
    assert "did you mean 'frequency'?" in info.value.message


def test_sync_and_async_clients_answer_alike(lab, api):
    for method, args in [("frequency", (3,)), ("lock_status", (2,)), ("methods", ())]:
        sync, async_ = both(api, lab.url, method, *args)
        assert sync[0] == async_[0] == "result"
        assert type(sync[1]) is type(async_[1])
    sync, async_ = both(api, lab.url, "lock", 2, 400.0)
    assert sync == async_ and sync[0] is RpcError and sync[1]["code"] == UNAUTHORIZED
    assert "lock needs the lab's write token" in sync[2]
    sync, async_ = both(api, lab.url, "lock", 2, 400.0, token="wrong")
    assert sync == async_ and "the token sent is not this server's write token" in sync[2]
    sync, async_ = both(api, lab.url, "lock_status", 99)
    assert sync == async_ and sync[1]["data"] == {"status": 404, "field": "channel"}


class Proxy(http.server.BaseHTTPRequestHandler):
    """What sits in front of a server that is down: an HTML error page."""

    def do_POST(self):  # noqa: N802 - http.server's name
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body><h1>502 Bad Gateway</h1></body></html>")

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_answer_that_is_not_json_rpc_is_an_http_error_with_status_and_url(lab, api, proxy):
    cases = [
        (proxy, 502, "text/html: '<html><body><h1>502 Bad Gateway</h1></body></html>'"),
        (lab.url + "/wrong/base", 404, "no such resource: /wrong/base/api/v1/rpc"),
    ]
    for url, status, says in cases:
        sync, async_ = both(api, url, "frequency", 3)
        assert sync == async_, url
        assert sync[0] is HttpError
        assert (sync[1]["status"], sync[1]["url"]) == (status, url + "/api/v1/rpc")
        assert says in sync[2]
    sync, async_ = both(api, lab.url, "set_name", 3, "x" * (2 << 20))  # over the body limit
    assert sync == async_ and sync[0] is HttpError and sync[1]["status"] == 413


@pytest.fixture
def silent():
    """A server that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_no_answer_is_the_same_unreachable_error_sync_and_async(api, silent):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for url, reason, timeout in [
        (refused, "connection refused", 10.0),
        ("http://no-such-host.invalid:8888", "unknown host", 10.0),
        (silent, "no answer (timed out)", 0.5),
    ]:
        sync, async_ = both(api, url, "channels", timeout=timeout)
        assert sync == async_, url
        assert sync[0] is Unreachable and issubclass(Unreachable, ConnectionError)
        assert sync[2].startswith(f"cannot reach the server at {url}: {reason}")

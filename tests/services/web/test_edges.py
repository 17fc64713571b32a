"""The server's edge on a real socket: Host names, NUL, body size, methods, connection limits,
timeouts, and a 500 that names its request id in the log."""

import gzip
import json
import logging
import re
import socket
import urllib.request

import pytest

from services.config import ConfigError, parse
from services.web.app import ServerConfig
from services.web.dashboard import STATIC_DIR, Dashboard
from services.web.http import JsonHandler
from services.web.rpc import Method
from services.web.sse import StreamQuota
from tests.waiting import wait_until


def no_services(hub):
    hub.declare("vacuum/chamber")
    return []


class BrokenHandler(JsonHandler):
    def get(self):
        raise RuntimeError("the handler's own bug")


class Broken:
    """A service with a bug on its HTTP route and in its RPC method."""

    name = "broken"

    async def start(self):
        pass

    async def stop(self):
        pass

    def routes(self):
        return [(r"/api/v1/broken", BrokenHandler)]

    def explode(self) -> int:
        raise ZeroDivisionError("the method's own bug")

    def rpc_methods(self):
        return {"explode": Method(self.explode)}

    def health(self):
        return {"ok": True}


def connect(port, source="127.0.0.1"):
    """A socket to the server from `source` (any 127.x address is this machine's)."""
    return socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))


def half_open(port, source="127.0.0.1"):
    """A connection that has sent part of a request's headers and never sends the rest."""
    sock = connect(port, source)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return sock


def answer(sock) -> tuple[int, dict, bytes]:
    """(status, headers, body) of the one response a closing connection sends."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:  # the answer came first; then the server closed
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def others(srv, api) -> int:
    """The connections open besides the one that asks (from /healthz)."""
    return api.http("GET", srv.url + "/healthz")[1]["server"]["connections"] - 1


@pytest.fixture
def edge(server_thread):
    """start(make_services=no_services, **server): a server with these [server] settings."""

    def start(make_services=no_services, **server):
        return server_thread(make_services, **server)

    return start


# -- Host names (DNS rebinding) -----------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1", "127.0.0.1:{port}",
                                  "[::1]:8888", "LocalHost.", "wavemeter.lab.example",
                                  "a.lab.test:80"])
def test_the_servers_own_names_and_configured_ones_are_served(edge, api, host):
    srv = edge(allowed_hosts=("wavemeter.lab.example", "*.lab.test"))
    status, body, _ = api.http("GET", srv.url + "/healthz",
                               headers={"Host": host.format(port=srv.port)})
    assert status == 200 and body["ok"] is True


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "lab.test",
                                  "wavemeter.lab.example.evil.example", "10.1.2.3", "[fe80::1]"])
def test_a_foreign_host_name_is_refused_with_421(edge, api, host):
    srv = edge(allowed_hosts=("wavemeter.lab.example", "*.lab.test"))
    status, body, headers = api.http("GET", srv.url + "/api/v1/stream",
                                     headers={"Host": host.format(port=srv.port)})
    assert (status, body["field"]) == (421, "Host")
    assert "does not answer for the host" in body["error"] and "allowed_hosts" in body["error"]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert srv.hub.subscriber_count == 0


def test_a_host_header_that_is_not_utf8_or_missing_is_a_json_400_but_http_1_0_needs_none(edge):
    srv = edge()
    sock = connect(srv.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: \xff\xfe.example\r\n\r\n")
    status, _, body = answer(sock)
    assert status == 400
    assert json.loads(body)["error"] == "malformed request: Invalid Host header: '\xff\xfe.example'"
    sock = connect(srv.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")  # HTTP/1.1 must name its host
    status, _, body = answer(sock)
    assert (status, json.loads(body)["error"]) == (400, "malformed request: Missing Host header")
    sock = connect(srv.port)
    sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")  # HTTP/1.0: no Host, no browser
    status, _, body = answer(sock)
    assert status == 200 and json.loads(body)["ok"] is True


@pytest.mark.parametrize("request_bytes", [
    b"G\x00T /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon in this line\r\n\r\n",
    b"\xff\xfe\x00garbage\r\n\r\n",
    b"GET /healthz HTTP/7\r\nHost: 127.0.0.1\r\n\r\n",
])
def test_a_request_that_is_not_http_gets_a_json_400_and_the_server_goes_on(edge, api,
                                                                           request_bytes):
    srv = edge()
    sock = connect(srv.port)
    sock.sendall(request_bytes)
    status, headers, body = answer(sock)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"].startswith("malformed request: the request line or a "
                                                "header line cannot be parsed as HTTP/1.1")
    assert api.http("GET", srv.url + "/healthz")[0] == 200


# -- malformed targets, bodies, methods ----------------------------------------------------


@pytest.mark.parametrize("target", ["/healthz%00", "/static/index.html%00.js",
                                    "/api/v1/stream?channels=vacuum%00"])
def test_a_nul_in_the_target_is_a_400(edge, target):
    srv = edge(lambda hub: [*no_services(hub), Dashboard()])
    sock = connect(srv.port)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status, headers, body = answer(sock)
    assert status == 400 and json.loads(body)["error"] == "the request target contains a NUL byte"


def test_a_body_over_a_mebibyte_is_a_413_with_a_json_body_not_a_reset(edge, api):
    srv = edge()
    status, body, _ = api.http("POST", srv.url + "/api/v1/rpc", raw=b"[" * (2 << 20))
    assert status == 413
    assert body == {"error": "the request body is larger than this resource takes (1048576 "
                    "bytes)", "field": None}
    status, body, _ = api.http("POST", srv.url + "/api/v1/rpc", raw=b" " * (1 << 20))
    assert status == 200 and body["error"]["code"] == -32700  # at the limit: read and parsed


def test_a_chunked_body_over_the_limit_is_a_413_too(edge):
    srv = edge()
    sock = connect(srv.port)
    sock.sendall(b"POST /api/v1/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    for _ in range(17):  # 17 x 64 KiB: just over 1 MiB, and no end
        sock.sendall(chunk)
    status, headers, body = answer(sock)
    assert status == 413 and "larger than this resource takes" in json.loads(body)["error"]


@pytest.mark.parametrize("framing", [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n",
                                     b"-1\r\n\r\n"], ids=["size not hex", "chunk too long",
                                                         "negative size"])
def test_a_chunked_body_that_is_not_http_gets_a_json_400_saying_so(edge, api, framing):
    """After a good request on the same connection, a bad chunked body is named as the
    body's framing, not the head's."""
    srv = edge()
    sock = connect(srv.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head)[1])
    while len(body) < length:
        body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and len(body) == length  # and the connection stays
    sock.sendall(b"POST /api/v1/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + framing)
    status, headers, body = answer(sock)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"].startswith("malformed request body: its chunked framing "
                                                "cannot be parsed")
    sock = connect(srv.port)  # and a bad head on a fresh connection is still the head's
    sock.sendall(b"GET /healthz HTTP/7\r\nHost: 127.0.0.1\r\n\r\n")
    assert json.loads(answer(sock)[2])["error"].startswith("malformed request: the request line")


def test_405_says_which_methods_are_allowed(edge, api):
    srv = edge()
    status, body, headers = api.http("GET", srv.url + "/api/v1/rpc")
    assert (status, headers["Allow"]) == (405, "POST")
    assert body["error"] == "GET is not allowed here; this resource answers POST"
    status, body, headers = api.http("PUT", srv.url + "/healthz", {"x": 1})
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, _, headers = api.http("DELETE", srv.url + "/api/v1/stream")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_head_answers_as_get_without_a_body_and_without_streaming(edge, api):
    srv = edge()
    for path in ("/healthz", "/api/v1/stream?channels=vacuum/*", "/api/v1/nothing"):
        request = urllib.request.Request(srv.url + path, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        get_status, _, get_headers = api.http("GET", srv.url + path) if "stream" not in path \
            else (200, None, {"Content-Type": "text/event-stream; charset=utf-8"})
        assert (status, body) == (get_status, b"")
        assert headers["Content-Type"] == get_headers["Content-Type"]
    assert srv.hub.subscriber_count == 0


def test_unknown_things_are_consistent_json_404s(edge, api):
    srv = edge(lambda hub: [*no_services(hub), Dashboard()])
    for path in ("/api/v1/nothing", "/static/nothing.js", "/nothing", "/static/vendor/x.css"):
        status, body, headers = api.http("GET", srv.url + path)
        assert status == 404, path
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert body == {"error": f"no such resource: {path}", "field": None}


def test_static_assets_are_gzipped_and_the_api_and_streams_are_not(edge):
    srv = edge(lambda hub: [*no_services(hub), Dashboard()])

    def get(path):
        request = urllib.request.Request(srv.url + path, headers={"Accept-Encoding": "gzip"})
        return urllib.request.urlopen(request, timeout=30)

    with get("/static/app.js") as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(response.read()) == (STATIC_DIR / "app.js").read_bytes()
    with get("/") as response:
        assert response.headers["Content-Encoding"] == "gzip"
    with get("/healthz") as response:
        assert "Content-Encoding" not in response.headers
    response = get("/api/v1/stream")
    assert "Content-Encoding" not in response.headers
    response.close()


# -- a 500 that still happens ------------------------------------------------------------


def test_a_500_is_json_with_a_request_id_that_the_log_line_names(edge, api, caplog):
    srv = edge(lambda hub: [Broken()])
    with caplog.at_level(logging.ERROR):
        status, body, headers = api.http("GET", srv.url + "/api/v1/broken?token=secret")
    assert status == 500 and body["request_id"] == headers["X-Request-ID"]
    assert body["error"] == (f"internal error: the server log has the details under request id "
                             f"{body['request_id']}")
    lines = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        f"request {body['request_id']}: GET /api/v1/broken failed"]
    assert "the handler's own bug" in caplog.text  # the traceback is in the log ...
    assert "the handler's own bug" not in json.dumps(body)  # ... not in the answer
    assert "secret" not in caplog.text  # the query (which may hold one) is never logged

    caplog.clear()
    with caplog.at_level(logging.ERROR):
        error = api.rpc(srv.url, "explode")["error"]
    assert error["code"] == -32603
    request_id = error["data"]["request_id"]
    assert f"request {request_id}: RPC method 'explode' failed" in caplog.text


# -- connections: how many, from whom, for how long ----------------------------------------


def test_connections_beyond_the_limit_get_a_json_503_and_are_closed(edge, api):
    srv = edge(max_connections=8)
    # No other connection meanwhile: the server takes them in the order they came.
    held = [half_open(srv.port) for _ in range(8)]
    sock = connect(srv.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, headers, body = answer(sock)
    assert (status, headers["Retry-After"], headers["Connection"]) == (503, "5", "close")
    assert json.loads(body)["error"] == ("the server is at its limit of 8 connections; try "
                                         "again shortly")
    for sock in held:  # the eight were taken: no answer, no close
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
    held.pop().close()
    health = {}

    def served():
        status, body, _ = api.http("GET", srv.url + "/healthz")
        health.update(body)
        return status == 200

    wait_until(served, what="a free slot", timeout=30)
    assert health["server"]["refused"] >= 1
    for sock in held:
        sock.close()


def test_one_address_cannot_take_the_connections_of_the_others(edge, api):
    srv = edge(connections_per_client=5)
    held = [half_open(srv.port, "127.0.0.2") for _ in range(5)]
    assert others(srv, api) == 5
    sock = half_open(srv.port, "127.0.0.2")
    status, _, body = answer(sock)
    assert status == 429
    assert json.loads(body)["error"] == ("too many connections from 127.0.0.2 (at most 5 per "
                                         "client); close some and try again")
    assert api.http("GET", srv.url + "/healthz")[0] == 200  # 127.0.0.1 gets in
    for sock in held:
        sock.close()


def test_a_request_whose_headers_never_end_is_dropped_at_the_header_timeout(edge, api):
    srv = edge(header_timeout_s=0.2)
    sock = half_open(srv.port)
    assert sock.recv(1024) == b""  # the server closed it (the socket waits up to 30 s)
    wait_until(lambda: others(srv, api) == 0, what="the connection to go", timeout=30)


def test_a_body_that_stops_coming_is_dropped_at_the_body_timeout(edge, api):
    srv = edge(body_timeout_s=0.2)
    sock = connect(srv.port)
    sock.sendall(b"POST /api/v1/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
                 b'{"jsonrpc"')
    assert sock.recv(1024) == b""
    wait_until(lambda: others(srv, api) == 0, what="the connection to go", timeout=30)


def test_stream_quota_leaves_the_last_streams_to_local_clients():
    quota = StreamQuota(limit=6, per_client=10, local_reserve=2)
    for n in range(4):
        quota.acquire(f"10.0.0.{n}")
    with pytest.raises(Exception, match="HTTP 503"):
        quota.acquire("10.0.0.9")  # remote clients stop two short of the limit ...
    quota.acquire("127.0.0.1")
    quota.acquire("::1")  # ... which local ones may still use
    with pytest.raises(Exception, match="HTTP 503"):
        quota.acquire("127.0.0.1")
    for n in range(3):
        quota.release(f"10.0.0.{n}")
    quota.acquire("10.0.0.9")  # 3 + 1 remote, 2 local: the reserve is still free for local
    assert quota.count == 4


def test_server_config_reads_the_limits_and_names_bad_ones():
    cfg = parse("[server]\nallowed_hosts = ['lab.example']\nmax_connections = 500\n"
                "connections_per_client = 20\nstreams_per_client = 4\nheader_timeout_s = 5\n"
                "body_timeout_s = 7\n", "lab.toml")
    server = ServerConfig.from_config(cfg, environ={"IONLAB_TOKEN": "tok"})
    assert (server.allowed_hosts, server.max_connections, server.connections_per_client,
            server.streams_per_client, server.header_timeout_s, server.body_timeout_s) == (
        ("lab.example",), 500, 20, 4, 5.0, 7.0)
    assert "tok" not in repr(server)
    for text, message in [
        ("allowed_hosts = [1]", "server.allowed_hosts: expected an array of host names"),
        ("streams_per_client = 0", "server.streams_per_client: expected an integer >= 1"),
        ("header_timeout_s = -1", "server.header_timeout_s: expected a number > 0"),
        ("max_connections = 'many'", "server.max_connections: expected an integer"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ServerConfig.from_config(parse(f"[server]\n{text}\n", "lab.toml"), environ={})

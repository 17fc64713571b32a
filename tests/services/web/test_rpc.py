"""JSON-RPC 2.0 over HTTP and the application frame: batches, notifications, error codes, tokens."""

import pytest

from services.config import ConfigError, parse
from services.web.app import ServerConfig, make_app
from services.web.http import ApiError
from services.web.hub import Hub
from services.web.rpc import Method


class Counter:
    """A small service: a counter that anyone reads and only the token holder changes."""

    name = "counter"

    def __init__(self):
        self.value = 0
        self.calls = []

    async def start(self):
        pass

    async def stop(self):
        pass

    def routes(self):
        return []

    def health(self):
        return {"ok": self.value >= 0, "value": self.value}

    def get(self) -> int:
        """The counter."""
        return self.value

    async def add(self, n: int, note: str = "") -> int:
        """Add n."""
        if n > 1000:
            raise ApiError(400, f"n: at most 1000, got {n}", "n")
        self.calls.append((n, note))
        self.value += n
        return self.value

    def scale(self, factor: float) -> float:
        return self.value * factor

    def fail(self) -> None:
        raise RuntimeError("boom")

    def rpc_methods(self):
        return {"get": Method(self.get), "add": Method(self.add, needs_token=True),
                "scale": Method(self.scale), "fail": Method(self.fail)}


@pytest.fixture
def counter(server_thread):
    srv = server_thread(lambda hub: [Counter()])
    return srv, srv.services[0]


def test_positional_and_named_params(counter, api):
    srv, svc = counter
    assert api.rpc(srv.url, "add", [2], token=api.token) == {"jsonrpc": "2.0", "result": 2, "id": 1}
    assert api.rpc(srv.url, "add", {"n": 3, "note": "x"}, id_="a", token=api.token)["result"] == 5
    assert api.rpc(srv.url, "scale", [1], id_=None)["result"] == 5.0  # int accepted as float
    assert svc.calls == [(2, ""), (3, "x")]


def test_batch_with_notifications_and_errors_answers_in_order(counter, api):
    srv, svc = counter
    batch = [
        {"jsonrpc": "2.0", "method": "add", "params": [1], "id": 1},
        {"jsonrpc": "2.0", "method": "add", "params": [10]},  # notification: runs, no answer
        {"jsonrpc": "2.0", "method": "nope", "id": 2},
        {"jsonrpc": "2.0", "method": "get", "id": 3},
        5,
    ]
    status, answers, _ = api.http("POST", srv.url + "/api/v1/rpc", batch, token=api.token)
    assert status == 200
    assert [a["id"] for a in answers] == [1, 2, 3, None]
    assert answers[0]["result"] == 1
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["result"] == 11
    assert answers[3]["error"]["code"] == -32600


def test_only_notifications_get_204_and_no_body(counter, api):
    srv, svc = counter
    status, body, _ = api.http("POST", srv.url + "/api/v1/rpc",
                               [{"jsonrpc": "2.0", "method": "add", "params": [4]}],
                               token=api.token)
    assert (status, body, svc.value) == (204, None, 4)


@pytest.mark.parametrize("raw, code", [
    (b'{"jsonrpc": "2.0", "method": "get", "id": 1', -32700),
    (b"\xff\xfe", -32700),
    (b"[]", -32600),
    (b'{"jsonrpc": "1.0", "method": "get", "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": 5, "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": "get", "params": "x", "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": "get", "id": [1]}', -32600),
    (b'{"jsonrpc": "2.0", "method": "missing", "id": 1}', -32601),
    (b'{"jsonrpc": "2.0", "method": "scale", "params": ["2"], "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "scale", "params": [true], "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "scale", "params": [], "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "scale", "params": [1, 2], "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "scale", "params": {"f": 1}, "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "fail", "id": 1}', -32603),
])
def test_standard_error_codes(counter, api, raw, code):
    srv, svc = counter
    status, answer, _ = api.http("POST", srv.url + "/api/v1/rpc", raw=raw)
    assert status == 200
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code, answer
    assert answer["error"]["message"]


def test_invalid_params_name_the_field(counter, api):
    srv, svc = counter
    answer = api.rpc(srv.url, "scale", {"factor": "big"})
    assert answer["error"]["data"] == {"field": "factor"}
    assert "factor: expected a number" in answer["error"]["message"]
    answer = api.rpc(srv.url, "add", [5000], token=api.token)  # the method's own ApiError
    assert answer["error"] == {"code": -32602, "message": "n: at most 1000, got 5000",
                               "data": {"status": 400, "field": "n"}}
    assert svc.value == 0


@pytest.mark.parametrize("token", [None, "wrong", "s3cret-token-but-longer", ""])
def test_write_methods_need_the_token_and_change_nothing_without(counter, api, token):
    srv, svc = counter
    answer = api.rpc(srv.url, "add", [1], token=token)
    assert answer["error"]["code"] == -32001
    assert "token" in answer["error"]["message"]
    assert svc.value == 0 and svc.calls == []
    assert api.rpc(srv.url, "get")["result"] == 0  # reads are open


def test_methods_lists_the_table(counter, api):
    srv, _ = counter
    table = {m["name"]: m for m in api.rpc(srv.url, "methods")["result"]}
    assert table["add"] == {"name": "add", "needs_token": True, "doc": "Add n.",
                            "params": [{"name": "n", "type": "int"},
                                       {"name": "note", "type": "str", "default": ""}]}
    assert table["get"]["needs_token"] is False


def test_healthz_and_unknown_paths_are_json(counter, api):
    srv, svc = counter
    status, health, _ = api.http("GET", srv.url + "/healthz")
    assert (status, health["ok"], health["services"]) == (
        200, True, {"counter": {"ok": True, "value": 0}})
    assert health["server"]["connections"] == 1 and health["server"]["streams"] == 0
    srv.call(lambda: setattr(svc, "value", -1))
    status, health, _ = api.http("GET", srv.url + "/healthz")
    assert (status, health["ok"], health["services"]) == (
        503, False, {"counter": {"ok": False, "value": -1}})
    status, body, _ = api.http("GET", srv.url + "/api/v1/nothing")
    assert (status, body) == (404, {"error": "no such resource: /api/v1/nothing", "field": None})


def test_a_method_offered_twice_is_refused():
    with pytest.raises(ValueError, match="RPC method 'get' is offered twice"):
        make_app([Counter(), Counter()], Hub(), None)


def test_a_method_needs_typed_parameters():
    def untyped(x):
        return x

    with pytest.raises(TypeError, match="parameter 'x' needs an annotation"):
        Method(untyped)


def test_server_config_names_file_and_key():
    cfg = parse("[server]\nport = 70000\n", "lab.toml")
    with pytest.raises(ConfigError, match="lab.toml: server.port: expected a TCP port"):
        ServerConfig.from_config(cfg, environ={})
    cfg = parse("[server]\nprot = 1\n", "lab.toml")
    with pytest.raises(ConfigError, match="lab.toml: server.prot: unknown key"):
        ServerConfig.from_config(cfg, environ={})
    cfg = parse("[server]\ntoken = 'from-file'\nheartbeat_s = 5\n", "lab.toml")
    assert ServerConfig.from_config(cfg, environ={}).token == "from-file"
    assert ServerConfig.from_config(cfg, environ={"IONLAB_TOKEN": "env"}).token == "env"
    assert ServerConfig.from_config(cfg, environ={}).heartbeat_s == 5.0

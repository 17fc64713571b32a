"""The examples of the JSON-RPC 2.0 specification (section 7), each sent as written and its
answer asserted; and the parse errors the specification asks for numbers JSON cannot carry.

Our messages are longer than the specification's ("Method not found"); codes, ids and
results are the specification's. A batch is answered in order (the specification allows
any order), so the assertions compare by id.
"""

import json

import pytest

from services.web.rpc import Method


class Spec:
    """The methods the specification's examples call."""

    name = "spec"

    def __init__(self):
        self.notified = []

    async def start(self):
        pass

    async def stop(self):
        pass

    def routes(self):
        return []

    def health(self):
        return {"ok": True}

    def subtract(self, minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    def sum(self, a: int, b: int, c: int) -> int:
        return a + b + c

    def update(self, a: int, b: int, c: int, d: int, e: int) -> None:
        self.notified.append(("update", [a, b, c, d, e]))

    def notify_hello(self, n: int) -> None:
        self.notified.append(("notify_hello", [n]))

    def notify_sum(self, a: int, b: int, c: int) -> None:
        self.notified.append(("notify_sum", [a, b, c]))

    def get_data(self) -> list:
        return ["hello", 5]

    def rpc_methods(self):
        return {name: Method(getattr(self, name)) for name in (
            "subtract", "sum", "update", "notify_hello", "notify_sum", "get_data")}


@pytest.fixture
def spec(server_thread, api):
    srv = server_thread(lambda hub: [Spec()])

    def send(text: str):
        """(HTTP status, the answer as JSON or None) for a request body as the spec writes it."""
        status, answer, _ = api.http("POST", srv.url + "/api/v1/rpc", raw=text.encode())
        return status, answer

    send.service = srv.services[0]
    return send


def error(code, id_=None):
    """An answer's error, reduced to what the specification fixes (code and id)."""
    return {"jsonrpc": "2.0", "code": code, "id": id_}


def reduced(answer):
    if "error" in answer:
        assert answer["error"]["message"]  # a message is required; its words are ours
        return error(answer["error"]["code"], answer["id"])
    return answer


def by_id(answers):
    return sorted((reduced(a) for a in answers), key=lambda a: json.dumps(a["id"]))


def test_rpc_call_with_positional_parameters(spec):
    assert spec('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}') == (
        200, {"jsonrpc": "2.0", "result": 19, "id": 1})
    assert spec('{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}') == (
        200, {"jsonrpc": "2.0", "result": -19, "id": 2})


def test_rpc_call_with_named_parameters(spec):
    assert spec('{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, '
                '"minuend": 42}, "id": 3}') == (200, {"jsonrpc": "2.0", "result": 19, "id": 3})
    assert spec('{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, '
                '"subtrahend": 23}, "id": 4}') == (200, {"jsonrpc": "2.0", "result": 19, "id": 4})


def test_a_notification(spec):
    assert spec('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}') == (204, None)
    assert spec('{"jsonrpc": "2.0", "method": "foobar"}') == (204, None)
    assert spec.service.notified == [("update", [1, 2, 3, 4, 5])]


def test_rpc_call_of_a_non_existent_method(spec):
    status, answer = spec('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert (status, reduced(answer)) == (200, error(-32601, "1"))


def test_rpc_call_with_invalid_json(spec):
    status, answer = spec('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert (status, reduced(answer)) == (200, error(-32700))


def test_rpc_call_with_an_invalid_request_object(spec):
    status, answer = spec('{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert (status, reduced(answer)) == (200, error(-32600))


def test_rpc_call_batch_with_invalid_json(spec):
    status, answer = spec('[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
                          '\n  {"jsonrpc": "2.0", "method"\n]')
    assert (status, reduced(answer)) == (200, error(-32700))


def test_rpc_call_with_an_empty_array(spec):
    status, answer = spec("[]")
    assert (status, reduced(answer)) == (200, error(-32600))


def test_rpc_call_with_an_invalid_batch_but_not_empty(spec):
    status, answers = spec("[1]")
    assert (status, [reduced(a) for a in answers]) == (200, [error(-32600)])


def test_rpc_call_with_an_invalid_batch(spec):
    status, answers = spec("[1,2,3]")
    assert (status, [reduced(a) for a in answers]) == (200, [error(-32600)] * 3)


def test_rpc_call_batch(spec):
    status, answers = spec("""[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""")
    assert status == 200
    assert by_id(answers) == by_id([
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
    ])
    assert spec.service.notified == [("notify_hello", [7])]


def test_rpc_call_batch_all_notifications(spec):
    assert spec('[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]}, '
                '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]') == (204, None)
    assert spec.service.notified == [("notify_sum", [1, 2, 4]), ("notify_hello", [7])]


@pytest.mark.parametrize("text, says", [
    ('{"jsonrpc": "2.0", "method": "get_data", "id": NaN}', "NaN is not a JSON number"),
    ('{"jsonrpc": "2.0", "method": "get_data", "id": Infinity}', "Infinity is not a JSON number"),
    ('{"jsonrpc": "2.0", "method": "get_data", "id": -Infinity}', "-Infinity is not a JSON"),
    ('{"jsonrpc": "2.0", "method": "get_data", "id": 1e400}', "a number out of range: 1e400"),
    ('{"jsonrpc": "2.0", "method": "sum", "params": [1, 2, 1' + "0" * 400 + '], "id": 1}',
     "a number out of range: 1000"),
    ('{"jsonrpc": "2.0", "method": "sum", "params": ' + "[" * 1000 + "]" * 1000 + ', "id": 1}',
     "nested deeper than 32 levels"),
    ('{"jsonrpc": "2.0", "method": "sum", "params": ' + "[" * 40 + "]" * 40 + ', "id": 1}',
     "nested deeper than 32 levels"),
])
def test_numbers_json_cannot_carry_and_deep_nesting_are_parse_errors(spec, text, says):
    status, answer = spec(text)
    assert (status, reduced(answer)) == (200, error(-32700))
    assert says in answer["error"]["message"]

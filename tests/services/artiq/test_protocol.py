"""The pc_rpc wire, line by line: handshake, both encodings, packed errors and bad input.

Requests are written as sipyco's clients write them (PYON v2 as JSON with
``__jsonclass__`` objects, PYON v1 as Python literals); after each bad input
the server must still answer the others.
"""

import builtins
import json
import threading

import pytest

from tests.waiting import wait_until

from ..conftest import TOKEN
from .wire import INIT, Client, Wire, v1_decode, v2_decode

MIB = 1 << 20


def handshake(lab, target: bytes = b"wavemeter pyon_v2") -> Wire:
    wire = Wire(lab.port)
    wire.send(INIT)
    wire.line()
    wire.send(target + b"\n")
    wire.line()
    return wire


def test_handshake_in_pyon_v2(artiq_lab):
    lab = artiq_lab()
    wire = Wire(lab.port)
    wire.send(INIT)
    identity = wire.line()
    assert identity.endswith(b"\n") and identity.isascii()
    assert json.loads(identity) == {
        "targets": ["chamber", "dac", "locks", "power397", "temperatures", "wavemeter"],
        "description": f"ionlab: {lab.srv.services[0].config.file}", "features": ["pyon_v2"]}
    wire.send(b"dac pyon_v2\n")
    methods = wire.line()
    assert methods.startswith(b'{"__jsonclass__":["set",[[')
    assert v2_decode(methods) == {"ping", "authenticate", "read", "value", "ports", "limits",
                                  "voltage", "set_voltage"}
    wire.send(b'{"action":"call","name":"limits","args":{"__jsonclass__":["tuple",[[2]]]},'
              b'"kwargs":{}}\n')
    assert wire.line() == (b'{"status":"ok","ret":{"__jsonclass__":["tuple",[[0.0,5.0]]]}}\n')
    wire.send(b'{"action": "call", "name": "voltage", "args": {"__jsonclass__": ["tuple", '
              b'[[]]]}, "kwargs": {"port": 1}}\n')
    assert json.loads(wire.line()) == {"status": "ok", "ret": lab.device("dac").voltage(1)}


def test_handshake_in_pyon_v1(artiq_lab):
    lab = artiq_lab()
    wire = Wire(lab.port)
    wire.send(INIT)
    assert json.loads(wire.line())["features"] == ["pyon_v2"]
    wire.send(b"dac\n")  # a client of an ARTIQ release before PYON v2
    methods = wire.line()
    assert b"__jsonclass__" not in methods and methods.startswith(b"{")
    assert v1_decode(methods) == {"ping", "authenticate", "read", "value", "ports", "limits",
                                  "voltage", "set_voltage"}
    wire.send(b'{"action": "call", "name": "limits", "args": (2, ), "kwargs": {}}\n')
    assert wire.line() == b'{"status": "ok", "ret": (0.0, 5.0)}\n'
    wire.send(b'{"action": "call", "name": "read", "args": (), "kwargs": {}}\n')
    readings = v1_decode(wire.line())["ret"]
    assert [r["sensor"] for r in readings] == ["dac/1", "dac/2", "dac/3", "dac/4"]
    wire.send(b'{"action": "call", "name": "set_voltage", "args": (1, 1.25), "kwargs": {}}\n')
    reply = v1_decode(wire.line())
    assert reply["status"] == "failed" and reply["exception"]["class"] == "PermissionError"
    wire.send(b'{"action": "call", "name": "authenticate", "args": (%s, ), "kwargs": {}}\n'
              % json.dumps(TOKEN).encode())
    assert wire.line() == b'{"status": "ok", "ret": true}\n'
    wire.send(b'{"action": "call", "name": "set_voltage", "args": (1, 1.25), "kwargs": {}}\n')
    assert wire.line() == b'{"status": "ok", "ret": null}\n'
    wire.send(b'{"action": "get_rpc_method_list"}\n')
    listing = v1_decode(wire.line())["ret"]
    assert listing["methods"]["set_voltage"][0]["args"] == ["self", "port", "volts"]


def test_both_encodings_carry_the_same_values(artiq_lab):
    lab = artiq_lab()
    v2, v1 = lab.client("wavemeter"), lab.client("wavemeter", v2=False)
    assert v2.call("channel", 1)["frequency_thz"] == v1.call("channel", 1)["frequency_thz"]
    assert v2.call("status")["used"] == v1.call("status")["used"] == list(range(1, 9))
    assert v2.call("signal_state", 1) == v1.call("signal_state", channel=1)


@pytest.mark.parametrize("v2", [True, False])
@pytest.mark.parametrize("target, name, args, kwargs, cls, message", [
    ("wavemeter", "no_such_method", (), {}, "AttributeError",
     "target 'wavemeter' has no method 'no_such_method'"),
    ("wavemeter", "_state", (1,), {}, "AttributeError", "has no method '_state'"),
    ("wavemeter", "frequency", ("1",), {}, "TypeError",
     'frequency(): channel: expected an integer, got "1"'),
    ("wavemeter", "frequency", (1.0,), {}, "TypeError", "channel: expected an integer"),
    ("wavemeter", "frequency", (), {}, "TypeError",
     "frequency() missing required argument 'channel'"),
    ("wavemeter", "frequency", (1, 2), {}, "TypeError",
     "frequency() takes 1 positional argument but 2 were given"),
    ("wavemeter", "frequency", (1,), {"channel": 1}, "TypeError",
     "frequency() got multiple values for argument 'channel'"),
    ("wavemeter", "frequency", (), {"chan": 1}, "TypeError",
     "frequency() got an unexpected keyword argument 'chan' (it takes channel)"),
    ("wavemeter", "frequency", (9,), {}, "ValueError",
     "channel 9: no such channel; this wavemeter has channels 1-8"),
    ("wavemeter", "frequency_fresh", (1, float("nan")), {}, "ValueError",
     "frequency_fresh(): max_age_s: expected a finite number"),
    ("dac", "value", ("nope",), {}, "ValueError", "dac has no sensor 'nope'"),
])
def test_errors_are_packed_as_sipyco_packs_them(artiq_lab, v2, target, name, args, kwargs, cls,
                                                message):
    lab = artiq_lab()
    client = lab.client(target, v2)
    reply = client.request({"action": "call", "name": name, "args": args, "kwargs": kwargs})
    assert reply["status"] == "failed"
    exception = reply["exception"]
    assert set(exception) == {"class", "message", "traceback"}
    assert exception["class"] == cls and issubclass(getattr(builtins, cls), Exception)
    assert message in exception["message"], exception["message"]
    assert isinstance(exception["traceback"], list)
    assert all(isinstance(line, str) for line in exception["traceback"])
    assert client.call("ping") is True  # the connection carries on


@pytest.mark.parametrize("request_, message", [
    ({"action": "jump"}, "Unknown action: jump"),
    ({"name": "ping"}, "Unknown action: None"),
    ([1, 2], "expected a request like {'action': 'call'"),
    ({"action": "call", "name": 3, "args": (), "kwargs": {}}, "'name' must be the name"),
    ({"action": "call", "name": "ping", "args": 3, "kwargs": {}}, "'args' must be a tuple"),
])
def test_malformed_requests_are_answered(artiq_lab, request_, message):
    lab = artiq_lab()
    client = lab.client("chamber")
    reply = client.request(request_)
    assert reply["status"] == "failed" and message in reply["exception"]["message"]
    assert client.call("ping") is True


def bystander_ok(lab, bystander: Client) -> None:
    """An earlier client and a new one are both served."""
    assert bystander.call("ping") is True
    assert isinstance(bystander.call("frequency", 1), float)
    fresh = Client(lab.port, "locks")
    assert fresh.call("ping") is True
    fresh.close()


def test_handshake_faults_close_the_connection_and_nothing_else(artiq_lab):
    lab = artiq_lab()
    bystander = lab.client("wavemeter")
    garbage = Wire(lab.port)
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert garbage.closed_by_server()
    bystander_ok(lab, bystander)
    for selection in (b"nowhere pyon_v2\n", b"wavemeter pyon_v3\n", b"wavemeter pyon_v2 x\n",
                      b"piezo pyon_v2\n", b"\n"):
        wire = Wire(lab.port)
        wire.send(INIT)
        assert json.loads(wire.line())["features"] == ["pyon_v2"]
        wire.send(selection)
        assert wire.closed_by_server(), selection
        bystander_ok(lab, bystander)
    silent = Wire(lab.port)
    silent.close()  # connected and gone without a word
    half = Wire(lab.port)
    half.send(b"ARTIQ pc")
    half.close()  # gone in the middle of the init line
    bystander_ok(lab, bystander)


def _send_all(wire: Wire, data: bytes) -> None:
    try:
        wire.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed while the line was still coming


def test_a_line_over_one_mib_closes_that_connection_only(artiq_lab):
    lab = artiq_lab()
    bystander = lab.client("wavemeter")
    before_handshake = Wire(lab.port)
    _send_all(before_handshake, b"A" * (MIB + 10) + b"\n")
    assert before_handshake.closed_by_server()
    bystander_ok(lab, bystander)
    wire = handshake(lab)
    _send_all(wire, b'{"action": "call", "name": "ping", "args": [' + b"1," * (MIB // 2)
              + b'1], "kwargs": {}}\n')
    assert wire.closed_by_server()
    bystander_ok(lab, bystander)
    # Just under the limit is read (decoded off the IO loop) and answered.
    large = lab.client("wavemeter", v2=False)
    reply = large.request({"action": "call", "name": "ping", "args": (1.5,) * 150_000,
                           "kwargs": {}})
    assert reply["exception"]["message"] == ("ping() takes 0 positional arguments but 150000 "
                                             "were given")
    bystander_ok(lab, bystander)


@pytest.mark.parametrize("line, cls, message", [
    (b'{"action": "call", "name": "ping", "args": {"__jsonclass__": ["frobnicator", [1]]}, '
     b'"kwargs": {}}', "TypeError", "Object of type `frobnicator` is not PYON decodable"),
    (b'{"action": "call", "name": "ping", "args": ' + b"[" * 100_000 + b"]" * 100_000
     + b', "kwargs": {}}', "ValueError", "nested deeper than 100 levels"),
    (b'{"action": "call", "name": "ping", "args": ' + b"[" * 150 + b"]" * 150
     + b', "kwargs": {}}', "ValueError", "nested deeper than 100 levels"),
    (b'{"action": "call", "name": "ping", "args": {"__jsonclass__": ["bytes", ["%%%"]]}, '
     b'"kwargs": {}}', "ValueError", "PYON bytes('%%%')"),
    (b'{"action": "call", "name": "ping" "args"', "ValueError", "not PYON v2 (JSON)"),
    (b'{"action": "\xff\xfe"}', "ValueError", "not PYON v2: not UTF-8"),
    (b"NaN", "ValueError", "expected a request like"),
])
def test_undecodable_v2_lines_are_answered_and_the_connection_carries_on(artiq_lab, line, cls,
                                                                         message):
    lab = artiq_lab()
    wire = handshake(lab)
    wire.send(line + b"\n")
    exception = json.loads(wire.line())["exception"]
    assert exception["class"] == cls and message in exception["message"], exception
    wire.send(b'{"action":"call","name":"ping","args":{"__jsonclass__":["tuple",[[]]]},'
              b'"kwargs":{}}\n')
    assert json.loads(wire.line()) == {"status": "ok", "ret": True}


def test_v1_is_parsed_never_evaluated(artiq_lab, tmp_path):
    lab = artiq_lab()
    wire = handshake(lab, b"wavemeter")
    marker = tmp_path / "evaluated"
    for line, message in [
        (b'__import__("os").system("touch %s")' % str(marker).encode(),
         "a call of \"__import__('os').system\""),
        (b'{"action": "call", "name": "ping", "args": (open("/etc/passwd"), ), "kwargs": {}}',
         "a call of 'open'"),
        (b'{"action": "call", "name": "ping", "args": ().__class__, "kwargs": {}}',
         "attribute is not a PYON value"),
        (b'{"action": "call", "name": "ping", "args": [x for x in ()], "kwargs": {}}',
         "listcomp is not a PYON value"),
        (b'{"action": "call", "name": "ping", "args": ' + b"(" * 300 + b")" * 300
         + b', "kwargs": {}}', "nested deeper than 100 levels"),
        (b'{"action": "call", "name": "ping", "args": frobnicator(1), "kwargs": {}}',
         "a call of 'frobnicator'"),
    ]:
        wire.send(line + b"\n")
        reply = v1_decode(wire.line())
        assert reply["status"] == "failed" and message in reply["exception"]["message"], reply
    assert not marker.exists()
    wire.send(b'{"action": "call", "name": "ping", "args": (), "kwargs": {}}\n')
    assert wire.line() == b'{"status": "ok", "ret": true}\n'


def test_numpy_values_arrive_as_python_numbers(artiq_lab):
    lab = artiq_lab()
    wire = handshake(lab, b"dac pyon_v2")
    wire.send(b'{"action":"call","name":"authenticate","args":{"__jsonclass__":["tuple",[["%s"]]]},'
              b'"kwargs":{}}\n' % TOKEN.encode())
    assert json.loads(wire.line())["ret"] is True
    # set_voltage(npscalar int64 3, npscalar float64 1.5), as sipyco encodes numpy scalars
    wire.send(b'{"action":"call","name":"set_voltage","args":{"__jsonclass__":["tuple",[['
              b'{"__jsonclass__":["npscalar",["<i8","AwAAAAAAAAA="]]},'
              b'{"__jsonclass__":["npscalar",["<f8","AAAAAAAA+D8="]]}]]]},"kwargs":{}}\n')
    assert json.loads(wire.line()) == {"status": "ok", "ret": None}
    assert lab.device("dac").voltage(3) == 1.5


def test_a_blocked_device_call_does_not_delay_other_clients(artiq_lab):
    lab = artiq_lab()
    writer, other = lab.writer("wavemeter"), lab.client("wavemeter")
    dac_user, chamber = lab.client("dac"), lab.client("chamber")
    results = {}
    volts = dac_user.call("voltage", 1)

    def blocked(name, client, *args):
        results[name] = client.call(*args)

    lab.sim.hold()  # every call into the wavemeter library now waits
    try:
        exposure = threading.Thread(target=blocked,
                                    args=("exposure", writer, "set_exposure", 1, 33))
        exposure.start()
        dac = lab.device("dac")
        with dac._lock:  # the DAC is busy too: its driver lock is held
            voltage = threading.Thread(target=blocked, args=("voltage", dac_user, "voltage", 1))
            voltage.start()
            for _ in range(20):
                assert other.call("ping") is True
                assert isinstance(other.call("frequency", 1), float)  # from the latest state
                assert chamber.call("ping") is True
                assert chamber.call("read")[0]["status"] == "ok"  # another device's thread
            assert results == {}  # both are still waiting, provably: nothing was released
        voltage.join(30)
        assert results["voltage"] == volts
        assert "exposure" not in results
    finally:
        lab.sim.release()
    exposure.join(30)
    assert results["exposure"]["exposure_ms"] == 33


def test_a_client_that_leaves_mid_call_costs_only_its_own_reply(artiq_lab, wlm_library):
    lab = artiq_lab()
    bystander = lab.client("wavemeter")
    leaver = Client(lab.port, "wavemeter")
    leaver.call("authenticate", TOKEN)
    connected = lab.srv.call(lambda: lab.artiq.server.clients)
    lab.sim.hold()
    try:
        leaver.wire.send(leaver.encode({"action": "call", "name": "set_exposure",
                                        "args": (2, 44), "kwargs": {}}) + b"\n")
        leaver.close()  # gone while the call waits on the instrument
        assert bystander.call("ping") is True
    finally:
        lab.sim.release()
    wait_until(lambda: bystander.call("exposure", 2) == 44, what="the call to finish all the same")
    wait_until(lambda: lab.srv.call(lambda: lab.artiq.server.clients) == connected - 1,
               what="the connection to be closed")
    bystander_ok(lab, bystander)


def test_at_most_max_clients_connections(artiq_lab):
    lab = artiq_lab("max_clients = 3")
    clients = [lab.client("chamber") for _ in range(3)]
    refused = Wire(lab.port)
    assert refused.closed_by_server()
    assert all(c.call("ping") is True for c in clients)
    clients[0].close()
    wait_until(lambda: lab.srv.call(lambda: lab.artiq.server.clients) == 2, what="a free slot")
    assert Client(lab.port, "chamber").call("ping") is True

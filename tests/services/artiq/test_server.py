"""The pc_rpc server on its own, with small targets: what sipyco's own tests ask of a server
(values echoed with their types, an unserialisable result is a TypeError, an unknown
method an AttributeError), and the limits that keep one client from hurting the others."""

import asyncio
import socket

import pytest

from services.web.pcrpc import GenericRemoteException, PcRpcClient, Target
from services.web.rpc import Method, Param
from tests.waiting import wait_until

from .conftest import PcRpcThread
from .wire import INIT, Client, RemoteError, Wire


class Echo:
    """What sipyco's test_pc_rpc serves."""

    def echo(self, x: list) -> list:
        """Return x."""
        return x

    async def async_echo(self, x: list) -> list:
        await asyncio.sleep(0.01)
        return x

    async def barrier(self, n: int) -> int:
        """Wait until n calls are waiting here at once (with serialized calls: never)."""
        if not hasattr(self, "_arrived"):
            self._arrived, self._all_there = 0, asyncio.Event()
        self._arrived += 1
        if self._arrived >= n:
            self._all_there.set()
        await asyncio.wait_for(self._all_there.wait(), 20)
        return self._arrived

    def return_unserializable(self) -> dict:
        return {"x": Echo()}

    def fail(self, how: str) -> None:
        if how == "key":
            raise KeyError("missing")
        raise LookupError_(how)


class LookupError_(Exception):  # noqa: N801 - a class that is not a builtin
    """A service's own kind of error."""


@pytest.fixture
def echo():
    target = Echo()
    methods = {name: Method(getattr(target, name))
               for name in ("echo", "async_echo", "barrier", "return_unserializable", "fail")}
    thread = PcRpcThread({"test": Target("test", "Echoes.", methods)}, description="echo",
                         handshake_timeout_s=0.3)
    yield thread
    thread.stop()


VALUE = [5, 2.1, None, True, False, {"a": 5, 2: (3,)}, (4, 5), (10,), "ab\nx\"'", {1, 2},
         b"\x00\xff"]  # sipyco's test object, and a set and bytes


@pytest.mark.parametrize("v2", [True, False])
def test_values_come_back_with_their_types(echo, v2):
    client = Client(echo.port, "test", v2)
    for name in ("echo", "async_echo"):
        assert client.call(name, VALUE) == VALUE
    with pytest.raises(RemoteError) as info:
        client.call("return_unserializable")
    assert info.value.cls == "TypeError"
    with pytest.raises(RemoteError) as info:
        client.call("non_existing_method")
    assert info.value.cls == "AttributeError"
    with pytest.raises(RemoteError) as info:
        client.call("fail", "key")
    assert (info.value.cls, info.value.message) == ("KeyError", "'missing'")
    with pytest.raises(RemoteError) as info:
        client.call("fail", "own")
    assert info.value.cls == "GenericRemoteException"
    assert info.value.message == "tests.services.artiq.test_server.LookupError_: own"
    assert any("raise LookupError_(how)" in line for line in info.value.traceback)


def test_the_project_client_unpacks_as_sipyco_does(echo, api):
    async def main():
        client = await PcRpcClient.connect("127.0.0.1", echo.port, "test")
        try:
            assert client.description == "echo" and client.targets == ["test"]
            assert await client.call("async_echo", [(1,), {2}]) == [(1,), {2}]
            with pytest.raises(TypeError):
                await client.call("return_unserializable")
            with pytest.raises(KeyError):
                await client.call("fail", "key")
            with pytest.raises(GenericRemoteException, match="LookupError_: own") as info:
                await client.call("fail", "own")
            assert info.value.parent_traceback
            with pytest.raises(ValueError, match="has no target 'nope' \\(it has test\\)"):
                await PcRpcClient.connect("127.0.0.1", echo.port, "nope")
        finally:
            await client.close()

    api.in_thread(asyncio.run, main())  # a loop of its own, whatever another test left running


def test_a_client_that_never_chooses_a_target_is_closed(echo):
    quiet = Wire(echo.port)
    halfway = Wire(echo.port)
    halfway.send(INIT)
    assert halfway.line().startswith(b'{"targets"')
    assert quiet.closed_by_server() and halfway.closed_by_server()  # after 0.3 s
    assert Client(echo.port, "test").call("echo", [1]) == [1]


def test_a_client_that_reads_no_replies_is_held_back_not_buffered(echo):
    greedy = Client(echo.port, "test")
    greedy.wire.sock.settimeout(1.0)
    request = greedy.encode({"action": "call", "name": "echo", "args": (["x" * 1000],),
                             "kwargs": {}}) + b"\n"
    sent = 0
    try:
        for _ in range(100_000):  # until the server stops reading and the kernel's buffers fill
            greedy.wire.send(request)
            sent += 1
    except TimeoutError:
        pass
    assert sent < 100_000
    buffered = echo.call(lambda: [(c.transport.get_write_buffer_size(), len(c._buffer))
                                  for c in echo.server._connections])
    assert all(out < 1 << 20 and into < 1 << 20 for out, into in buffered), buffered
    other = Client(echo.port, "test")
    assert other.call("echo", [2]) == [2]  # the others are served meanwhile
    greedy.wire.sock.settimeout(30)
    replies = [greedy.decode(greedy.wire.line()) for _ in range(sent - 1)]
    assert all(r == {"status": "ok", "ret": ["x" * 1000]} for r in replies)


def test_many_connections_are_served_concurrently(echo):
    clients = [Client(echo.port, "test") for _ in range(50)]
    for client in clients:  # one request out on every connection before any answer is read
        client.wire.send(client.encode({"action": "call", "name": "barrier", "args": (50,),
                                        "kwargs": {}}) + b"\n")
    assert [c.decode(c.wire.line())["ret"] for c in clients] == [50] * 50  # all in at once
    for client in clients:
        client.close()
    wait_until(lambda: echo.call(lambda: echo.server.clients) == 0, what="every connection closed")


def test_targets_refuse_reserved_names():
    with pytest.raises(ValueError, match="'ping' cannot be offered"):
        Target("t", "", {"ping": Method(Echo().echo)})
    with pytest.raises(ValueError, match="names are printable without whitespace"):
        Target("two words", "", {})


def test_listening_on_a_taken_port_names_it():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: Address already "
                                          "in use"):
            PcRpcThread({}, port)


def test_a_method_declared_with_explicit_params_is_described_from_them():
    from services.web.pcrpc import describe

    def lock(**kwargs) -> dict:
        """Engage."""

    method = Method(lock, True, (Param("channel", int), Param("setpoint_thz", float, None)),
                    "Lock a channel.")
    argspec, doc = describe(method)
    assert argspec == {"args": ["self", "channel", "setpoint_thz"], "varargs": None,
                       "varkw": None, "defaults": (None,), "kwonlyargs": [],
                       "kwonlydefaults": None,
                       "annotations": {"channel": "int", "setpoint_thz": "float",
                                       "return": "dict"}}
    assert doc == "Lock a channel."

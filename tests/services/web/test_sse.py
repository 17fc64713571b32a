"""The SSE stream, read by an independent client library (sseclient-py) over real sockets."""

import json
import socket
import urllib.request

import pytest
import sseclient

from services.web.hub import Hub
from services.web.sse import frame


def no_services(hub):
    hub.declare("wavemeter/1", "wavemeter/2", "wavemeter/3", "vacuum/chamber")
    return []


def open_stream(url, query="", last_id=None):
    """(response, iterator of sseclient events)."""
    request = urllib.request.Request(url + "/api/v1/stream" + query)
    if last_id is not None:
        request.add_header("Last-Event-ID", str(last_id))
    response = urllib.request.urlopen(request, timeout=30)
    return response, sseclient.SSEClient(response).events()


def publish(srv, channel, data):
    return srv.call(srv.hub.publish, channel, data).id


def test_frame_splits_multiline_data_so_a_client_joins_it_back():
    text = "first line\nsecond: with colon\r\nthird\rfourth"
    events = list(sseclient.SSEClient([frame(text, "x/1", 5), frame("{}")]).events())
    assert [(e.id, e.event, e.data) for e in events] == [
        ("5", "x/1", "first line\nsecond: with colon\nthird\nfourth"), (None, "message", "{}")]
    with pytest.raises(ValueError, match="line break"):
        frame("x", event="bad\nname")


def test_events_carry_id_channel_and_json_data_including_multiline_strings(server_thread):
    srv = server_thread(no_services)
    response, events = open_stream(srv.url, "?channels=wavemeter/*")
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    sent = []
    for n in range(3):
        data = {"n": n, "note": f"line one\nline two of {n}", "ch": n % 2 + 1}
        sent.append((publish(srv, f"wavemeter/{n % 2 + 1}", data), data))
        publish(srv, "vacuum/chamber", {"not": "wanted"})
    got = [next(events) for _ in sent]
    assert [(int(e.id), e.event, json.loads(e.data)) for e in got] == [
        (i, f"wavemeter/{d['ch']}", d) for i, d in sent]
    response.close()


def test_a_new_client_first_gets_the_latest_value_of_each_channel(server_thread):
    srv = server_thread(no_services)
    publish(srv, "wavemeter/1", {"v": 1})
    last1 = publish(srv, "wavemeter/1", {"v": 2})
    last2 = publish(srv, "wavemeter/2", {"v": 3})
    response, events = open_stream(srv.url, "?channels=wavemeter/1,wavemeter/2")
    assert [(int(e.id), json.loads(e.data)) for e in (next(events), next(events))] == [
        (last1, {"v": 2}), (last2, {"v": 3})]
    response.close()


def test_reconnecting_with_last_event_id_loses_nothing_and_repeats_nothing(server_thread):
    srv = server_thread(no_services)
    response, events = open_stream(srv.url, "?channels=wavemeter/*")
    ids = [publish(srv, f"wavemeter/{n % 3 + 1}", {"n": n}) for n in range(5)]
    seen = [int(next(events).id) for _ in range(3)]
    response.close()
    srv.wait_for(lambda: srv.hub.subscriber_count == 0, what="the server to notice")
    ids += [publish(srv, f"wavemeter/{n % 3 + 1}", {"n": n}) for n in range(5, 9)]
    response, events = open_stream(srv.url, "?channels=wavemeter/*", last_id=seen[-1])
    more = [publish(srv, "wavemeter/2", {"n": 9})]
    rest = [int(next(events).id) for _ in range(len(ids) + len(more) - len(seen))]
    assert seen + rest == ids + more
    response.close()


def test_an_id_too_old_to_replay_gets_an_explicit_event_then_the_latest(server_thread):
    srv = server_thread(no_services, hub=Hub(ring_size=3))
    first = publish(srv, "wavemeter/1", {"n": 0})
    for n in range(1, 10):
        publish(srv, "wavemeter/1", {"n": n})
    response, events = open_stream(srv.url, "?channels=wavemeter/1", last_id=first)
    gap = next(events)
    assert gap.event == "too-old"
    assert json.loads(gap.data)["last_event_id"] == first
    latest = next(events)
    assert (latest.event, json.loads(latest.data)) == ("wavemeter/1", {"n": 9})
    response.close()
    # an id this server never issued (an earlier run) is too old as well
    response, events = open_stream(srv.url, "?channels=wavemeter/1", last_id=10_000)
    assert next(events).event == "too-old"
    response.close()


def test_heartbeat_comments_arrive_on_an_idle_stream(server_thread, api):
    srv = server_thread(no_services, heartbeat_s=0.05)
    sock = api.raw(srv.port, "/api/v1/stream?channels=vacuum/chamber")
    received = b""
    while received.count(b": heartbeat\n") < 3:
        chunk = sock.recv(4096)
        assert chunk, "stream closed"
        received += chunk
    body = received.partition(b"\r\n\r\n")[2]
    assert b"event:" not in body  # nothing was published: comments only
    assert b"\n\n" not in _dechunk_complete(body)  # and no blank line: no event ends
    sock.close()


def _dechunk_complete(body: bytes) -> bytes:
    """The payload of the complete HTTP chunks at the start of `body`."""
    out = b""
    while True:
        size, sep, rest = body.partition(b"\r\n")
        if not sep or len(rest) < int(size, 16) + 2:
            return out
        out, body = out + rest[:int(size, 16)], rest[int(size, 16) + 2:]


def _dechunk(body: bytes) -> bytes:
    """The payload of complete HTTP chunks."""
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        size = int(size, 16)
        assert rest[size:size + 2] == b"\r\n", f"bad chunk framing: {body!r}"
        out, body = out + rest[:size], rest[size + 2:]
    return out


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_live_events_are_framed_for_the_clients_http_version(server_thread, version):
    srv = server_thread(no_services)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(f"GET /api/v1/stream?channels=vacuum/* {version}\r\nHost: 127.0.0.1\r\n\r\n"
                 .encode())
    srv.wait_for(lambda: srv.hub.subscriber_count == 1, what="the stream")
    ids = [publish(srv, "vacuum/chamber", {"n": n}) for n in range(3)]
    events = b"".join(b'id: %d\nevent: vacuum/chamber\ndata: {"n":%d}\n\n' % (i, n)
                      for n, i in enumerate(ids))
    received = b""
    while not received.endswith(b'data: {"n":2}\n\n' + b"\r\n" * (version == "HTTP/1.1")):
        sock.settimeout(5)  # a framing error shows as a timeout, not as a hang
        chunk = sock.recv(4096)
        assert chunk, f"stream closed after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    chunked = b"Transfer-Encoding: chunked" in head
    assert chunked == (version == "HTTP/1.1")
    assert (_dechunk(body) if chunked else body) == b"retry: 2000\n" + events
    sock.close()


@pytest.mark.parametrize("query, status, field", [
    ("?channels=wavemeter/9", 404, "channels"),
    ("?channels=nothing/*", 404, "channels"),
    ("?channels=wavemeter/1,,wavemeter/2", 400, "channels"),
])
def test_bad_channel_patterns_are_json_errors(server_thread, api, query, status, field):
    srv = server_thread(no_services)
    code, body, headers = api.http("GET", srv.url + "/api/v1/stream" + query)
    assert (code, body["field"]) == (status, field)
    assert headers["Content-Type"].startswith("application/json")
    assert "no channel matches" in body["error"] or "empty" in body["error"]


def test_a_bad_last_event_id_is_a_400(server_thread, api):
    srv = server_thread(no_services)
    code, body, _ = api.http("GET", srv.url + "/api/v1/stream", headers={"Last-Event-ID": "x1"})
    assert (code, body["field"]) == (400, "Last-Event-ID")


def test_a_client_that_never_reads_stays_bounded_is_dropped_and_others_keep_up(server_thread, api):
    hub = Hub(subscriber_buffer=16)
    srv = server_thread(no_services, hub=hub, drop_after_s=0.5)
    stalled = api.raw(srv.port, "/api/v1/stream?channels=wavemeter/1",
                      "")
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.wait_for(lambda: hub.subscriber_count == 1, what="the stalled client")
    response, events = open_stream(srv.url, "?channels=wavemeter/1")
    srv.wait_for(lambda: hub.subscriber_count == 2, what="the reading client")
    big = "x" * 100_000
    received = 0
    for n in range(120):  # 12 MB: far more than the socket buffers hold
        publish(srv, "wavemeter/1", {"n": n, "pad": big})
        event = next(events)
        assert json.loads(event.data)["n"] == n  # the reader gets every event, in order
        received += 1
        sizes = srv.call(lambda: [len(s._queue) for s in hub._subscriptions])
        assert max(sizes) <= 16
    assert received == 120
    srv.wait_for(lambda: hub.subscriber_count == 1, what="the stalled client to be dropped")
    stalled.close()
    response.close()


def test_streams_beyond_the_hubs_limit_get_503(server_thread, api):
    srv = server_thread(no_services, hub=Hub(max_subscribers=1))
    response, events = open_stream(srv.url, "?channels=vacuum/chamber")
    srv.wait_for(lambda: srv.hub.subscriber_count == 1, what="the first stream")
    code, body, _ = api.http("GET", srv.url + "/api/v1/stream")
    assert code == 503 and "streams to 1 clients, as many as it may" in body["error"]
    response.close()
    srv.wait_for(lambda: srv.hub.subscriber_count == 0, what="the first stream to end")
    response, events = open_stream(srv.url, "?channels=vacuum/chamber")
    publish(srv, "vacuum/chamber", {"p": 1})
    assert json.loads(next(events).data) == {"p": 1}
    response.close()


def test_after_too_old_every_id_is_above_the_one_the_client_held(server_thread):
    srv = server_thread(no_services, hub=Hub(ring_size=2))
    held = publish(srv, "wavemeter/2", {"n": 0})  # the last id a client saw ...
    for n in range(1, 6):  # ... then more than a ring holds, on two channels
        publish(srv, "wavemeter/1", {"n": n})
        publish(srv, "wavemeter/2", {"n": n})
    old = publish(srv, "wavemeter/3", {"n": -1})  # channel 3's latest is older ...
    publish(srv, "wavemeter/1", {"n": 6})
    publish(srv, "wavemeter/2", {"n": 6})
    publish(srv, "wavemeter/2", {"n": 7})  # ... than channel 2's evicted ones
    assert old < srv.hub.latest("wavemeter/2").id
    response, events = open_stream(srv.url, "?channels=wavemeter/*", last_id=held)
    got = [next(events) for _ in range(4)]
    live = publish(srv, "wavemeter/1", {"n": 8})
    got.append(next(events))
    ids = [int(e.id) for e in got]
    assert got[0].event == "too-old" and json.loads(got[0].data)["last_event_id"] == held
    assert [(e.event, json.loads(e.data)["n"]) for e in got[1:]] == [
        ("wavemeter/3", -1), ("wavemeter/1", 6), ("wavemeter/2", 7), ("wavemeter/1", 8)]
    assert held < ids[0] and ids == sorted(set(ids))  # above the held id, strictly rising
    assert ids[-1] == live
    response.close()
    # resuming from an id of the snapshot replays what came after it, nothing before
    srv.wait_for(lambda: srv.hub.subscriber_count == 0, what="the first stream to end")
    later = publish(srv, "wavemeter/3", {"n": 9})
    response, events = open_stream(srv.url, "?channels=wavemeter/*", last_id=ids[2])
    assert [(int(e.id), json.loads(e.data)["n"]) for e in (next(events), next(events))] == [
        (live, 8), (later, 9)]
    response.close()


@pytest.mark.parametrize("header", [b"\xb2", b"\xff\xfe", b"9" * 5000, b"-1", b"1e9"])
def test_a_last_event_id_that_is_no_id_is_a_json_400(server_thread, header):
    srv = server_thread(no_services)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: " + header
                 + b"\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        if b"}" in chunk:
            break
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    answer = json.loads(body)
    assert answer["field"] == "Last-Event-ID" and "expected an event id" in answer["error"]
    assert srv.hub.subscriber_count == 0


def test_one_address_holds_a_bounded_number_of_streams_and_others_still_get_one(server_thread,
                                                                                api):
    srv = server_thread(no_services, streams_per_client=2)
    first = [open_stream(srv.url, "?channels=vacuum/chamber")[0] for _ in range(2)]
    code, body, headers = api.http("GET", srv.url + "/api/v1/stream")
    assert code == 429 and "127.0.0.1 already holds 2 streams" in body["error"]
    other = socket.create_connection(("127.0.0.1", srv.port), timeout=30,
                                     source_address=("127.0.0.2", 0))
    other.sendall(b"GET /api/v1/stream?channels=vacuum/* HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert other.recv(4096).startswith(b"HTTP/1.1 200 OK")
    first.pop().close()
    srv.wait_for(lambda: srv.hub.subscriber_count == 2, what="a stream to end")
    response, events = open_stream(srv.url, "?channels=vacuum/chamber")
    publish(srv, "vacuum/chamber", {"p": 2})
    assert json.loads(next(events).data) == {"p": 2}
    for r in (*first, response, other):
        r.close()


def test_heartbeats_never_reach_a_client_library_as_an_event(server_thread):
    """sseclient-py and requests-sse (an EventSource after the WHATWG spec) both see the
    published events and nothing else; on the wire, every blank line ends a block that
    carries data, so a client that splits at blank lines sees no empty event either."""
    from requests_sse import EventSource

    srv = server_thread(no_services, heartbeat_s=0.02)
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    raw.sendall(b"GET /api/v1/stream?channels=vacuum/* HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    response, events = open_stream(srv.url, "?channels=vacuum/*")
    with EventSource(srv.url + "/api/v1/stream?channels=vacuum/*", timeout=30) as source:
        srv.wait_for(lambda: srv.hub.subscriber_count == 3, what="three streams")
        received = b""
        while received.count(b": heartbeat\n") < 5:  # heartbeats went to every client
            received += raw.recv(4096)
        sent = [publish(srv, "vacuum/chamber", {"n": n}) for n in range(3)]
        while received.count(b"data: ") < 3:
            received += raw.recv(4096)
        library = [(int(e.last_event_id), e.type, e.data) for e in
                   (next(source) for _ in range(3))]
    popular = [(int(e.id), e.event, e.data) for e in (next(events) for _ in range(3))]
    expected = [(i, "vacuum/chamber", json.dumps({"n": n}, separators=(",", ":")))
                for n, i in enumerate(sent)]
    assert library == popular == expected
    blocks = received.partition(b"\r\n\r\n")[2].split(b"\n\n")[:-1]
    assert len(blocks) == 3 and all(b"\ndata: " in b"\n" + block for block in blocks)
    response.close()
    raw.close()

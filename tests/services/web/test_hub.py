"""The hub: ids, replay rings, glob subscriptions, bounded coalescing buffers."""

import asyncio
import doctest

import pytest

import services.web.hub
from services.web.hub import Hub, HubFullError


def test_doctests():
    assert doctest.testmod(services.web.hub).failed == 0


def test_ids_are_hub_wide_and_increasing():
    hub = Hub(first_id=1)
    ids = [hub.publish(f"c/{i % 3}", {"i": i}).id for i in range(9)]
    assert ids == list(range(1, 10))
    assert hub.channels() == ["c/0", "c/1", "c/2"]
    assert hub.latest("c/1").data == {"i": 7}


def test_a_later_hub_never_reissues_an_earlier_runs_ids():
    earlier = Hub()
    old_id = earlier.publish("a", {}).id
    later = Hub()  # a server restart
    assert later.publish("a", {}).id > old_id
    assert later.replay(old_id) is None  # the client of the earlier run hears "too old"
    assert later.replay(later.last_id) == []


def test_glob_patterns_select_channels_including_ones_declared_later():
    hub = Hub()
    hub.declare("wavemeter/1", "wavemeter/status")
    one = hub.subscribe(["wavemeter/1", "wavemeter/1?"])
    every = hub.subscribe(None)
    hub.declare("wavemeter/12")
    for ch in ("wavemeter/1", "wavemeter/12", "wavemeter/2", "wavemeter/status"):
        hub.publish(ch, {"ch": ch})
    assert [e.channel for e in one.drain()] == ["wavemeter/1", "wavemeter/12"]
    assert len(every.drain()) == 4
    assert hub.matching("wavemeter/?") == ["wavemeter/1", "wavemeter/2"]


def test_replay_returns_events_after_an_id_in_order():
    hub = Hub(ring_size=5, first_id=1)
    for i in range(6):
        hub.publish(f"c/{i % 2}", {"i": i})
    assert [e.id for e in hub.replay(3)] == [4, 5, 6]
    assert [e.id for e in hub.replay(2, ["c/1"])] == [4, 6]
    assert hub.replay(6) == []


def test_replay_reports_a_gap_as_none():
    hub = Hub(ring_size=2, first_id=1)
    for i in range(5):
        hub.publish("a", {"i": i})  # ids 1..5, ring keeps 4 and 5
    hub.publish("b", {})  # id 6
    assert [e.id for e in hub.replay(3, ["a"])] == [4, 5]
    assert hub.replay(2, ["a"]) is None  # id 3 was forgotten
    assert [e.id for e in hub.replay(2, ["b"])] == [6]  # nothing of b was forgotten
    assert hub.replay(99) is None  # never issued: an earlier server run


def test_a_slow_subscriber_coalesces_to_latest_per_channel_and_stays_bounded():
    hub = Hub(subscriber_buffer=8)
    slow = hub.subscribe(None)
    fast = hub.subscribe(None)
    got = []
    for i in range(10_000):
        hub.publish(f"wavemeter/{i % 3}", {"i": i})
        got.extend(fast.drain())
        assert len(slow._queue) <= 8
    assert [e.data["i"] for e in got] == list(range(10_000))
    events = slow.drain()
    ids = [e.id for e in events]
    assert ids == sorted(ids)
    # the newest value of every channel survives
    assert {e.channel: e.data["i"] for e in events} == {
        "wavemeter/0": 9999, "wavemeter/1": 9997, "wavemeter/2": 9998}
    assert slow.dropped == 0
    assert slow.coalesced + len(events) == 10_000


def test_more_channels_than_buffer_drops_oldest_and_counts():
    hub = Hub(subscriber_buffer=4)
    sub = hub.subscribe(None)
    for i in range(10):
        hub.publish(f"c/{i}", {})
    events = sub.drain()
    assert [e.channel for e in events][-1] == "c/9"
    assert len(events) <= 4
    assert sub.dropped + len(events) == 10


def test_iteration_wakes_on_publish_and_stops_on_close(api):
    api.in_thread(asyncio.run, _iteration())


async def _iteration():
    hub = Hub()
    sub = hub.subscribe(["x"])
    for n in range(3):
        pending = asyncio.ensure_future(anext(sub))
        await asyncio.sleep(0)
        sub.wake()  # a wake-up without an event does not end the iteration
        for _ in range(3):
            await asyncio.sleep(0)
        assert not pending.done()  # still waiting for an event
        hub.publish("x", {"n": n})
        assert (await asyncio.wait_for(pending, 5)).data == {"n": n}
    pending = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)
    assert hub.subscriber_count == 0
    hub.publish("x", {"n": 3})  # nobody left to deliver to
    assert sub.drain() == []
    assert sub.delivered == 3


def test_wait_times_out_without_events(api):
    api.in_thread(asyncio.run, _wait())


async def _wait():
    hub = Hub()
    sub = hub.subscribe(None)
    assert await sub.wait(0.01) is False
    hub.publish("a", {})
    assert await sub.wait(0.01) is True


def test_subscriber_limit():
    hub = Hub(max_subscribers=2)
    a = hub.subscribe(None)
    hub.subscribe(None)
    with pytest.raises(HubFullError, match="limit of 2 subscribers"):
        hub.subscribe(None)
    a.close()
    hub.subscribe(None)


def test_event_json_is_encoded_once_and_refuses_nan():
    hub = Hub()
    e = hub.publish("a", {"v": 1.5})
    assert e.json() == '{"v":1.5}'
    assert e.json() is e.json()
    with pytest.raises(ValueError):
        hub.publish("a", {"v": float("nan")}).json()


def test_a_listener_gets_one_call_per_burst_and_one_on_close(api):
    api.in_thread(asyncio.run, _listener())


async def _listener():
    hub = Hub()
    broken, sub = hub.subscribe(None), hub.subscribe(["x/*"])
    calls = []

    def fail():
        raise RuntimeError("a broken consumer")

    broken.on_ready(fail)
    sub.on_ready(lambda: calls.append([e.id for e in sub.drain()]))
    burst = [hub.publish(c, {}).id for c in ("x/1", "x/2", "y", "x/1")]
    assert calls == []  # not while the burst is being published
    await asyncio.sleep(0)
    assert calls == [[burst[0], burst[1], burst[3]]]  # the broken one did not stop it
    await asyncio.sleep(0)
    assert len(calls) == 1  # nothing new, no call
    later = hub.publish("x/3", {}).id
    await asyncio.sleep(0)
    assert calls[1:] == [[later]]
    sub.close()
    assert calls[2:] == [[]]  # told it is closed, with nothing pending
    broken.on_ready(None)
    hub.publish("y", {})
    await asyncio.sleep(0)
    assert len(calls) == 3 and broken.drain() != []  # no listener: events wait for drain()

"""The wavemeter server on the compiled simulated wavemeter: HTTP API, JSON-RPC, SSE, client.

The driver is the real ctypes driver loading build/sim/libwlmData.so; the
simulation runs on a manual clock, so a channel has a new value only when the
test advances the clock.
"""

import asyncio
import json
import threading
import urllib.request
from datetime import UTC, datetime

import pytest
import sseclient

from drivers.highfinesse.wlm import Wavemeter
from services.config import parse
from services.wavemeter.acquisition import C_NM_THZ
from services.wavemeter.client import AsyncWavemeter, RpcError
from services.wavemeter.client import Wavemeter as Client
from services.wavemeter.service import WavemeterService

CONFIG = """
[devices.wm]
kind = "highfinesse"
library = "{library}"
poll_s = 0.01
channels = {{ 1 = "397 cooling", 3 = "854 quench" }}

[wavemeter]
stale_after_s = {stale}
retry_min_s = 0.01
retry_max_s = 0.05
settings_every_s = 0.05
"""


@pytest.fixture
def wavemeter(server_thread, wlm_sim, wlm_library):
    """start(opener=None, stale=60) -> the running server (srv.services[0] is the service)."""

    def start(opener=None, stale=60.0):
        config = parse(CONFIG.format(library=wlm_library, stale=stale), "lab.toml")
        return server_thread(lambda hub: [WavemeterService(config, hub, opener=opener)])

    return start


@pytest.fixture
def device(wlm_library):
    """A second driver on the same simulated instrument, to see what the server changed."""
    with Wavemeter("check", library=wlm_library) as wm:
        yield wm


def channels_ok(srv, n=8):
    acq = srv.services[0].acquisition
    return lambda: len(acq.channels) == n and all(
        c.status.value == "ok" for c in acq.channels.values())


def two_refreshes(srv):
    """Wait until the server has read the device twice more (so it saw the present)."""
    acq = srv.services[0].acquisition
    target = srv.call(lambda: acq.refreshes) + 2
    srv.wait_for(lambda: acq.refreshes >= target, what="two refreshes")


def measured(srv, wlm_sim):
    """Advance the simulated clock by a second (every channel measured); wait until read."""
    wlm_sim.advance(1.0)
    two_refreshes(srv)


def test_channels_show_each_reading_with_status_read_time_and_age(wavemeter, wlm_sim, api):
    srv = wavemeter()
    status, body, _ = api.http("GET", srv.url + "/api/v1/channels")
    assert status == 200
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    status, body, _ = api.http("GET", srv.url + "/api/v1/channels")
    assert [c["channel"] for c in body] == list(range(1, 9))
    assert [body[0]["name"], body[1]["name"], body[2]["name"]] == [
        "397 cooling", "channel 2", "854 quench"]
    for c in body:
        assert c["status"] == "ok" and c["stale"] is False
        assert abs(c["frequency_thz"] - wlm_sim.true_frequency(c["channel"])) < 1e-4
        assert c["wavelength_nm"] == pytest.approx(C_NM_THZ / c["frequency_thz"], rel=1e-12)
        stamp = datetime.fromisoformat(c["timestamp"])
        assert stamp.utcoffset().total_seconds() == 0
        assert stamp <= datetime.now(UTC)
        assert c["age_s"] >= 0
        assert (c["use"], c["show"], c["exposure_ms"], c["auto_exposure"]) == (
            True, True, 10, False)
    status, one, _ = api.http("GET", srv.url + "/api/v1/channels/3")
    assert status == 200 and one["frequency_thz"] == body[2]["frequency_thz"]
    assert one["timestamp"] == body[2]["timestamp"]  # the same reading: stamped when read


@pytest.mark.parametrize("path, status, field", [
    ("/api/v1/channels/9", 404, "channel"),
    ("/api/v1/channels/0", 404, "channel"),
    ("/api/v1/channels/x1", 404, "channel"),
    ("/api/v1/channels/-1", 404, "channel"),
    ("/api/v1/channels/%C2%B2", 404, "channel"),  # a superscript two: a digit, not ASCII
    ("/api/v1/channels/" + "9" * 5000, 404, "channel"),
])
def test_unknown_channels_are_json_errors_naming_the_field(wavemeter, wlm_sim, api, path,
                                                           status, field):
    srv = wavemeter()
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    code, body, _ = api.http("GET", srv.url + path)
    assert (code, body["field"]) == (status, field)
    assert body["error"].startswith("channel")


def test_put_changes_the_device_with_the_token(wavemeter, wlm_sim, device, api):
    srv = wavemeter()
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    url = srv.url + "/api/v1/channels/3"
    status, body, _ = api.http("PUT", url, {"exposure_ms": 25, "auto_exposure": True,
                                            "show": False, "name": "854 nm"}, token=api.token)
    assert status == 200, body
    assert (body["exposure_ms"], body["auto_exposure"], body["show"], body["use"],
            body["name"]) == (25, True, False, True, "854 nm")
    assert (device.exposure(3), device.auto_exposure(3), device.signal_state(3)) == (
        25, True, (True, False))
    assert api.http("GET", url)[1]["name"] == "854 nm"
    status, body, _ = api.http("PUT", srv.url + "/api/v1/wavemeter", {"measurement": False},
                               token=api.token)
    assert (status, body["operation"], device.operation_state()) == (200, "stopped", "stopped")
    api.http("PUT", srv.url + "/api/v1/wavemeter", {"measurement": True}, token=api.token)
    assert device.operation_state() == "measurement"


@pytest.mark.parametrize("body, raw, token, status, field", [
    ({"exposure_ms": 25}, None, None, 401, None),
    ({"exposure_ms": 25}, None, "wrong", 401, None),
    (None, b"{not json", "TOKEN", 400, None),
    (None, b"[1, 2]", "TOKEN", 400, None),
    ({}, None, "TOKEN", 400, None),
    ({"exposure": 25}, None, "TOKEN", 400, "exposure"),
    ({"exposure_ms": "25"}, None, "TOKEN", 400, "exposure_ms"),
    ({"exposure_ms": 0}, None, "TOKEN", 400, "exposure_ms"),
    ({"exposure_ms": 10_000}, None, "TOKEN", 400, "exposure_ms"),
    ({"exposure_ms": 25, "use": "yes"}, None, "TOKEN", 400, "use"),
    ({"exposure_ms": 25, "name": ""}, None, "TOKEN", 400, "name"),
    ({"exposure_ms": True}, None, "TOKEN", 400, "exposure_ms"),
])
def test_bad_writes_are_refused_and_change_nothing(wavemeter, wlm_sim, device, api, body, raw,
                                                   token, status, field):
    srv = wavemeter()
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    before = (device.exposure(3), device.auto_exposure(3), device.signal_state(3))
    code, answer, headers = api.http("PUT", srv.url + "/api/v1/channels/3", body, raw=raw,
                                     token=api.token if token == "TOKEN" else token)
    assert (code, answer["field"]) == (status, field), answer
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert (device.exposure(3), device.auto_exposure(3), device.signal_state(3)) == before
    assert api.http("GET", srv.url + "/api/v1/channels/3")[1]["name"] == "854 quench"


def test_rpc_offers_the_same_operations(wavemeter, wlm_sim, device, api):
    srv = wavemeter()
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    ch3 = api.http("GET", srv.url + "/api/v1/channels/3")[1]
    assert api.rpc(srv.url, "frequency", [3])["result"] == ch3["frequency_thz"]
    assert api.rpc(srv.url, "wavelength", {"channel": 3})["result"] == ch3["wavelength_nm"]
    assert len(api.rpc(srv.url, "channels")["result"]) == 8
    answer = api.rpc(srv.url, "set_exposure", [3, 30], token=api.token)
    assert answer["result"]["exposure_ms"] == 30 and device.exposure(3) == 30
    # errors: the right codes, nothing changed
    assert api.rpc(srv.url, "set_exposure", [3, 40])["error"]["code"] == -32001
    error = api.rpc(srv.url, "set_exposure", [3, 0], token=api.token)["error"]
    assert (error["code"], error["data"]["field"]) == (-32602, "exposure_ms")
    error = api.rpc(srv.url, "frequency", [12])["error"]
    assert (error["code"], error["data"]["field"]) == (-32602, "channel")
    assert "no such channel" in error["message"]
    assert api.rpc(srv.url, "frequency", ["3"])["error"]["code"] == -32602
    assert api.rpc(srv.url, "set_exposure", [3], token=api.token)["error"]["code"] == -32602
    assert api.rpc(srv.url, "no_such_method")["error"]["code"] == -32601
    assert device.exposure(3) == 30
    assert api.rpc(srv.url, "stop_measurement")["error"]["code"] == -32001
    assert device.operation_state() == "measurement"
    assert api.rpc(srv.url, "stop_measurement", token=api.token)["result"]["operation"] == "stopped"
    assert device.operation_state() == "stopped"
    answer = api.rpc(srv.url, "set_switcher_mode", {"on": False}, token=api.token)
    assert answer["result"]["switcher_mode"] is False and device.switcher_mode() is False


def test_rpc_frequency_of_a_channel_without_signal_is_an_error(wavemeter, wlm_sim, api):
    srv = wavemeter()
    wlm_sim.set_signal(4, 0)
    wlm_sim.advance(1.0)
    acq = srv.services[0].acquisition
    srv.wait_for(lambda: 4 in acq.channels and acq.channels[4].status.value == "no signal",
                 what="channel 4 without signal")
    error = api.rpc(srv.url, "frequency", [4])["error"]
    assert error["code"] == -32000 and "no signal" in error["message"]
    body = api.http("GET", srv.url + "/api/v1/channels/4")[1]
    assert (body["status"], body["frequency_thz"]) == ("no signal", None)


class GatedWavemeter(Wavemeter):
    """The real driver, except that frequency(7) waits for the test's event once armed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def frequency(self, channel):
        if self.armed and channel == 7:
            self.entered.set()
            assert self.release.wait(60), "the test never released the driver"
        return super().frequency(channel)


def test_a_blocked_driver_call_leaves_the_io_loop_free(wavemeter, wlm_sim, wlm_library, api):
    gated = GatedWavemeter("wm", library=wlm_library)
    srv = wavemeter(opener=gated.open)
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    response = urllib.request.urlopen(srv.url + "/api/v1/stream?channels=wavemeter/3",
                                      timeout=30)
    events = sseclient.SSEClient(response).events()
    assert json.loads(next(events).data)["channel"] == 3  # the latest, on connecting
    gated.armed = True
    assert gated.entered.wait(30)  # the acquisition is now stuck inside the driver
    try:
        refreshes = srv.call(lambda: srv.services[0].acquisition.refreshes)
        assert api.http("GET", srv.url + "/api/v1/channels")[0] == 200
        assert api.http("GET", srv.url + "/healthz")[0] == 200
        assert isinstance(api.rpc(srv.url, "frequency", [3])["result"], float)
        # a write that needs no device call is answered and streamed meanwhile
        renamed = api.rpc(srv.url, "set_name", [3, "854 quench laser"], token=api.token)
        assert renamed["result"]["name"] == "854 quench laser"
        assert json.loads(next(events).data)["name"] == "854 quench laser"
        assert srv.call(lambda: srv.services[0].acquisition.refreshes) == refreshes
    finally:
        gated.armed = False
        gated.release.set()
    srv.wait_for(lambda: srv.services[0].acquisition.refreshes > refreshes,
                 what="acquisition to resume")
    response.close()


class RecordingWavemeter(Wavemeter):
    """The real driver, remembering which channels were read."""

    read_channels: set

    def frequency(self, channel):
        self.read_channels.add(channel)
        return super().frequency(channel)


def test_only_channels_in_use_are_read(wavemeter, wlm_sim, wlm_library, api):
    recording = RecordingWavemeter("wm", library=wlm_library)
    recording.read_channels = set()
    srv = wavemeter(opener=recording.open)
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    assert recording.read_channels == set(range(1, 9))
    assert api.http("PUT", srv.url + "/api/v1/channels/5", {"use": False},
                    token=api.token)[0] == 200
    measured(srv, wlm_sim)
    recording.read_channels.clear()
    measured(srv, wlm_sim)
    assert recording.read_channels == {1, 2, 3, 4, 6, 7, 8}
    status = api.http("GET", srv.url + "/api/v1/wavemeter")[1]
    assert status["used"] == [1, 2, 3, 4, 6, 7, 8]


def test_a_missing_wavemeter_is_reported_retried_and_recovered(wavemeter, wlm_sim, api):
    srv = wavemeter()
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    response = urllib.request.urlopen(srv.url + "/api/v1/stream?channels=wavemeter/status",
                                      timeout=30)
    events = sseclient.SSEClient(response).events()
    assert json.loads(next(events).data)["state"] == "ok"  # the latest status first
    wlm_sim.set_server_running(False)
    missing = json.loads(next(events).data)
    assert missing["state"] == "missing" and "not running" in missing["message"]
    status, health, _ = api.http("GET", srv.url + "/healthz")
    assert (status, health["services"]["wavemeter"]["state"]) == (503, "missing")
    assert api.http("GET", srv.url + "/api/v1/channels")[0] == 200  # still serving
    error = api.rpc(srv.url, "set_exposure", [1, 20], token=api.token)["error"]
    assert error["code"] == -32000
    wlm_sim.set_server_running(True)
    assert json.loads(next(events).data)["state"] == "ok"  # missing once, then ok again
    assert api.http("GET", srv.url + "/healthz")[0] == 200
    response.close()


def test_a_channel_without_new_readings_turns_stale(wavemeter, wlm_sim, api):
    srv = wavemeter(stale=0.2)
    response = urllib.request.urlopen(srv.url + "/api/v1/stream?channels=wavemeter/2",
                                      timeout=30)
    events = sseclient.SSEClient(response).events()
    wlm_sim.advance(1.0)
    fresh = json.loads(next(events).data)
    while fresh["status"] != "ok":  # settings arrive before the first reading
        fresh = json.loads(next(events).data)
    stale = json.loads(next(events).data)  # the clock stands still: no new value
    assert (stale["status"], stale["stale"]) == ("stale", True)
    assert (stale["frequency_thz"], stale["timestamp"]) == (fresh["frequency_thz"],
                                                            fresh["timestamp"])
    assert stale["age_s"] >= 0.2
    wlm_sim.advance(1.0)
    renewed = json.loads(next(events).data)
    assert (renewed["status"], renewed["stale"]) == ("ok", False)
    assert renewed["timestamp"] > fresh["timestamp"]
    response.close()


def measure_once(srv, wlm_sim, channel):
    """Step the simulated clock until `channel` is measured once more; wait until read."""
    count = wlm_sim.measurement_count(channel)
    while wlm_sim.measurement_count(channel) == count:
        wlm_sim.advance(0.002)
    two_refreshes(srv)


def test_a_neighbours_value_after_a_switch_is_rejected_and_counted(wavemeter, wlm_sim, api):
    srv = wavemeter()
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    before = api.http("GET", srv.url + "/api/v1/channels/3")[1]
    wlm_sim.inject_neighbour(3)
    measure_once(srv, wlm_sim, 3)  # channel 3 now shows channel 2's light: 4.9 THz off
    after = api.http("GET", srv.url + "/api/v1/channels/3")[1]
    assert after["rejected"] == 1
    assert (after["frequency_thz"], after["timestamp"]) == (before["frequency_thz"],
                                                            before["timestamp"])
    measure_once(srv, wlm_sim, 3)  # its own light again: accepted
    renewed = api.http("GET", srv.url + "/api/v1/channels/3")[1]
    assert renewed["rejected"] == 1 and renewed["timestamp"] > before["timestamp"]
    assert abs(renewed["frequency_thz"] - wlm_sim.true_frequency(3)) < 1e-4
    assert api.http("GET", srv.url + "/api/v1/wavemeter")[1]["rejected"] == 1


def test_python_client_sync_and_async(wavemeter, wlm_sim, device, api):
    srv = wavemeter()
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="every channel read")
    client = Client(srv.url, token=api.token)
    f3 = client.frequency(3)
    assert f3 == api.http("GET", srv.url + "/api/v1/channels/3")[1]["frequency_thz"]
    assert client.set_exposure(2, 15)["exposure_ms"] == 15 and device.exposure(2) == 15
    with pytest.raises(RpcError) as info:
        Client(srv.url, token="wrong").set_exposure(2, 16)
    assert info.value.code == -32001 and device.exposure(2) == 15
    with pytest.raises(RpcError, match="no such channel") as info:
        client.frequency(99)
    assert info.value.code == -32602 and info.value.data["field"] == "channel"

    async def use_async():
        wm = AsyncWavemeter(srv.url)
        return await wm.frequency(3), await wm.call("channel", channel=3)

    freq, ch = api.in_thread(asyncio.run, use_async())
    assert freq == f3 and ch["frequency_thz"] == f3
    with pytest.raises(ConnectionError, match="cannot reach"):
        Client("http://127.0.0.1:9", timeout=5).frequency(3)


def test_a_server_started_without_the_wavemeter_software_serves_and_waits(wavemeter, wlm_sim,
                                                                          api):
    wlm_sim.set_server_running(False)
    srv = wavemeter()
    status, health, _ = api.http("GET", srv.url + "/healthz")
    assert (status, health["services"]["wavemeter"]["state"]) == (503, "missing")
    assert api.http("GET", srv.url + "/api/v1/channels")[:2] == (200, [])
    code, body, _ = api.http("GET", srv.url + "/api/v1/channels/1")
    assert code == 503 and "not available" in body["error"]
    wlm_sim.set_server_running(True)
    wlm_sim.advance(1.0)
    srv.wait_for(channels_ok(srv), what="the channels once the software runs")
    assert api.http("GET", srv.url + "/healthz")[0] == 200

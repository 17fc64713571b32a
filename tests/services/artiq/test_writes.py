"""Writes over pc_rpc: refused with PermissionError until the connection authenticates.

Every method that changes the lab is listed here with arguments it accepts;
the test fails if a target offers a write this list does not know, so no new
write goes out unguarded unnoticed.
"""

import pytest

from ..conftest import TOKEN
from .wire import RemoteError

WRITES = {
    "wavemeter": {
        "set_exposure": (1, 20), "set_auto_exposure": (1, True),
        "set_signal_state": (1, True, True), "set_name": (1, "397"),
        "update_channel": (1, {"exposure_ms": 12}), "start_measurement": (),
        "stop_measurement": (), "set_switcher_mode": (True,)},
    "locks": {"lock": None, "unlock": (1,), "set_lock": (1, None, None, 0.1),
              "set_setpoint": None},
    "dac": {"set_voltage": (1, 1.5)},
    "power397": {"set_wavelength": (780.0,)},
}


def _args(lab, target, name):
    args = WRITES[target][name]
    if args is None:  # a setpoint the laser is at (inside the capture range)
        args = (1, lab.client("wavemeter").call("frequency", 1))
    return args


def _writes_offered(lab, target):
    methods = lab.artiq.server.targets[target].methods
    return {name for name, method in methods.items() if method.needs_token}


def test_every_write_is_refused_then_accepted_after_authenticate(artiq_lab, device_state):
    lab = artiq_lab()
    for target, writes in WRITES.items():
        assert _writes_offered(lab, target) == set(writes), target
    assert _writes_offered(lab, "chamber") == set()
    before = device_state(lab)
    for v2 in (True, False):
        for target, writes in WRITES.items():
            client = lab.client(target, v2)
            for name in writes:
                with pytest.raises(RemoteError) as info:
                    client.call(name, *_args(lab, target, name))
                assert info.value.cls == "PermissionError"
                assert info.value.message.startswith(f"{name} changes the lab: call "
                                                     "authenticate(token)")
            assert client.call("ping") is True  # reads stay open
    assert device_state(lab) == before  # nothing changed

    for target, writes in WRITES.items():
        client = lab.client(target)
        with pytest.raises(RemoteError) as info:
            client.call("authenticate", "not-the-token")
        assert (info.value.cls, info.value.message) == (
            "PermissionError", "wrong token: give the lab's write token ([server] token or "
            "IONLAB_TOKEN)")
        with pytest.raises(RemoteError, match="PermissionError"):
            client.call(*next((n, *_args(lab, target, n)) for n in writes))
        assert client.call("authenticate", TOKEN) is True
        for name in writes:
            client.call(name, *_args(lab, target, name))
        other = lab.client(target)  # authentication belongs to one connection
        with pytest.raises(RemoteError, match="PermissionError"):
            other.call(*next((n, *_args(lab, target, n)) for n in writes))
    after = device_state(lab)
    assert after["dac"] == 1.5 and after["power397"] == 780.0
    assert after["exposure"] == 12  # set_exposure, then update_channel


@pytest.fixture
def device_state():
    def state(lab):
        return {"dac": lab.device("dac").voltage(1), "power397": lab.device("power397").wavelength(),
                "exposure": lab.client("wavemeter").call("exposure", 1),
                "locked": lab.client("locks").call("status", 1)["state"]}
    return state


def test_allow_writes_lets_every_client_write(artiq_lab):
    lab = artiq_lab("allow_writes = true")
    assert lab.client("dac").call("set_voltage", 3, -2.0) is None
    assert lab.client("dac", v2=False).call("voltage", 3) == -2.0


def test_without_a_token_authenticate_says_how_to_allow_writes(artiq_lab, monkeypatch):
    monkeypatch.delenv("IONLAB_TOKEN", raising=False)
    lab = artiq_lab(token=None)
    client = lab.client("dac")
    with pytest.raises(RemoteError) as info:
        client.call("authenticate", TOKEN)
    assert info.value.cls == "PermissionError"
    assert "this lab has no write token ([server] token or IONLAB_TOKEN)" in info.value.message
    assert "allow_writes = true in [artiq]" in info.value.message
    with pytest.raises(RemoteError) as info:
        client.call("set_voltage", 1, 1.0)
    assert "this lab has no write token" in info.value.message

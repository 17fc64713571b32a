"""The dataset updater against a master stand-in: the project's own pc_rpc server with a
``master_dataset_db`` target, which records every set(key, value, persist) it takes."""

import socket
import threading

import pytest

from services.artiq.datasets import value_of
from services.artiq.settings import ArtiqSettings
from services.config import ConfigError, parse
from tests.waiting import wait_until

KEYS = """
[artiq.datasets]
master = "127.0.0.1"
port = {port}
interval_s = {interval}
persist = {persist}
timeout_s = {timeout}
retry_max_s = 0.2
[artiq.datasets.keys]
"lasers.397.frequency_thz" = "wavemeter/1"
"lasers.866.frequency_thz" = "wavemeter/2"
"lasers.397.lock" = "lock/1"
"vacuum.chamber_mbar" = "logger/chamber"
"""


def datasets(port, interval=0.05, persist="false", timeout=2.0):
    return KEYS.format(port=port, interval=interval, persist=persist, timeout=timeout)


def updater(lab):
    return lab.artiq.updater


def test_chosen_channels_reach_the_master(artiq_lab, master):
    stand_in = master()
    lab = artiq_lab(datasets(stand_in.port, persist="true"))
    wm, locks = lab.client("wavemeter"), lab.writer("locks")
    wait_until(lambda: stand_in.values("vacuum.chamber_mbar"), what="a pressure")
    assert 1e-11 < stand_in.values("vacuum.chamber_mbar")[-1] < 1e-9
    lab.measured()
    latest = wm.call("frequency", 1)
    wait_until(lambda: stand_in.values("lasers.397.frequency_thz")[-1:] == [latest],
               what="the newest frequency")
    assert stand_in.values("lasers.866.frequency_thz")[-1] == wm.call("frequency", 2)
    assert stand_in.values("lasers.397.lock")[-1] == "unlocked"
    locks.call("lock", 1, latest)
    wait_until(lambda: stand_in.values("lasers.397.lock")[-1:] == ["locked"], what="the lock state")
    assert {persist for _, _, persist in stand_in.calls} == {True}
    assert updater(lab).status()["connected"] is True
    assert lab.srv.call(lambda: lab.artiq.health())["datasets"]["sent"] >= 5


def test_at_most_one_set_per_dataset_per_interval_the_newest_waiting(artiq_lab, master):
    stand_in = master()
    lab = artiq_lab(datasets(stand_in.port, interval=3600))
    wait_until(lambda: stand_in.values("lasers.397.frequency_thz"), what="the first frequency")
    first = stand_in.values("lasers.397.frequency_thz")
    for _ in range(3):
        lab.measured()  # new readings, each published on the hub
    wait_until(lambda: lab.srv.call(lambda: updater(lab).status()["pending"]) >= 2,
               what="newer values to wait for their turn")
    assert stand_in.values("lasers.397.frequency_thz") == first  # still only the first set
    assert len(first) == 1 and len(stand_in.values("lasers.866.frequency_thz")) == 1


def test_readings_that_are_not_ok_are_not_pushed(artiq_lab, master):
    stand_in = master()
    lab = artiq_lab(datasets(stand_in.port))
    wm = lab.client("wavemeter")
    wait_until(lambda: stand_in.values("lasers.866.frequency_thz"), what="channel 2's frequency")
    lab.sim.set_signal(2, 0)  # no light on channel 2
    lab.measured()
    wait_until(lambda: wm.call("channel", 2)["status"] == "no signal", what="channel 2 to lose it")
    sent_for_866 = len(stand_in.values("lasers.866.frequency_thz"))
    lab.measured()
    newest = wm.call("frequency", 1)
    wait_until(lambda: stand_in.values("lasers.397.frequency_thz")[-1:] == [newest],
               what="a later reading of channel 1 to be pushed")
    assert len(stand_in.values("lasers.866.frequency_thz")) == sent_for_866
    assert None not in stand_in.values("lasers.866.frequency_thz")


def test_the_updater_reconnects_after_the_master_restarts(artiq_lab, master):
    stand_in = master()
    port = stand_in.port
    lab = artiq_lab(datasets(port))
    wm = lab.client("wavemeter")
    wait_until(lambda: stand_in.values("lasers.397.frequency_thz"), what="a first push")
    stand_in.stop()
    lab.measured()  # a new reading while the master is down
    wait_until(lambda: lab.srv.call(lambda: updater(lab).status()["connected"]) is False,
               what="the updater to notice")
    assert lab.srv.call(lambda: updater(lab).status()["last_error"])
    assert wm.call("ping") is True  # the lab carries on meanwhile
    restarted = master(port)
    newest = wm.call("frequency", 1)
    wait_until(lambda: restarted.values("lasers.397.frequency_thz")[-1:] == [newest],
               what="the newest value at the restarted master")
    assert lab.srv.call(lambda: updater(lab).status()["connected"]) is True


def test_a_refused_dataset_does_not_stop_the_others(artiq_lab, master):
    stand_in = master(refuse=("lasers.866.frequency_thz",))
    lab = artiq_lab(datasets(stand_in.port))
    wait_until(lambda: lab.srv.call(lambda: updater(lab).status()["refused"]) >= 1, what="a refusal")
    lab.measured()
    newest = lab.client("wavemeter").call("frequency", 1)
    wait_until(lambda: stand_in.values("lasers.397.frequency_thz")[-1:] == [newest],
               what="the other datasets to go on")
    assert lab.srv.call(lambda: updater(lab).status()["connected"]) is True


def test_a_master_that_never_answers_holds_up_nothing(artiq_lab):
    hung = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():  # takes connections and reads nothing: every call hangs
        hung.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(hung.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        lab = artiq_lab(datasets(hung.getsockname()[1], timeout=0.3))
        wait_until(lambda: accepted, what="the updater to connect")
        wm = lab.client("wavemeter")
        for _ in range(10):
            assert wm.call("ping") is True
            lab.measured()  # readings keep flowing
        wait_until(lambda: lab.srv.call(lambda: updater(lab).status()["last_error"]),
                   what="the updater to give up on the silent master")
        assert "TimeoutError" in lab.srv.call(lambda: updater(lab).status()["last_error"])
    finally:
        stop.set()
        thread.join(10)
        for conn in accepted:
            conn.close()
        hung.close()


@pytest.mark.parametrize("text, key, message", [
    ('[artiq.datasets]\n[artiq.datasets.keys]\n"a" = "wavemeter/1"', "artiq.datasets.master",
     "missing; expected a string"),
    ('[artiq.datasets]\nmaster = "m"', "artiq.datasets.keys", "expected a table of dataset keys"),
    ('[artiq.datasets]\nmaster = "m"\n[artiq.datasets.keys]\n"a" = "chamber"',
     "artiq.datasets.keys.a", 'expected "<hub channel>" or "<hub channel>:<field>"'),
    ('[artiq.datasets]\nmaster = "m"\n[artiq.datasets.keys]\n"a" = "vacuum/x"',
     "artiq.datasets.keys.a", "the field is needed for others"),
    ('[artiq.datasets]\nmaster = "m"\nport = 99999\n[artiq.datasets.keys]\n"a" = "lock/1"',
     "artiq.datasets.port", "expected a TCP port"),
    ('[artiq.datasets]\nmaster = "m"\nrate = 1\n[artiq.datasets.keys]\n"a" = "lock/1"',
     "artiq.datasets.rate", "unknown key"),
])
def test_dataset_config_errors_name_the_key(text, key, message):
    with pytest.raises(ConfigError) as info:
        ArtiqSettings.from_config(parse(f"[artiq]\n{text}\n", "lab.toml"))
    assert info.value.key == key and message in info.value.expected


def test_fields_and_statuses():
    settings = ArtiqSettings.from_config(parse(
        '[artiq.datasets]\nmaster = "m"\n[artiq.datasets.keys]\n"a" = "wavemeter/1"\n'
        '"b" = "lock/2"\n"c" = "logger/chamber"\n"d" = "lock/2:error_mhz"\n'))
    assert settings.datasets.keys == {"a": ("wavemeter/1", "frequency_thz"),
                                      "b": ("lock/2", "state"), "c": ("logger/chamber", "value"),
                                      "d": ("lock/2", "error_mhz")}
    assert value_of({"state": "locked", "error_mhz": 0.3}, "error_mhz") == 0.3
    assert value_of({"status": "ok", "value": float("nan")}, "value") is None
    assert value_of({"status": "underexposed", "frequency_thz": None}, "frequency_thz") is None

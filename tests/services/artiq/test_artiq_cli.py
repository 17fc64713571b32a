"""`ionlab artiq` and `ionlab artiq device-db` as processes, and `ionlab run` with [artiq].

The controller is started as artiq_ctlmgr starts one: the device_db entry's
command, formatted with {bind} and {port}, split with shlex; then pinged on
the first target and ended with terminate(), as artiq_ctlmgr does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.waiting import wait_until

from .wire import Client, RemoteError

TOKEN = "cli-token"
LAB = """
[server]
token = "{token}"

[devices.wavemeter]
kind = "highfinesse"
simulation = true
poll_s = 0.05
channels = {{ 1 = "397 cooling", 2 = "866 repump" }}

[devices.chamber]
kind = "tpg"
simulation = true
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}

[devices.dac]
kind = "dac"
simulation = true
resource = "TCPIP::192.0.2.20::INSTR"
ports = 2

[devices.piezo]
kind = "dac"
simulation = true
resource = "TCPIP::192.0.2.21::INSTR"
ports = 1

[locks]
state_file = "{tmp}/locks.json"
[locks.2]
output = "piezo"
port = 1

[logger]
db = "{tmp}/lab.sqlite"
spool_dir = "{tmp}/spool"
{extra}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(LAB.format(token=TOKEN, tmp=tmp_path.as_posix(), extra=extra),
                    encoding="utf-8")
    return path


def ionlab() -> str:
    return shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))


class Process:
    """A command in the background, its output in a file, waited on for a line."""

    def __init__(self, args: list[str], folder: Path):
        self.log = folder / f"out-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if k != "IONLAB_TOKEN"}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                            env=env)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_line(self, pattern: str) -> re.Match:
        def found():
            assert self.process.poll() is None, f"exited {self.process.returncode}:\n" \
                                                f"{self.output()}"
            return re.search(pattern, self.output())
        return wait_until(found, what=f"{pattern!r} in the output", timeout=60)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def processes():
    started = []

    def start(args, folder):
        started.append(Process(args, folder))
        return started[-1]

    yield start
    for process in started:
        process.kill()


SERVING = r"ionlab artiq: serving .* at 127\.0\.0\.1:(\d+); targets: ([a-z0-9, ]+);"


def test_help_explains_the_controller(run_cli):
    result = run_cli("artiq", "--help")
    assert result.returncode == 0
    for text in ("--no-localhost-bind", "--bind ADDRESS", "3280", "device-db",
                 "authenticate(token)"):
        assert text in result.stdout


def test_standalone_controller_serves_pings_and_stops_on_terminate(tmp_path, processes):
    lab = write_lab(tmp_path)
    proc = processes([ionlab(), "artiq", "--config", str(lab), "--port", "0",
                      "--bind", "127.0.0.1", "--no-localhost-bind"], tmp_path)
    match = proc.wait_line(SERVING)
    port, targets = int(match[1]), match[2].split(", ")
    assert targets == ["chamber", "dac", "locks", "wavemeter"]  # piezo drives lock 2
    assert "changes need authenticate(token) first" in proc.output()
    first = Client(port, targets[0])  # what artiq_ctlmgr pings
    assert first.call("ping") is True
    wm = Client(port, "wavemeter")
    wait_until(lambda: wm.call("status")["state"] == "ok", what="the wavemeter")
    frequency = wait_until(lambda: _ok(wm, "frequency", 1), what="a first reading")
    assert 755.0 < frequency < 755.5  # 397 nm
    dac = Client(port, "dac", v2=False)
    with pytest.raises(RemoteError, match="PermissionError"):
        dac.call("set_voltage", 1, 2.0)
    dac.call("authenticate", TOKEN)
    dac.call("set_voltage", 1, 2.0)
    assert dac.call("voltage", 1) == 2.0  # the device host opened the DAC itself
    assert Client(port, "chamber").call("read")[0]["unit"] == "mbar"
    first.call("terminate")
    assert proc.wait() == 0
    assert "Traceback" not in proc.output()


def _ok(client, *call):
    try:
        return client.call(*call)
    except RemoteError:
        return None


def test_sigterm_stops_the_controller_cleanly(tmp_path, processes):
    proc = processes([ionlab(), "artiq", "--config", str(write_lab(tmp_path)), "-p", "0",
                      "--bind", "127.0.0.1", "--no-localhost-bind"], tmp_path)
    port = int(proc.wait_line(SERVING)[1])
    assert Client(port, "locks").call("ping") is True
    proc.process.send_signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert "Traceback" not in proc.output()


def _device_db(run_cli, *args) -> dict:
    result = run_cli("artiq", "device-db", *args)
    assert result.returncode == 0, result.stderr
    namespace = {"device_db": {"core": {"type": "local"}}}
    exec(result.stdout, namespace)  # the printed text is Python to paste into device_db.py
    return namespace["device_db"]


def test_device_db_entries_start_a_working_controller(tmp_path, run_cli, processes):
    lab = write_lab(tmp_path)
    db = _device_db(run_cli, "--config", str(lab), "--host", "127.0.0.1")
    assert db["core"] == {"type": "local"}  # added to, not replaced
    controller = db["wavemeter"]
    assert (controller["type"], controller["host"], controller["port"]) == ("controller",
                                                                           "127.0.0.1", 3280)
    assert controller["target_name"] == "wavemeter"
    for name in ("locks", "chamber", "dac"):
        assert db[name] == {"type": "controller_aux_target", "controller": "wavemeter",
                            "target_name": name}
    assert "piezo" not in db
    # What artiq_ctlmgr does with it: substitute, split, run, ping the first target.
    port = free_port()  # the entry's port, changed so that the test takes a free one
    entry = {**controller, "port": port}
    command = entry["command"].format(name="wavemeter", bind="127.0.0.1", **entry)
    words = shlex.split(command)
    assert words[:4] == [str(Path(ionlab()).resolve()), "artiq", "--config", str(lab.resolve())]
    proc = processes(words, tmp_path)
    proc.wait_line(rf"at 127\.0\.0\.1:{port}, \[::1\]:{port}; targets")
    ids = Client(port, "chamber").identity
    assert Client(port, ids["targets"][0]).call("ping") is True
    for entry in db.values():  # every entry reaches its target
        if entry.get("type") == "controller_aux_target":
            assert Client(port, entry["target_name"], host="::1").call("ping") is True
    Client(port, "wavemeter").call("terminate")
    assert proc.wait() == 0


def test_device_db_for_ionlab_run_has_no_command(tmp_path, run_cli):
    lab = write_lab(tmp_path, '[artiq]\nbind = ["192.0.2.5"]\nport = 3290\n')
    db = _device_db(run_cli, "--config", str(lab), "--run")
    assert db["wavemeter"] == {"type": "controller", "host": "192.0.2.5", "port": 3290,
                               "target_name": "wavemeter"}
    assert set(db) == {"core", "wavemeter", "locks", "chamber", "dac"}
    result = run_cli("artiq", "device-db", "--config", str(write_lab(tmp_path)), "--run")
    assert result.returncode == 2
    assert "has no [artiq] table, so `ionlab run` serves no ARTIQ targets" in result.stderr


def test_demo_device_db(run_cli):
    db = _device_db(run_cli)
    assert set(db) == {"core", "wavemeter", "locks", "chamber", "loadlock", "power397",
                       "temperatures"}
    assert "--config" not in db["wavemeter"]["command"]  # the demo needs none
    assert db["wavemeter"]["host"] == "::1"


@pytest.mark.parametrize("args, extra, message", [
    (["--port", "70000"], "", "--port: expected a TCP port 0..65535, got 70000"),
    (["--no-localhost-bind"], "", "nothing to listen on: --no-localhost-bind needs --bind"),
    ([], "[artiq]\nprot = 1\n", "config error: {lab}: artiq.prot: unknown key"),
    ([], '[artiq]\ndevices = ["piezo"]\n',
     "config error: {lab}: artiq.devices: 'piezo' drives lock 2; ARTIQ moves it through the "
     "locks target"),
    ([], '[artiq]\ndevices = ["wavemeter"]\n',
     "artiq.devices: 'wavemeter' is a wavemeter: the wavemeter target serves it"),
    ([], '[artiq]\ndevices = ["nope"]\n', "artiq.devices: 'nope' is not a [devices] entry"),
    ([], '[artiq]\nbind_localhost = false\n', "artiq.bind: nothing to listen on"),
    ([], '[devices.locks]\nkind = "tpg"\nsimulation = true\nport = "x"\ngauges = { 1 = "g" }\n',
     "devices.locks: a device with an ARTIQ target needs a name without spaces other than "
     "wavemeter and locks"),
    ([], '[artiq.datasets]\nmaster = "m"\n[artiq.datasets.keys]\n"p" = "logger/chamber"\n',
     "artiq.datasets.keys.p: logger/chamber is published by the logger, which runs in `ionlab "
     "run`, not in `ionlab artiq`"),
])
def test_bad_configuration_is_a_clear_error(tmp_path, run_cli, args, extra, message):
    lab = write_lab(tmp_path, extra)
    result = run_cli("artiq", "--config", str(lab), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message.format(lab=lab) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_exit_1_naming_it(tmp_path, run_cli):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("artiq", "--config", str(write_lab(tmp_path)), "--port", str(port),
                         "--bind", "127.0.0.1", "--no-localhost-bind")
    assert result.returncode == 1
    assert f"ionlab artiq: cannot listen on 127.0.0.1:{port}: Address already in use" in \
        result.stderr
    assert "Traceback" not in result.stderr


def test_ionlab_run_serves_the_targets_from_the_lab_process(tmp_path, processes):
    lab = write_lab(tmp_path, "[artiq]\nport = 0\nbind_localhost = false\n"
                              'bind = ["127.0.0.1"]\n')
    http_port = free_port()
    proc = processes([ionlab(), "run", "--config", str(lab), "--port", str(http_port)],
                     tmp_path)
    port = int(proc.wait_line(r"ionlab: ARTIQ controllers \(pc_rpc\) at 127\.0\.0\.1:(\d+)")[1])
    ids = Client(port, "wavemeter").identity
    assert ids["targets"] == ["chamber", "dac", "locks", "wavemeter"]
    assert Client(port, ids["targets"][0]).call("ping") is True
    assert "terminate" not in Client(port, "wavemeter").methods  # the lab is not ARTIQ's to end
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10) as r:
        health = json.load(r)
    assert health["services"]["artiq"]["listening"] == [f"127.0.0.1:{port}"]
    # The device targets use the logger's connection: its readings are the logger's devices'.
    wait_until(lambda: _ok(Client(port, "chamber"), "value"), what="a pressure")
    proc.process.send_signal(signal.SIGINT)
    assert proc.wait() == 0
    assert "Traceback" not in proc.output()


def test_ionlab_run_with_the_pc_rpc_port_taken_is_exit_1_naming_it(tmp_path, run_cli):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        lab = write_lab(tmp_path, f'[artiq]\nport = {port}\nbind_localhost = false\n'
                                  'bind = ["127.0.0.1"]\n')
        result = run_cli("run", "--config", str(lab), "--port", str(free_port()))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"ionlab: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_lab_without_a_wavemeter_serves_its_devices(tmp_path, run_cli, processes):
    lab = tmp_path / "vacuum.toml"
    lab.write_text('[devices.chamber]\nkind = "tpg"\nsimulation = true\nport = "/dev/ttyUSB0"\n'
                   'gauges = { 1 = "chamber" }\n', encoding="utf-8")
    db = _device_db(run_cli, "--config", str(lab))
    assert set(db) == {"core", "chamber"} and db["chamber"]["type"] == "controller"
    proc = processes([ionlab(), "artiq", "--config", str(lab), "-p", "0", "--bind",
                      "127.0.0.1", "--no-localhost-bind"], tmp_path)
    port = int(proc.wait_line(SERVING)[1])
    assert Client(port, "chamber").identity["targets"] == ["chamber"]
    assert 1e-11 < Client(port, "chamber").call("value") < 1e-9
    empty = tmp_path / "empty.toml"
    empty.write_text("[server]\n", encoding="utf-8")
    for args in (["artiq"], ["artiq", "device-db"]):
        result = run_cli(*args, "--config", str(empty))
        assert result.returncode == 2
        assert f"{empty} has no wavemeter and no device to serve" in result.stderr

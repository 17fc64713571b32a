"""`ionlab wavemeter` and `ionlab rpc` as real processes: serving, clean shutdown, errors."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import sseclient

from services.cli import main

EXE = str(Path(sys.executable).with_name("ionlab"))
WAVEMETER = "\n[devices.wm]\nkind = 'highfinesse'\nsimulation = true\n"


@pytest.fixture
def server(tmp_path):
    """start(*args) -> (process, url): `ionlab wavemeter --port 0` on the demo lab."""
    procs = []

    def start(*args, env=None):
        proc = subprocess.Popen([EXE, "wavemeter", "--port", "0", *args],
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "IONLAB_TOKEN": "cli-token", **(env or {})})
        procs.append(proc)
        for line in proc.stderr:
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                return proc, match.group(1)
        pytest.fail(f"the server did not start: exit {proc.wait()}")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_cleanly_with_clients_connected(server, sig):
    proc, url = server()
    stream = urllib.request.urlopen(url + "/api/v1/stream?channels=wavemeter/*", timeout=30)
    events = sseclient.SSEClient(stream).events()
    first = next(events)
    assert first.event.startswith("wavemeter/")
    idle = urllib.request.urlopen(url + "/api/v1/channels", timeout=30)  # a keep-alive client
    assert len(json.loads(idle.read())) == 8
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    rest = list(events)  # returns once the server ends the stream; a hang would time out
    assert all(e.event.startswith("wavemeter/") for e in rest)
    log = proc.stderr.read()
    assert "stopped" in log and "Traceback" not in log


def test_rpc_command_calls_methods_and_reports_errors(server, run_cli, capsys, monkeypatch,
                                                     api):
    proc, url = server()
    done = run_cli("rpc", "--url", url, "channel", "channel=1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "397 cooling"

    def rpc(*args, token=None):
        if token:
            monkeypatch.setenv("IONLAB_TOKEN", token)
        else:
            monkeypatch.delenv("IONLAB_TOKEN", raising=False)
        code = api.in_thread(main, ["rpc", "--url", url, *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = rpc("set_exposure", "2", "12", token="cli-token")
    assert code == 0 and json.loads(out)["exposure_ms"] == 12
    code, out, err = rpc("set_exposure", "2", "13")
    assert code == 1 and "-32001" in err
    assert "set_exposure needs the lab's write token" in err
    assert "no token was sent: set IONLAB_TOKEN to the lab's write token" in err
    code, out, err = rpc("set_exposure", "2", "13", token="not-the-token")
    assert code == 1 and "the token sent is not this server's write token" in err
    assert "the token of IONLAB_TOKEN was sent; set it to the lab's write token" in err
    code, out, err = rpc("--token", "also-wrong", "set_exposure", "2", "13")
    assert code == 1 and "the token of --token was sent" in err
    code, out, err = rpc("channel", "2")
    assert json.loads(out)["exposure_ms"] == 12
    code, out, err = rpc("frequency", "42")
    assert code == 1 and "channel 42: no such channel" in err
    code, out, err = rpc("nope")
    assert code == 1 and "method not found" in err
    code, out, err = rpc("channel", "1", "channel=1")
    assert code == 2 and "not both" in err
    code, out, err = rpc("methods")
    assert "set_exposure" in {m["name"] for m in json.loads(out)}
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_rpc_command_without_a_server_says_so(capsys, api):
    args = ["rpc", "--url", "http://127.0.0.1:9", "--timeout", "5", "channels"]
    assert api.in_thread(main, args) == 1
    assert "cannot reach the server at http://127.0.0.1:9: connection refused" in \
        capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("[wavemeter]\nstale_after = 2\n", "lab.toml: wavemeter.stale_after: unknown key"),
    ("[wavemeter]\nstale_after_s = -1\n", "lab.toml: wavemeter.stale_after_s: expected a number > 0"),
    ("[devices.wm2]\nkind='highfinesse'\nsimulation=true\n",
     "lab.toml: wavemeter.device: missing; name the [devices.*] entry of kind 'highfinesse' to "
     "use (found: wm, wm2)"),
    ("[wavemeter]\ndevice = 'gauge'\n[devices.gauge]\nkind='tpg'\nport='/dev/null'\ngauges={1='g'}\n",
     "lab.toml: wavemeter.device: expected the name of a [devices.*] entry of kind 'highfinesse'"),
    ("[server]\nport = 'x'\n", "lab.toml: server.port: expected an integer"),
    ("[devices.wm.channels]\n99 = 'x'\n", "lab.toml: devices.wm.channels.99"),
])
def test_config_errors_name_file_and_key_and_exit_2(capsys, api, tmp_path, text, message):
    path = tmp_path / "lab.toml"
    path.write_text(text + WAVEMETER)
    assert api.in_thread(main, ["wavemeter", "--config", str(path)]) == 2
    assert message.replace("lab.toml", str(path)) in capsys.readouterr().err

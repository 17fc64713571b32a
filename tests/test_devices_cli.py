"""`ionlab devices`: the demo lab, a real gauge on a pty, and a device that cannot be reached."""

import re
import socket

from services.config import load
from tests.drivers.fakes import FakeTPG, PtyPort

HEADER = ["DEVICE", "KIND", "SENSOR", "NAME", "READING", "UNIT", "STATUS", "READ AT (UTC)"]


def table(stdout: str) -> list[list[str]]:
    """The printed table as rows of cells (cells are separated by two or more spaces)."""
    lines = stdout.strip().splitlines()
    assert re.split(r"\s{2,}", lines[0]) == HEADER
    return [re.split(r"\s{2,}", line) for line in lines[1:]]


def demo_sensors() -> set[tuple[str, str]]:
    """(device, sensor) for every sensor of the demo lab, from services/demo.toml."""
    expected = set()
    for name, spec in load(None).devices.items():
        opts = spec.options
        if spec.kind == "highfinesse":
            expected |= {(name, f"{name}/{ch}") for ch in opts["channels"]}
        elif spec.kind == "tpg":
            expected |= {(name, gauge) for gauge in opts["gauges"].values()}
        elif spec.kind == "ls218":
            expected |= {(name, sensor) for sensor in opts["sensors"].values()}
        else:
            expected.add((name, name))
    return expected


def test_demo_lab_lists_every_device_and_sensor(run_cli):
    result = run_cli("devices")
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert {(row[0], row[2]) for row in rows} == demo_sensors()
    assert {row[0] for row in rows} == {"wavemeter", "chamber", "loadlock", "power397",
                                        "temperatures"}
    by_sensor = {row[2]: row for row in rows}
    assert by_sensor["chamber"][1:2] + by_sensor["chamber"][5:7] == ["tpg", "mbar", "ok"]
    assert 5e-11 < float(by_sensor["chamber"][4]) < 2e-10
    assert 1e-3 <= float(by_sensor["power397"][4]) <= 3e-3
    assert by_sensor["trap rf"][5] == "K" and 307 < float(by_sensor["trap rf"][4]) < 309
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", row[7]) for row in rows)
    # Each sensor's configured name beside its id; values with the digits the instrument
    # resolves (the dashboard shows the same): 1 MHz, mK, a five-digit mantissa.
    assert by_sensor["wavemeter/1"][3] == "397 cooling" and by_sensor["chamber"][3] == "-"
    assert re.fullmatch(r"\d{3}\.\d{6}", by_sensor["wavemeter/1"][4])
    assert re.fullmatch(r"\d{3}\.\d{3}", by_sensor["trap rf"][4])
    assert re.fullmatch(r"\d\.\d{4}e-\d\d", by_sensor["chamber"][4])


def test_real_gauge_on_a_pty_shows_its_value(tmp_path, run_cli):
    with PtyPort(FakeTPG()) as pty:
        pty.fake.gauges = {1: (0, 2.5e-9), 2: (1, 1.0e-11)}
        pty.fake.unit = 1
        config = tmp_path / "lab.toml"
        config.write_text(f'[devices.vacuum]\nkind = "tpg"\nport = "{pty.path}"\n'
                          f'gauges = {{ 1 = "chamber", 2 = "ion pump" }}\n')
        result = run_cli("devices", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert [row[:7] for row in table(result.stdout)] == [
        ["vacuum", "tpg", "chamber", "-", "2.5000e-09", "Torr", "ok"],
        ["vacuum", "tpg", "ion pump", "-", "1.0000e-11", "Torr", "underrange"],
    ]
    assert pty.fake.violations == []


def test_one_unreachable_device_of_fifteen_is_a_row_of_its_own_and_exit_1(tmp_path, run_cli):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]  # closed again below: connecting is refused
    gauges = [f'[devices.gauge{n}]\nkind = "tpg"\nsimulation = true\nport = "/dev/null"\n'
              f'gauges = {{ 1 = "gauge {n}" }}\n' for n in range(14)]
    unreachable = (f'[devices.loadlock]\nkind = "tpg"\nport = "tcp://127.0.0.1:{port}"\n'
                   'gauges = { 1 = "loadlock" }\n')
    config = tmp_path / "lab.toml"
    config.write_text("\n".join(gauges[:7] + [unreachable] + gauges[7:]))
    result = run_cli("devices", "--config", str(config))
    assert result.returncode == 1
    rows = table(result.stdout)
    assert [row[0] for row in rows] == [f"gauge{n}" for n in range(7)] + ["loadlock"] + [
        f"gauge{n}" for n in range(7, 14)]
    failed = rows[7]
    assert failed[:7] == ["loadlock", "tpg", "-", "-", "-", "-", "error"]
    assert failed[7].startswith(f"cannot open: loadlock: cannot open tcp://127.0.0.1:{port}: ")
    assert all(row[6] == "ok" for row in rows[:7] + rows[8:])
    assert result.stderr == "ionlab devices: 1 of 15 devices failed: loadlock\n"


def test_device_failing_to_read_is_a_row_and_exit_1(tmp_path, run_cli):
    with PtyPort(FakeTPG()) as pty:
        pty.fake.mode = "nak"
        config = tmp_path / "lab.toml"
        config.write_text(f'[devices.vacuum]\nkind = "tpg"\nport = "{pty.path}"\n'
                          'gauges = { 1 = "chamber" }\n\n'
                          '[devices.temps]\nkind = "ls218"\nsimulation = true\nport = "x"\n'
                          'sensors = { 1 = "table" }\n')
        result = run_cli("devices", "--config", str(config))
    assert result.returncode == 1
    rows = table(result.stdout)
    assert rows[0] == ["vacuum", "tpg", "-", "-", "-", "-", "error",
                       "vacuum: controller refused PR1 (NAK)"]
    assert rows[1][:3] == ["temps", "ls218", "table"] and rows[1][6] == "ok"

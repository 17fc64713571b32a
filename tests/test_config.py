"""Config parsing: the demo lab, and errors that name the file and the key."""

from pathlib import Path

import pytest

from services.config import ConfigError, load, parse


def test_demo_lab_describes_the_small_lab():
    cfg = load(None)
    kinds = sorted(spec.kind for spec in cfg.devices.values())
    assert kinds == ["highfinesse", "ls218", "pm100", "tpg", "tpg"]
    assert all(spec.simulation for spec in cfg.devices.values())
    assert len(cfg.devices["wavemeter"].options["channels"]) == 8
    assert cfg.is_demo


@pytest.mark.parametrize(
    "text, message",
    [
        ("[devices.x]\nkind = 3\n", "lab.toml: devices.x.kind: expected a string, got 3"),
        ("[devices.x]\nsimulation = true\n", "lab.toml: devices.x.kind: missing; expected a string"),
        ("[devices.x]\nkind='tpg'\npoll_s = -1\n",
         "lab.toml: devices.x.poll_s: expected a number from 0.001 to 86400, got -1.0"),
        ("[devices.x]\nkind='tpg'\nsimulation = 'yes'\n", "devices.x.simulation: expected true or false"),
        ("devices = 3\n", "lab.toml: devices: expected a table, got 3"),
        ("[devices\n", "lab.toml: not valid TOML"),
    ],
)
def test_errors_name_file_and_key(text, message):
    with pytest.raises(ConfigError) as info:
        parse(text, "lab.toml")
    assert message in str(info.value)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"lab.toml: devices.x.kind: one of .*highfinesse.*'laser'"):
        parse("[devices.x]\nkind = 'laser'\n", "lab.toml")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nope.toml")


def test_cli_exits_2_with_one_line_naming_the_key(tmp_path, run_cli):
    bad = tmp_path / "lab.toml"
    bad.write_text("[devices.gauge]\nkind = 'tpg'\npoll_s = 'fast'\n")
    result = run_cli("devices", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"ionlab: config error: {bad}: devices.gauge.poll_s: expected a number, got 'fast'"
    ]



LAB = """
[server]
port = 0

[devices.wavemeter]
kind = "highfinesse"
simulation = true
channels = {{ 1 = "397" }}

[devices.gauge]
kind = "tpg"
simulation = true
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}
{gauge}
[logger]
db = "{db}"
spool_dir = "{tmp}/spool"
{logger}
[locks]
state_file = "{state}"
{extra}"""


def lab_toml(tmp, gauge="", logger="", extra="", state=None, db=None) -> Path:
    """The lab config above with lines added to the gauge's table, the logger's or the end."""
    config = tmp / "lab.toml"
    config.write_text(LAB.format(tmp=tmp, gauge=gauge, logger=logger, extra=extra,
                                 state=state or f"{tmp}/locks.json",
                                 db=db or f"{tmp}/lab.sqlite"), encoding="utf-8")
    return config


MISTAKES = [  # (where, lines, the error after "file: ")
    ("extra", "[devices.temps]\nkind = 'ls218'\nsimulation = true\nport = 'x'\n"
     "sensors = { 3 = 'chamber' }", "devices.temps: sensor 'chamber' is also a sensor of "
     "device 'gauge'; give it another name (one series must not mix the readings of two "
     "devices)"),
    ("gauge", "poll_s = 1e-300", "devices.gauge.poll_s: expected a number from 0.001 to 86400, "
     "got 1e-300"),
    ("logger", "batch_s = 1e308", "logger.batch_s: expected a number from 0.01 to 3600, got "
     "1e+308"),
    ("extra", "[loger]\nbatch_s = 1", "loger: unknown table; did you mean 'logger'? (a lab "
     "config has the tables server, devices, wavemeter, locks, logger, artiq, alarms, notify, "
     "web)"),
    ("logger", 'retention = "99999999d"', "logger.retention: expected a duration from 1h "
     "to 36600d (a century), got '99999999d'"),
    ("logger", 'retention = "99999999999999d"', "logger.retention: expected a duration like "
     "90s, 5min, 1h, 1d or 2w, got '99999999999999d'"),
    ("logger", 'retension = "90d"', "logger.retension: unknown key; expected one of batch_s, db, "
     "devices, ingest, max_batch, mqtt, retention, retry_s, sensors, spool_dir, spool_max_mb, "
     "timeout_s; did you mean 'retention'?"),
    ("logger", "timeout_s = 1e9", "logger.timeout_s: expected a number from 0.1 to 600, got "
     "1000000000.0"),
    ("logger", "max_batch = 0", "logger.max_batch: expected an integer from 1 to 1000000, got 0"),
    ("db", "mysql://db.lab/ionlab", "logger.db: unsupported database URL "
     "'mysql://db.lab/ionlab': expected postgresql://[user@]host[:port]/database or an SQLite "
     "file path"),
    ("gauge", "timeout_s = 1e308", "devices.gauge.timeout_s: expected 0.001 to 600 seconds, got "
     "1e+308"),
]


@pytest.mark.parametrize("where, lines, expected", MISTAKES)
def test_every_config_mistake_is_one_line_and_exit_2(tmp_path, run_cli, where, lines, expected):
    config = lab_toml(tmp_path, **{where: lines})
    result = run_cli("run", "--config", str(config))
    assert (result.returncode, result.stderr.strip().splitlines()) == (
        2, [f"ionlab: config error: {config}: {expected}"])


def test_a_key_given_twice_is_not_valid_toml(tmp_path):
    config = lab_toml(tmp_path, logger="batch_s = 1\nbatch_s = 2")
    with pytest.raises(ConfigError, match=r"not valid TOML \(Cannot overwrite a value"):
        load(config)


def test_a_spool_folder_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, run_cli):
    (tmp_path / "a-file").write_text("not a folder")
    config = lab_toml(tmp_path, logger=f'spool_dir = "{tmp_path}/a-file/spool"')
    config.write_text(config.read_text().replace(f'spool_dir = "{tmp_path}/spool"\n', "", 1))
    result = run_cli("run", "--config", str(config))
    assert (result.returncode, result.stderr.strip().splitlines()) == (2, [
        f"ionlab: config error: {config}: logger.spool_dir: cannot make the lock file "
        f"{tmp_path}/a-file/spool/spool.lock ([Errno 20] Not a directory: "
        f"'{tmp_path}/a-file/spool')"])


@pytest.mark.parametrize("address, why", [
    ("999.1.1.1", "([Errno -2] Name or service not known); expected an address or name of this "
     "machine"),
    ("192.0.2.1", "(Cannot assign requested address); expected an address of this machine"),
])
def test_an_address_this_machine_cannot_listen_on_is_one_line_and_exit_2(tmp_path, run_cli,
                                                                         address, why):
    result = run_cli("run", "--config", str(lab_toml(tmp_path)), "--bind", address)
    assert (result.returncode, result.stderr.strip().splitlines()) == (2, [
        f"ionlab: config error: --bind: cannot listen on {address!r} {why}, e.g. 127.0.0.1 or "
        "0.0.0.0"])


def test_toml_nested_too_deeply_is_one_line_and_exit_2(tmp_path, run_cli):
    config = tmp_path / "lab.toml"
    config.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    result = run_cli("logger", "--config", str(config))
    assert (result.returncode, result.stderr.strip().splitlines()) == (2, [
        f"ionlab: config error: {config}: not usable TOML: arrays or tables nested too deeply"])


def test_a_lock_state_path_that_cannot_be_used_is_exit_2_not_a_traceback(tmp_path, run_cli):
    config = lab_toml(tmp_path, state=str(tmp_path))
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"ionlab: config error: {config}: locks.state_file: cannot use {tmp_path}: state_file: "
        f"cannot read {tmp_path}: [Errno 21] Is a directory: '{tmp_path}'")


def test_unknown_top_level_tables_are_refused_and_the_other_services_tables_are_known():
    with pytest.raises(ConfigError, match=r"^lab.toml: alrams: unknown table; did you mean "
                       r"'alarms'\?"):
        parse("[alrams]\n", "lab.toml")
    with pytest.raises(ConfigError, match=r"^lab.toml: db: unknown key \(a lab config has"):
        parse('db = "x"\n', "lab.toml")
    parse("[server]\n[devices]\n[wavemeter]\n[locks]\n[logger]\n[artiq]\n[alarms]\n[notify]\n"
          "[web]\n", "lab.toml")


def _server(config):
    from services.web.app import ServerConfig

    return ServerConfig.from_config(config, environ={})


def _wavemeter(config):
    from services.wavemeter.service import settings_from_config

    return settings_from_config(config)


@pytest.mark.parametrize("text, read", [("[server]\nheartbeat_s = 1e308\n", _server),
                                        ("[wavemeter]\nstale_after_s = 1e308\n", _wavemeter)])
def test_every_other_service_number_is_bounded_too(text, read):
    config = parse(text + "[devices.wm]\nkind = 'highfinesse'\nsimulation = true\n", "lab.toml")
    with pytest.raises(ConfigError, match=r"expected a number > 0 \(at most 1e6\), got 1e\+308"):
        read(config)

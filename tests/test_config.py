"""Config parsing: the demo lab, and errors that name the file and the key."""

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

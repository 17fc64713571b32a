"""The `[locks]` config section: defaults, per-channel tables, and errors naming file and key."""

import pytest

from services.config import ConfigError, parse
from services.wavemeter.acquisition import C_NM_THZ
from services.wavemeter.locks import LockConfig

DEVICES = """
[devices.wm]
kind = "highfinesse"
simulation = true
[devices.dac]
kind = "dac"
simulation = true
resource = "GPIB0::5::INSTR"
"""


def read(text, channels=(1, 2, 3)):
    return LockConfig.from_config(parse(DEVICES + text, "lab.toml"), list(channels))


def test_every_wavemeter_channel_is_lockable_on_its_own_port_by_default():
    cfg = read("")
    assert sorted(cfg.settings) == [1, 2, 3]
    assert [(s.port, s.output, s.setpoint_thz) for s in cfg.settings.values()] == [
        (1, None, None), (2, None, None), (3, None, None)]
    assert str(cfg.state_file) == "var/locks.json"


def test_defaults_apply_to_every_channel_and_tables_override_them():
    cfg = read("""
[locks]
state_file = "/srv/lab/locks.json"
i = 0.05
capture_mhz = 300
relock = true
[locks.2]
i = 0.01
polarity = -1
setpoint_nm = 866.452
[locks.11]
output = "dac"
port = 3
setpoint_thz = 346.0
""")
    assert sorted(cfg.settings) == [1, 2, 3, 11]
    one, two, eleven = cfg.settings[1], cfg.settings[2], cfg.settings[11]
    assert (one.i, one.capture_mhz, one.relock, one.polarity) == (0.05, 300.0, True, 1)
    assert (two.i, two.capture_mhz, two.polarity) == (0.01, 300.0, -1)
    assert two.setpoint_thz == C_NM_THZ / 866.452
    assert (eleven.output, eleven.port, eleven.setpoint_thz) == ("dac", 3, 346.0)
    assert str(cfg.state_file) == "/srv/lab/locks.json"


@pytest.mark.parametrize("text, message", [
    ("[locks]\np = -1\n", "lab.toml: locks.p: expected a gain of 0..1000"),
    ("[locks]\ngain = 1\n", "lab.toml: locks.gain: unknown key; expected one of"),
    ("[locks]\nport = 2\n", "lab.toml: locks.port: unknown key"),
    ("[locks.3]\npolarity = 2\n", "lab.toml: locks.3.polarity: expected 1 or -1, got 2"),
    ("[locks.3]\np = 'x'\n", "lab.toml: locks.3.p: expected a number, got 'x'"),
    ("[locks.3]\nsetpoint_nm = 0\n",
     "lab.toml: locks.3.setpoint_nm: expected a vacuum wavelength of 99.9308..299792 nm"),
    ("[locks.3]\nsetpoint_thz = 1e303\n",
     "lab.toml: locks.3.setpoint_thz: expected a laser frequency of 1..3000 THz, got 1e+303"),
    ("[locks.3]\nmin_v = 2.0\nmax_v = 1.0\n", "lab.toml: locks.3.max_v: expected max_v > min_v"),
    ("[locks.3]\noutput = 'laser'\n",
     "lab.toml: locks.3.output: expected the name of a [devices] analog output, got 'laser'"),
    ("[locks.99]\n", "lab.toml: locks.99: expected a channel number 1..17"),
    ("[locks]\n3 = 1\n", "lab.toml: locks.3: expected a table, got 1"),
    ("[locks]\nstate_file = 5\n", "lab.toml: locks.state_file: expected a string, got 5"),
])
def test_config_errors_name_the_file_and_the_key(text, message):
    with pytest.raises(ConfigError) as info:
        read(text)
    assert message in str(info.value)

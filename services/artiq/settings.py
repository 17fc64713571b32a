"""The ``[artiq]`` section of the lab config: the pc_rpc listener and the dataset updater.

Every key is optional; a lab with an ``[artiq]`` table gets the listener in
``ionlab run`` (``ionlab artiq`` serves it on its own)::

    [artiq]
    port = 3280                 # TCP port of the pc_rpc listener
    bind = ["192.0.2.5"]        # addresses to listen on besides localhost; "*" is every one
    bind_localhost = true       # also 127.0.0.1 and ::1 (false: only `bind`)
    allow_writes = false        # true: every client may change the lab, no authenticate()
    devices = ["chamber"]       # device targets (default: every device but wavemeters and
                                # lock outputs)
    max_clients = 100

    [artiq.datasets]            # push values into an ARTIQ master's datasets
    master = "192.0.2.7"        # the master's host ...
    port = 3251                 # ... and control port (artiq_master --port-control)
    interval_s = 1.0            # at most one update per dataset this often
    persist = false             # the datasets' persist flag
    [artiq.datasets.keys]       # dataset key = "hub channel" or "hub channel:field"
    "lasers.397.frequency_thz" = "wavemeter/1"
    "lasers.397.lock" = "lock/1:state"
    "vacuum.chamber_mbar" = "logger/chamber"

>>> from services.config import parse
>>> s = ArtiqSettings.from_config(parse('[artiq]\\nbind = ["192.0.2.5"]'))
>>> s.port, s.hosts()
(3280, ['127.0.0.1', '::1', '192.0.2.5'])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import Config, ConfigError, Section

__all__ = ["DEFAULT_FIELDS", "DatasetSettings", "ArtiqSettings"]

DEFAULT_PORT = 3280
#: the field pushed from a hub channel when a key names none, by channel prefix
DEFAULT_FIELDS = {"wavemeter": "frequency_thz", "lock": "state", "logger": "value"}
#: target names the services take; a device cannot have them
RESERVED = ("wavemeter", "locks")
_KEYS = {"port", "bind", "bind_localhost", "allow_writes", "devices", "max_clients", "datasets"}
_DATASET_KEYS = {"master", "port", "interval_s", "persist", "timeout_s", "retry_max_s", "keys"}


def _port(sec: Section, key: str, default: int) -> int:
    port = sec.get(key, int, default)
    if not 0 <= port <= 65535:
        raise sec.error(key, f"expected a TCP port 0..65535, got {port}")
    return port


def _strings(sec: Section, key: str) -> tuple[str, ...] | None:
    if key not in sec.data:
        return None
    value = sec.data[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise sec.error(key, f"expected an array of strings, got {value!r}")
    return tuple(v.strip() for v in value)


@dataclass(frozen=True)
class DatasetSettings:
    """``[artiq.datasets]``: where the master is and what to push (key -> (channel, field))."""

    master: str
    keys: dict[str, tuple[str, str]]
    port: int = 3251
    interval_s: float = 1.0
    persist: bool = False
    timeout_s: float = 5.0
    retry_max_s: float = 30.0

    @classmethod
    def from_section(cls, sec: Section) -> DatasetSettings:
        sec.check_keys(_DATASET_KEYS)
        master = sec.get("master", str)
        if not master.strip():
            raise sec.error("master", "expected the ARTIQ master's host name or address")
        table = sec.section("keys")
        if not table.data:
            raise sec.error("keys", 'expected a table of dataset keys, e.g. '
                            '"lasers.397.frequency_thz" = "wavemeter/1"')
        keys = {}
        for key in table.data:
            text = table.get(key, str)
            channel, _, field = text.partition(":")
            prefix = channel.partition("/")[0]
            field = field or DEFAULT_FIELDS.get(prefix, "")
            if not key.strip() or "/" not in channel or not field:
                raise table.error(key, f'expected "<hub channel>" or "<hub channel>:<field>" '
                                  f'(channels: wavemeter/<n>, lock/<n>, logger/<sensor>; the '
                                  f'field is needed for others), got {text!r}')
            keys[key] = (channel, field)
        return cls(master=master.strip(), keys=keys,
                   port=_port(sec, "port", cls.port),
                   interval_s=sec.positive("interval_s", cls.interval_s),
                   persist=sec.get("persist", bool, cls.persist),
                   timeout_s=sec.positive("timeout_s", cls.timeout_s),
                   retry_max_s=sec.positive("retry_max_s", cls.retry_max_s))


@dataclass(frozen=True)
class ArtiqSettings:
    """``[artiq]`` (see the module docstring), with the command line applied by `replace`."""

    port: int = DEFAULT_PORT
    bind: tuple[str, ...] = ()
    bind_localhost: bool = True
    allow_writes: bool = False
    devices: tuple[str, ...] | None = None
    max_clients: int = 100
    datasets: DatasetSettings | None = None
    section: Section | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> ArtiqSettings:
        sec = config.section("artiq")
        sec.check_keys(_KEYS)
        max_clients = sec.get("max_clients", int, cls.max_clients)
        if max_clients < 1:
            raise sec.error("max_clients", f"expected an integer >= 1, got {max_clients}")
        settings = cls(port=_port(sec, "port", cls.port), bind=_strings(sec, "bind") or (),
                       bind_localhost=sec.get("bind_localhost", bool, True),
                       allow_writes=sec.get("allow_writes", bool, False),
                       devices=_strings(sec, "devices"), max_clients=max_clients,
                       datasets=DatasetSettings.from_section(sec.section("datasets"))
                       if "datasets" in sec.data else None,
                       section=sec)
        if not settings.hosts():
            raise sec.error("bind", "nothing to listen on: bind_localhost = false needs "
                            "addresses in bind")
        return settings

    def replace(self, **changes) -> ArtiqSettings:
        return dataclasses.replace(self, **changes)

    def hosts(self) -> list[str | None]:
        """The addresses to listen on (None: every interface), as sipyco controllers bind."""
        if "*" in self.bind:
            return [None]
        return (["127.0.0.1", "::1"] if self.bind_localhost else []) + list(self.bind)

    def device_names(self, config: Config, available, excluded: dict[str, str]) -> list[str]:
        """The devices that get a target: `devices`, or every one of `available`.

        `excluded` maps devices that cannot have one to the reason (lock outputs);
        naming one of them, a device not in `available`, or a device whose name
        cannot be a target is a ConfigError.
        """
        sec = self.section or config.section("artiq")
        if self.devices is None:
            names = [n for n in available if n not in excluded]
        else:
            names = list(self.devices)
            for name in names:
                if name not in config.devices:
                    raise sec.error("devices", f"{name!r} is not a [devices] entry "
                                    f"(known: {', '.join(config.devices) or 'none'})")
                if name in excluded:
                    raise sec.error("devices", f"{name!r} {excluded[name]}")
                if name not in available:
                    raise sec.error("devices", f"{name!r} is not available here "
                                    f"({', '.join(available) or 'none is'}); in `ionlab run` "
                                    "a device target uses the logger's connection, so the "
                                    "logger must poll it ([logger] devices)")
        for name in names:
            if name in RESERVED or not name.isprintable() or any(c.isspace() for c in name):
                raise ConfigError(config.file, f"devices.{name}",
                                  f"a device with an ARTIQ target needs a name without spaces "
                                  f"other than {' and '.join(RESERVED)}; rename it or leave it "
                                  f"out with [artiq] devices = [...]")
        return names

"""The lab as ARTIQ controllers: the pc_rpc listener and the dataset updater, as a service.

`ArtiqService` has the service shape of services.web.app, so ``ionlab run``
starts it beside the others when the config has an ``[artiq]`` table, and
``ionlab artiq`` runs it alone. Its targets are made of the other services'
RPC methods (services.artiq.targets) and one generic controller per device
(services.artiq.devices): one registry of methods feeds JSON-RPC and pc_rpc.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..web.app import ServerConfig
from ..web.hub import Hub
from ..web.pcrpc import PcRpcServer, Target, where
from .datasets import DatasetUpdater
from .devices import device_target
from .settings import ArtiqSettings
from .targets import LOCKS_DOC, WAVEMETER_DOC, service_target

__all__ = ["ArtiqService"]

log = logging.getLogger(__name__)


class ArtiqService:
    """pc_rpc targets for the lab's services and devices, and the dataset updater.

    `services` are the others (the ``wavemeter`` and ``locks`` services become
    targets of those names); `devices` owns the devices (the logger in
    ``ionlab run``, a DeviceHost alone): it has ``devices`` (name -> DeviceSpec)
    and ``device_call(name, fn, *args)``. `token` is what ``authenticate``
    accepts (default: ``[server] token`` or IONLAB_TOKEN); with `on_terminate`
    the targets offer ``terminate()``.
    """

    name = "artiq"

    def __init__(self, config: Config, hub: Hub, services, devices=None, *,
                 settings: ArtiqSettings | None = None, token: str | None = None,
                 on_terminate: Callable[[], None] | None = None):
        self.config = config
        self.settings = settings or ArtiqSettings.from_config(config)
        by_name = {service.name: service for service in services}
        self.wavemeter = by_name.get("wavemeter")
        self.locks = by_name.get("locks")
        self.owner = devices
        self.device_names = self._device_names()
        self.token = token if token is not None else ServerConfig.from_config(config).token
        self.on_terminate = on_terminate
        datasets = self.settings.datasets
        self.updater = DatasetUpdater(hub, datasets) if datasets else None
        self.server: PcRpcServer | None = None

    def __repr__(self):
        return f"<ArtiqService {self.server!r}>"

    def _device_names(self) -> list[str]:
        if self.owner is None:
            return []
        excluded = {n: "is a wavemeter: the wavemeter target serves it"
                    for n, spec in self.config.devices.items() if spec.kind == "highfinesse"}
        if self.locks is not None:
            for channel, lock in sorted(self.locks.lock_config.settings.items()):
                if lock.output is not None:
                    excluded.setdefault(lock.output, f"drives lock {channel}; ARTIQ moves it "
                                        "through the locks target")
        return self.settings.device_names(self.config, list(self.owner.devices), excluded)

    def targets(self) -> dict[str, Target]:
        """Every target: wavemeter, locks and one per device."""
        targets = {}
        if self.wavemeter is not None:
            targets["wavemeter"] = service_target("wavemeter", WAVEMETER_DOC,
                                                  self.wavemeter.rpc_methods())
        if self.locks is not None:
            targets["locks"] = service_target("locks", LOCKS_DOC, self.locks.rpc_methods())
        for name in self.device_names:
            targets[name] = device_target(self.config.devices[name], self.owner)
        return targets

    @property
    def description(self) -> str:
        lab = "the demo lab (simulated devices)" if self.config.is_demo else self.config.file
        return f"ionlab: {lab}"

    # -- the service shape

    async def start(self) -> None:
        server = PcRpcServer(self.targets(), description=self.description, token=self.token,
                             allow_writes=self.settings.allow_writes,
                             on_terminate=self.on_terminate,
                             max_clients=self.settings.max_clients)
        await server.start(self.settings.hosts(), self.settings.port)
        self.server = server
        log.info("ARTIQ (pc_rpc) on %s: targets %s%s", ", ".join(self.listening),
                 ", ".join(server.targets),
                 "; writes allowed to every client" if self.settings.allow_writes else "")
        if self.updater is not None:
            await self.updater.start()

    async def stop(self) -> None:
        if self.updater is not None:
            await self.updater.stop()
        if self.server is not None:
            await self.server.stop()

    def routes(self) -> list:
        return []

    def rpc_methods(self) -> dict:
        return {}

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"ok": self.server is not None, "listening": self.listening,
                                  "clients": self.server.clients if self.server else 0}
        if self.updater is not None:
            report["datasets"] = self.updater.status()
        return report

    @property
    def listening(self) -> list[str]:
        """Where the listener is, e.g. ``['127.0.0.1:3280', '[::1]:3280']``."""
        return [where(a) for a in self.server.addresses] if self.server else []

    @property
    def port(self) -> int | None:
        """The port listened on (the real one when the configured port is 0)."""
        return self.server.addresses[0][1] if self.server and self.server.addresses else None

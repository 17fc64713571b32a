"""Browser tests: the real `ionlab run` in a subprocess, driven through Debian's Chromium.

The browser is never downloaded: Playwright drives /usr/bin/chromium (without it
the tests skip loudly, and fail under CI=true). Every wait is for a condition,
with generous timeouts, so a loaded two-core machine only makes them slower.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require
from tests.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TOKEN = "e2e-write-token"
START_TIMEOUT_S = 60

LAB = """
[server]
token = "{token}"

[wavemeter]
stale_after_s = 3.0

[locks]
state_file = "{tmp}/locks.json"

[logger]
db = "{tmp}/lab.sqlite"
spool_dir = "{tmp}/spool"
batch_s = 0.5

[devices.wavemeter]
kind = "highfinesse"
simulation = true
poll_s = 0.05
channels = {{ 1 = "397 cooling", 2 = "866 repump", 3 = "854 quench", 4 = "729 qubit" }}

[devices.chamber]
kind = "tpg"
simulation = true
poll_s = 0.5
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}

[devices.power397]
kind = "pm100"
simulation = true
poll_s = 0.5
resource = "USB0::0x1313::0x8078::P0012345::INSTR"

[devices.temperatures]
kind = "ls218"
simulation = true
poll_s = 1.0
port = "/dev/ttyUSB1"
sensors = {{ 1 = "table", 2 = "trap rf" }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


class Lab:
    """`ionlab run` on a free port, in `folder`, with the test lab's config (or the demo's)."""

    def __init__(self, folder: Path, demo: bool = False):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.config = None if demo else folder / "lab.toml"
        if self.config:
            self.config.write_text(LAB.format(token=TOKEN, tmp=folder.as_posix()),
                                   encoding="utf-8")
        self.process: subprocess.Popen | None = None
        self.runs = 0

    def api(self, path: str):
        return get_json(self.url + path.lstrip("/"))

    def start(self) -> None:
        exe = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))
        env = {k: v for k, v in os.environ.items() if k != "IONLAB_TOKEN"}
        self.runs += 1
        self.log = self.folder / f"run{self.runs}.log"
        args = [exe, "run", "--port", str(self.port)]
        if self.config:
            args += ["--config", str(self.config)]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.folder, env=env)
        wait_until(self._serving, START_TIMEOUT_S, f"ionlab run to serve {self.url}")

    def _serving(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"ionlab run exited with {self.process.returncode}:\n"
                        f"{self.log.read_text(errors='replace')}")
        try:
            channels = self.api("/api/v1/channels")
        except (OSError, urllib.error.URLError):
            return False
        return bool(channels) and all(c["status"] == "ok" for c in channels)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` (SIGTERM from service managers, SIGINT from Ctrl-C) and wait; the exit
        status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"ionlab run did not stop within 20 s of signal {sig}:\n"
                        f"{self.log.read_text(errors='replace')}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def browser():
    require(CHROMIUM.exists(), "Chromium (/usr/bin/chromium)",
            "Install Debian's chromium: apt-get install chromium chromium-driver.")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One running lab shared by a module's tests."""
    lab = Lab(tmp_path_factory.mktemp("lab"))
    lab.start()
    yield lab
    lab.stop()


class Console:
    """What a page said: console messages by type, uncaught errors, requested URLs."""

    def __init__(self, page):
        self.messages: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    def problems(self) -> list[str]:
        return self.errors + [f"{t}: {text}" for t, text in self.messages
                              if t in ("error", "warning")]


@pytest.fixture
def page(browser):
    """A fresh browser context (in Berlin time) and page; `page.console` records what it said."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  timezone_id="Europe/Berlin")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.console = Console(page)
    yield page
    context.close()

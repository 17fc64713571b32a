"""Alarms end to end: the real `ionlab run` with its simulated chamber told to leak and a
laser to hop, an aiosmtpd server and a Tornado webhook receiver taking what is sent, and
the alarm acknowledged from the page in Chromium."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from tests.services.alarms.conftest import Mailbox, Receiver
from tests.waiting import wait_until

from .conftest import LAB, TOKEN, Lab

pytestmark = pytest.mark.e2e

FOR_S = 2.0
REPEAT_S = 3.0
ALARMS = """
[notify.oncall]
email = ["oncall@lab.example", "night@lab.example"]
smtp = "smtp://127.0.0.1:{smtp}"
from = "ionlab@lab.example"
group_s = 0.2
retry_max_s = 1

[notify.chat]
webhook = "{hook}"
group_s = 0.2
retry_max_s = 1

[[alarms]]
name = "chamber pressure"
sensor = "chamber"
above = 1e-9
clear_below = 5e-10
for_s = {for_s}
repeat_s = {repeat_s}
severity = "critical"
notify = ["oncall", "chat"]

[[alarms]]
name = "lock lost"
event = "unlocked"
severity = "warning"
notify = ["chat"]
"""


@pytest.fixture(scope="module")
def receivers():
    mailbox, receiver = Mailbox().start(), Receiver().start()
    yield mailbox, receiver
    mailbox.stop()
    receiver.stop()


@pytest.fixture(scope="module")
def alarm_lab(tmp_path_factory, receivers):
    mailbox, receiver = receivers
    lab = Lab(tmp_path_factory.mktemp("alarm-lab"))
    lab.config.write_text(LAB.format(token=TOKEN, tmp=lab.folder.as_posix()) + ALARMS.format(
        smtp=mailbox.port, hook=receiver.url, for_s=FOR_S, repeat_s=REPEAT_S), encoding="utf-8")
    lab.start()
    yield lab
    lab.stop()


def alarm(lab, name):
    return {a["name"]: a for a in lab.api("/api/v1/alarms")["alarms"]}[name]


def rpc(lab, method, **params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(lab.url + "api/v1/rpc", body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    assert "error" not in answer, answer
    return answer["result"]


def test_a_leak_fires_once_is_acknowledged_on_the_page_and_resolves(
        alarm_lab, receivers, page, run_cli, artifacts):
    mailbox, receiver = receivers
    lab = alarm_lab
    page.goto(lab.url)
    page.wait_for_selector("tr[data-alarm='chamber pressure'] .badge:text-is('ok')")
    assert page.is_hidden("#alarm-banner")

    done = run_cli("simulate", "--url", lab.url, "--token", TOKEN, "leak", "chamber")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: alarm(lab, "chamber pressure")["state"] == "firing", 30, "the alarm")
    wait_until(lambda: mailbox.messages and receiver.posts, 30, "the e-mail and the webhook")
    firing = alarm(lab, "chamber pressure")
    history = run_cli("alarms", "--url", lab.url, "history", "chamber pressure", "--json")
    assert history.returncode == 0, history.stderr
    pending, fired = json.loads(history.stdout)[:2]
    assert (pending["state"], fired["state"]) == ("pending", "firing")
    held = (datetime.fromisoformat(fired["time"]) - datetime.fromisoformat(pending["time"]))
    assert held.total_seconds() >= FOR_S - 0.01  # it waited for_s, and then fired

    (to, message) = mailbox.messages[0]
    assert to == ["oncall@lab.example", "night@lab.example"]
    assert message["Subject"].startswith("[ionlab CRITICAL] FIRING chamber pressure: "
                                         "chamber above 1e-09 mbar: ")
    body = message.get_content()
    assert "condition: above 1e-09 for 2 s" in body and "recent values (UTC):" in body
    assert f"{fired['value']:.6g} mbar" in body
    hook = receiver.bodies()[0]
    assert hook["alarms"][0]["alarm"] == "chamber pressure" and hook["severity"] == "critical"
    assert hook["alarms"][0]["value"] == pytest.approx(fired["value"])
    assert firing["value"] > 1e-9

    # The page shows it, with a banner; without the token it cannot acknowledge.
    page.wait_for_selector("#alarm-banner:has-text('1 alarm firing (1 not acknowledged): "
                           "chamber pressure')")
    row = "tr[data-alarm='chamber pressure']"
    page.wait_for_selector(f"{row} .badge:text-is('firing')")
    assert page.locator(f"{row} button.ack").is_disabled()
    # Repeats come every repeat_s until someone acknowledges.
    wait_until(lambda: len(mailbox.messages) >= 2, 30, "a reminder")
    assert mailbox.messages[1][1]["Subject"].startswith(
        "[ionlab CRITICAL] STILL FIRING chamber pressure")
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    page.fill("#alarm-who", "Ana")
    page.fill("#alarm-why", "closing the leak valve")
    page.click(f"{row} button.ack")
    page.wait_for_selector(f"{row} td:has-text('acknowledged by Ana (closing the leak valve)')")
    page.wait_for_selector("#alarms-message:text-is('chamber pressure acknowledged')")
    page.wait_for_selector("#alarm-banner:has-text('(0 not acknowledged)')")
    screenshot = artifacts / "dashboard-alarm.png"
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshot))
    sent = len(mailbox.messages)
    assert alarm(lab, "chamber pressure")["acknowledged"]["who"] == "Ana"
    page.wait_for_timeout(REPEAT_S * 2.5 * 1000)  # long enough for two more reminders
    assert len(mailbox.messages) == sent  # acknowledged: no more

    listed = run_cli("alarms", "--url", lab.url, "list")
    assert listed.returncode == 0 and "chamber pressure" in listed.stdout
    assert "acked by Ana" in listed.stdout

    done = run_cli("simulate", "--url", lab.url, "--token", TOKEN, "leak", "chamber", "--stop")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: alarm(lab, "chamber pressure")["state"] == "resolved", 60, "the resolution")
    wait_until(lambda: len(mailbox.messages) == sent + 1, 30, "the resolution e-mail")
    assert mailbox.messages[-1][1]["Subject"].startswith("[ionlab CRITICAL] RESOLVED chamber "
                                                         "pressure")
    wait_until(lambda: receiver.bodies()[-1]["alarms"][0]["notice"] == "resolved", 30,
             "the resolution webhook")
    page.wait_for_selector(f"{row} .badge:text-is('resolved')")
    page.wait_for_selector("#alarm-banner", state="hidden")

    # Silence from the page (for the chosen duration, with who and why), then end it.
    page.select_option("#alarm-duration", "30min")
    page.fill("#alarm-why", "pumping down")
    page.click(f"{row} button.silence")
    page.wait_for_selector("#alarms-message:text-is('chamber pressure silenced for 30min')")
    page.wait_for_selector(f"{row} td:has-text('by Ana (pumping down)')")
    silenced = alarm(lab, "chamber pressure")["silenced"]
    assert (silenced["who"], silenced["why"]) == ("Ana", "pumping down")
    left = datetime.fromisoformat(silenced["until"]) - datetime.now(UTC)
    assert timedelta(minutes=29) < left <= timedelta(minutes=30)
    page.click(f"{row} button.silence:text-is('Unsilence')")
    page.wait_for_selector("#alarms-message:text-is('chamber pressure: silence ended')")
    assert alarm(lab, "chamber pressure")["silenced"] is None
    assert page.console.problems() == []


def test_a_mode_hop_raises_the_lock_alarm_with_its_reason(alarm_lab, receivers, run_cli):
    _, receiver = receivers
    lab = alarm_lab
    frequency = lab.api("/api/v1/channels/1")["frequency_thz"]
    assert rpc(lab, "lock", channel=1, setpoint_thz=frequency)["state"] != "unlocked"
    wait_until(lambda: lab.api("/api/v1/locks/1")["state"] == "locked", 30, "the lock")
    assert alarm(lab, "lock lost/1")["state"] == "ok"
    done = run_cli("simulate", "--url", lab.url, "--token", TOKEN, "mode-hop", "1", "--ghz", "20")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: alarm(lab, "lock lost/1")["state"] == "firing", 30, "the lock alarm")
    assert lab.api("/api/v1/locks/1")["reason"] == "mode hop"
    assert alarm(lab, "lock lost/1")["message"] == "lock 1: mode hop"
    wait_until(lambda: any(a["alarm"] == "lock lost/1" for b in receiver.bodies()
                         for a in b["alarms"]), 30, "the lock alarm's webhook")
    # Unlocked on request: the fault is over, the alarm resolves.
    rpc(lab, "unlock", channel=1)
    wait_until(lambda: alarm(lab, "lock lost/1")["state"] == "resolved", 30, "the resolution")

    silenced = run_cli("alarms", "--url", lab.url, "--token", TOKEN, "silence", "lock lost",
                       "--for", "1h", "--who", "ben", "--why", "realigning")
    assert silenced.returncode == 0, silenced.stderr
    assert silenced.stdout.count("silenced until") == 4  # every lock alarm of the rule
    refused = run_cli("alarms", "--url", lab.url, "--token", "wrong", "ack", "lock lost/1")
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    ended = run_cli("alarms", "--url", lab.url, "--token", TOKEN, "silence", "lock lost", "--end")
    assert ended.returncode == 0 and "silenced until" not in ended.stdout

"""Delivery against real receivers: aiosmtpd for e-mail, a Tornado app for webhooks."""

from __future__ import annotations

import logging
import time

import pytest

from services.alarms.channels import ChannelSettings, Email, Webhook
from services.alarms.outbox import Outbox
from tests.waiting import wait_until

from .conftest import Mailbox, free_port


def notice(alarm="chamber pressure", kind="firing", value=4.2e-8, severity="critical"):
    return {"alarm": alarm, "rule": alarm, "subject": "chamber", "notice": kind,
            "state": "firing" if kind != "resolved" else "resolved", "severity": severity,
            "message": f"chamber above 1e-09 mbar: {value or 0:.3g} mbar",
            "condition": "above 1e-09 for 5 s", "time": "2026-03-01T03:00:05+00:00",
            "since": "2026-03-01T03:00:05+00:00", "value": value, "unit": "mbar",
            "recent": [["2026-03-01T03:00:04+00:00", 3.1e-8], ["2026-03-01T03:00:05+00:00", value]]
            if value is not None else []}


FAST = ChannelSettings(timeout_s=5.0, group_s=0.0, retry_max_s=0.2)


def outbox_for(transport, **settings):
    box = Outbox("oncall", transport, ChannelSettings(**{**FAST.__dict__, **settings}))
    box.start()
    return box


def test_one_email_per_message_with_subject_recipients_and_values(mailbox):
    box = outbox_for(Email(f"smtp://127.0.0.1:{mailbox.port}", "ionlab@lab.example",
                           ["oncall@lab.example", "boss@lab.example"]))
    try:
        box.put([notice()])
        wait_until(lambda: mailbox.messages, what="the e-mail")
        box.put([notice(kind="resolved", value=3e-10)])
        wait_until(lambda: len(mailbox.messages) == 2, what="the resolution")
    finally:
        box.stop()
    (to, first), (_, second) = mailbox.messages
    assert to == ["oncall@lab.example", "boss@lab.example"]
    assert first["Subject"] == ("[ionlab CRITICAL] FIRING chamber pressure: chamber above 1e-09 "
                                "mbar: 4.2e-08 mbar")
    assert first["From"] == "ionlab@lab.example"
    assert first["To"] == "oncall@lab.example, boss@lab.example"
    body = first.get_content()
    assert "FIRING  chamber pressure  (critical)" in body
    assert "condition: above 1e-09 for 5 s" in body
    assert "2026-03-01T03:00:04+00:00  3.1e-08 mbar" in body
    assert "2026-03-01T03:00:05+00:00  4.2e-08 mbar" in body
    assert second["Subject"].startswith("[ionlab CRITICAL] RESOLVED chamber pressure")
    assert box.status()["sent"] == 2 and box.status()["state"] == "ok"


def test_smtp_login_is_used_and_its_password_never_shown():
    box_server = Mailbox(login=("ionlab", "pa:ss w0rd")).start()
    try:
        url = f"smtp://ionlab:pa%3Ass%20w0rd@127.0.0.1:{box_server.port}"
        box = outbox_for(Email(url, "ionlab@lab.example", ["oncall@lab.example"]))
        box.put([notice()])
        wait_until(lambda: box_server.messages, what="the e-mail after login")
        box.stop()
        assert box_server.logins == ["ionlab"]
        assert "w0rd" not in str(box.status()) and "***" in box.status()["target"]
    finally:
        box_server.stop()


def test_twenty_alarms_of_one_outage_are_one_message(mailbox):
    box = outbox_for(Email(f"smtp://127.0.0.1:{mailbox.port}", "ionlab@lab.example",
                           ["oncall@lab.example"]), group_s=0.5)
    try:
        for i in range(20):  # one by one, as twenty rules trip within the group window
            box.put([notice(alarm=f"gauge {i:02d}", severity="warning" if i else "critical")])
        wait_until(lambda: mailbox.messages, what="the grouped e-mail")
        time.sleep(0.7)  # nothing else comes: everything was in the one message
    finally:
        box.stop()
    (_, message), = mailbox.messages
    assert message["Subject"] == "[ionlab CRITICAL] 20 alarms: 20 firing, 0 resolved"
    body = message.get_content()
    assert all(f"gauge {i:02d}" in body for i in range(20))


def test_the_rate_limit_merges_what_comes_too_fast(receiver):
    box = outbox_for(Webhook(receiver.url), max_per_hour=3600.0 / 0.5, burst=1)  # one per 0.5 s
    try:
        box.put([notice(alarm="a")])
        wait_until(lambda: receiver.posts, what="the first webhook")
        for name in ("b", "c", "d"):
            box.put([notice(alarm=name)])
        wait_until(lambda: len(receiver.posts) == 2, what="the merged webhook")
    finally:
        box.stop()
    (t1, first), (t2, second) = receiver.posts
    assert [a["alarm"] for a in first["alarms"]] == ["a"]
    assert [a["alarm"] for a in second["alarms"]] == ["b", "c", "d"]
    assert t2 - t1 >= 0.4


def test_smtp_down_is_retried_visibly_then_delivered_once():
    port = free_port()  # nothing listens yet
    box = outbox_for(Email(f"smtp://127.0.0.1:{port}", "ionlab@lab.example",
                           ["oncall@lab.example"]), retry_max_s=0.3)
    try:
        box.put([notice()])
        wait_until(lambda: box.status()["failures"] >= 3, what="three failed attempts")
        status = box.status()
        assert status["state"] == "failing" and status["pending"] == 1
        assert "Connection refused" in status["last_error"] and status["retry_at"]
        box.put([notice(alarm="loadlock pressure")])  # joins the message being retried
        server = Mailbox(port=port).start()
        try:
            wait_until(lambda: server.messages, what="delivery once the server is up")
            time.sleep(0.5)
            assert len(server.messages) == 1
            body = server.bodies()[0]
            assert "chamber pressure" in body and "loadlock pressure" in body
        finally:
            server.stop()
        assert box.status()["state"] == "ok" and box.status()["last_error"] is None
    finally:
        box.stop()


def test_the_queue_is_bounded():
    box = outbox_for(Webhook(f"http://127.0.0.1:{free_port()}/hook"), queue=5, retry_max_s=5)
    try:
        box.put([notice()])
        wait_until(lambda: box.status()["failures"] >= 1, what="the first failure")
        box.put([notice(alarm=f"a{i}") for i in range(10)])
        assert box.status()["dropped"] == 5
        assert box.status()["pending"] == 1 + 5
    finally:
        box.stop()


def test_webhook_bodies_generic_and_slack(receiver):
    box = outbox_for(Webhook(receiver.url))
    slack = Outbox("chat", Webhook(receiver.url, "slack"), FAST)
    slack.start()
    try:
        box.put([notice()])
        wait_until(lambda: len(receiver.posts) == 1, what="the JSON webhook")
        slack.put([notice(), notice(alarm="lock lost/1", severity="warning", value=None)])
        wait_until(lambda: len(receiver.posts) == 2, what="the Slack webhook")
    finally:
        box.stop()
        slack.stop()
    generic, chat = receiver.bodies()
    assert generic["source"] == "ionlab" and generic["severity"] == "critical"
    assert generic["summary"] == "FIRING chamber pressure: chamber above 1e-09 mbar: 4.2e-08 mbar"
    assert generic["alarms"][0]["value"] == 4.2e-8
    assert generic["alarms"][0]["recent"][0] == ["2026-03-01T03:00:04+00:00", 3.1e-8]
    assert chat["text"] == "*2 alarms: 2 firing, 0 resolved*"
    first, second = chat["attachments"]
    assert first["color"] == "#a40e26" and first["title"] == "FIRING chamber pressure (critical)"
    assert first["fields"] == [{"title": "value", "value": "4.2e-08 mbar", "short": True}]
    assert second["fields"] == [] and second["color"] == "#bf8700"


def test_a_webhook_that_hangs_is_bounded_by_its_timeout(receiver):
    receiver.hang = True
    box = outbox_for(Webhook(receiver.url), timeout_s=0.5, retry_max_s=0.2)
    try:
        started = time.monotonic()
        box.put([notice()])
        wait_until(lambda: box.status()["failures"] >= 2, what="two timed-out attempts")
        assert "timed out" in box.status()["last_error"]
        assert time.monotonic() - started >= 1.0  # each attempt waited its whole timeout
        receiver.hang = False
        wait_until(lambda: receiver.posts, what="delivery once it answers")
    finally:
        box.stop()
    assert box.status()["state"] == "ok"


def test_a_failing_webhook_shows_the_status(receiver):
    receiver.status = 500
    box = outbox_for(Webhook(receiver.url))
    try:
        box.put([notice()])
        wait_until(lambda: box.status()["state"] == "failing", what="the failure")
    finally:
        box.stop()
    assert box.status()["last_error"].endswith("HTTP 500 ok")


@pytest.mark.parametrize("how", ["starttls", "smtps"])
def test_tls_to_a_server_the_ca_file_trusts_carries_login_and_mail(certificates, how):
    server = Mailbox(login=("ionlab", "pw 1"), tls=certificates.server_context(),
                     smtps=how == "smtps").start()
    try:
        scheme = "smtp" if how == "starttls" else "smtps"
        box = outbox_for(Email(f"{scheme}://ionlab:pw%201@127.0.0.1:{server.port}",
                               "ionlab@lab.example", ["oncall@lab.example"],
                               starttls=how == "starttls", ca_file=str(certificates.ca)))
        box.put([notice()])
        wait_until(lambda: server.messages, what=f"the e-mail over {how}")
        box.stop()
    finally:
        server.stop()
    assert server.logins == ["ionlab"] and server.over_tls == [True]
    assert server.messages[0][1]["Subject"].startswith("[ionlab CRITICAL] FIRING chamber")
    assert box.status()["state"] == "ok" and box.status()["failures"] == 0


@pytest.mark.parametrize("presented, trusted, why", [
    ("server", None, "unable to get local issuer certificate"),  # our CA, not the system's
    ("self", None, "self-signed certificate"),
    ("self", "ca", "self-signed certificate"),  # a CA that did not sign it
])
def test_a_certificate_the_client_does_not_trust_is_refused_before_the_login(
        certificates, presented, trusted, why):
    server = Mailbox(login=("ionlab", "hunter2"), tls=certificates.server_context(presented))
    server.start()
    ca_file = str(certificates.folder / f"{trusted}.pem") if trusted else None
    box = outbox_for(Email(f"smtp://ionlab:hunter2@127.0.0.1:{server.port}", "ionlab@lab.example",
                           ["oncall@lab.example"], starttls=True, ca_file=ca_file))
    try:
        box.put([notice()])
        wait_until(lambda: box.status()["failures"] >= 2, what="two refused attempts")
        status = box.status()
    finally:
        box.stop()
        server.stop()
    assert status["state"] == "failing" and status["pending"] == 1 and not status["refused"]
    assert status["last_error"] == (f"SMTP 127.0.0.1:{server.port}: its TLS certificate is not "
                                    f"trusted ({why}); give its CA as ca_file")
    assert "hunter2" not in str(status)
    assert server.attempts == 0 and server.messages == []  # the password never left


def test_a_self_signed_certificate_is_taken_once_named_as_ca_file(certificates):
    server = Mailbox(tls=certificates.server_context("self")).start()
    box = outbox_for(Email(f"smtp://127.0.0.1:{server.port}", "ionlab@lab.example",
                           ["oncall@lab.example"], starttls=True,
                           ca_file=str(certificates.folder / "self.pem")))
    try:
        box.put([notice()])
        wait_until(lambda: server.messages, what="the e-mail over STARTTLS")
    finally:
        box.stop()
        server.stop()
    assert server.over_tls == [True]


def test_a_wrong_smtp_password_fails_once_clearly_and_is_not_retried(caplog):
    caplog.set_level(logging.INFO, logger="services.alarms")
    server = Mailbox(login=("ionlab", "right horse")).start()
    box = outbox_for(Email(f"smtp://ionlab:wrong%20battery@127.0.0.1:{server.port}",
                           "ionlab@lab.example", ["oncall@lab.example"]), retry_max_s=0.1)
    try:
        box.put([notice(), notice(alarm="loadlock pressure")])
        wait_until(lambda: box.status()["refused"], what="the login to be refused")
        wait_until(lambda: not box._thread.is_alive(), what="the worker to give up")
        box.put([notice(alarm="water")])  # later notices are dropped, not queued
        status = box.status()
    finally:
        box.stop()
        server.stop()
    assert server.attempts == 1 and server.messages == []  # tried once, never again
    assert status["state"] == "failing" and status["last_error"] == (
        f"SMTP 127.0.0.1:{server.port}: login as ionlab refused (535 5.7.8 Authentication "
        f"credentials invalid): check the channel's user and password, then restart")
    assert (status["pending"], status["dropped"], status["failures"]) == (0, 3, 1)
    assert status["retry_at"] is None
    refused = [r for r in caplog.records if "login as ionlab refused" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR
    assert "this channel sends nothing more (2 notices dropped)" in refused[0].getMessage()
    assert "wrong" not in caplog.text and "battery" not in caplog.text
    assert "battery" not in str(status)

"""`[[alarms]]` and `[notify.NAME]`: the issue's example as written, and every mistake named."""

from __future__ import annotations

import pytest

from services.alarms.channels import Email, Webhook, parse_channels
from services.alarms.rules import parse_rules
from services.config import ConfigError, parse

from .sim import CATALOG, rules_of

ISSUE_EXAMPLE = """
[notify.oncall]
email = ["oncall@lab.example"]
smtp = "smtp://127.0.0.1:2525"        # smtp:// or smtps://, user:password@ allowed
from = "ionlab@lab.example"

[notify.chat]
webhook = "http://127.0.0.1:9000/hook" # generic JSON; `format = "slack"` for Slack/Mattermost

[[alarms]]
name = "chamber pressure"
sensor = "chamber"
above = 1e-9
clear_below = 5e-10
for_s = 5
severity = "critical"
notify = ["oncall", "chat"]
"""


def test_the_issue_example_works_as_written():
    config = parse(ISSUE_EXAMPLE, "lab.toml")
    channels = parse_channels(config)
    (rule,) = parse_rules(config, CATALOG, set(channels))
    assert (rule.name, rule.sensor, rule.above, rule.clear_below, rule.for_s, rule.severity,
            rule.notify) == ("chamber pressure", "chamber", 1e-9, 5e-10, 5.0, "critical",
                             ("oncall", "chat"))
    assert rule.alarm_name("chamber") == "chamber pressure"
    (email,) = channels["oncall"][1]
    assert isinstance(email, Email)
    assert (email.host, email.port, email.sender, email.to) == (
        "127.0.0.1", 2525, "ionlab@lab.example", ["oncall@lab.example"])
    (hook,) = channels["chat"][1]
    assert isinstance(hook, Webhook) and hook.format == "json"


def test_globs_and_lock_rules_are_one_alarm_per_subject():
    stale, locks, one = rules_of("""
[[alarms]]
name = "silent"
sensor = "wavemeter/*"
stale_s = 30
[[alarms]]
name = "lock lost"
event = "unlocked"
[[alarms]]
name = "cooling lock"
event = "mode hop"
lock = "397 cooling"
""")
    assert stale.subjects == ("wavemeter/1", "wavemeter/2")
    assert stale.alarm_name("wavemeter/1") == "silent/wavemeter/1"
    assert stale.takes("wavemeter/7") and not stale.takes("chamber")
    assert locks.subjects == ("1", "2") and locks.alarm_name("2") == "lock lost/2"
    assert one.subjects == ("1",) and one.alarm_name("1") == "cooling lock"


@pytest.mark.parametrize("body, key, expected", [
    ('sensor = "chamer"\nabove = 1', 'alarms."p".sensor', "no sensor named 'chamer'; known: "
     "chamber, loadlock"),
    ('sensor = "temp*"\nabove = 1', 'alarms."p".sensor', "the pattern 'temp*' matches no sensor"),
    ('sensor = "chamber"\nabove = "high"', 'alarms."p".above', "expected a number, got 'high'"),
    ('sensor = "chamber"\nabove = nan', 'alarms."p".above', "expected a finite number"),
    ('sensor = "chamber"', 'alarms."p".condition', "missing; give above/below"),
    ('sensor = "chamber"\nabove = 1\nstale_s = 5', 'alarms."p".stale_s',
     "above and stale_s in one rule; split it"),
    ('sensor = "chamber"\nbelow = 2\nabove = 1', 'alarms."p".below',
     "expected less than above (1)"),
    ('sensor = "chamber"\nbelow = 1\nclear_below = 0.5', 'alarms."p".clear_below',
     "clears an `above` threshold; this rule has none"),
    ('sensor = "chamber"\nbelow = 1\nclear_above = 0.5', 'alarms."p".clear_above',
     "expected at least below (1)"),
    ('sensor = "chamber"\nabove = 10\nbelow = 1\nclear_below = 4\nclear_above = 6',
     'alarms."p".clear_above', "no value could clear both"),
    ('sensor = "chamber"\nrise_per_min = 0.5', 'alarms."p".rise_per_min',
     "on a log scale this is a factor per minute, expected > 1"),
    ('sensor = "water in"\nrise_per_min = -1', 'alarms."p".rise_per_min',
     "expected units per minute > 0"),
    ('sensor = "chamber"\nrise_per_min = 2\nscale = "ln"', 'alarms."p".scale',
     "expected log or linear"),
    ('sensor = "chamber"\nabove = 1\nscale = "log"', 'alarms."p".scale',
     "only for rise_per_min"),
    ('sensor = "chamber"\nstale_s = 0', 'alarms."p".stale_s', "expected a number > 0"),
    ('sensor = "chamber"\nabove = 1\nfor_s = -1', 'alarms."p".for_s', "expected seconds >= 0"),
    ('sensor = "chamber"\nabove = 1\nseverity = "panic"', 'alarms."p".severity',
     "expected one of info, warning, critical"),
    ('sensor = "chamber"\nabove = 1\nnotify = ["pager"]', 'alarms."p".notify',
     "no [notify.pager] channel; channels: oncall"),
    ('sensor = "chamber"\nabove = 1\nmessage = "{pressure}"', 'alarms."p".message',
     "unknown field {pressure}"),
    ('sensor = "chamber"\nabove = 1\nmessage = "{value:.2q}"', 'alarms."p".message',
     "not a valid template"),
    ('sensor = "chamber"\nabove = 1\nlimit = 3', 'alarms."p".limit', "unknown key"),
    ('event = "exploded"', 'alarms."p".event', "expected one of unlocked, railed, mode hop"),
    ('event = "unlocked"\nsensor = "chamber"', 'alarms."p".sensor', "not used by event rules"),
    ('event = "unlocked"\nlock = 5', 'alarms."p".lock', "no lock 5; expected"),
    ('event = "spooling"\nlock = 1', 'alarms."p".lock', "only for lock events"),
    ('sensor = "chamber"\nabove = 1\nlock = 1', 'alarms."p".lock', "only for lock events"),
    ('event = "spool full"\nspool_fraction = 1.5', 'alarms."p".spool_fraction',
     "expected a fraction"),
    ('event = "spooling"\nspool_fraction = 0.5', 'alarms."p".spool_fraction',
     'only for event = "spool full"'),
])
def test_mistakes_are_config_errors_naming_the_rule(body, key, expected):
    with pytest.raises(ConfigError) as caught:
        rules_of(f'[[alarms]]\nname = "p"\n{body}\n')
    assert caught.value.file == "lab.toml"
    assert caught.value.key == key
    assert expected in caught.value.expected


def test_names_are_checked_and_unique():
    with pytest.raises(ConfigError, match=r"alarms\[2\]\.name: missing"):
        rules_of('[[alarms]]\nname = "a"\nevent = "spooling"\n[[alarms]]\nevent = "spooling"\n')
    with pytest.raises(ConfigError, match=r'alarms."a".name: this name is used by an earlier'):
        rules_of('[[alarms]]\nname = "a"\nevent = "spooling"\n'
                 '[[alarms]]\nname = "a"\nevent = "spool full"\n')
    with pytest.raises(ConfigError, match=r"alarms\[1\]\.name: expected 1..100 printable "
                       r"characters without '/'"):
        rules_of('[[alarms]]\nname = "a/b"\nevent = "spooling"\n')
    with pytest.raises(ConfigError, match=r"alarms: expected \[\[alarms\]\] tables"):
        parse_rules(parse("alarms = 3\n"), CATALOG, set())


def test_a_lab_without_locks_or_logger_refuses_their_events():
    from services.alarms.rules import Catalog

    bare = Catalog({"chamber": "tpg"}, {}, wavemeter=False, logger=False)
    for event, text in [("unlocked", "this lab has no locks"),
                        ("wavemeter missing", "runs no wavemeter service"),
                        ("spooling", "runs no logger")]:
        with pytest.raises(ConfigError, match=text):
            rules_of(f'[[alarms]]\nname = "p"\nevent = "{event}"\n', bare)


@pytest.mark.parametrize("table, key, expected", [
    ('email = "a@b"', "notify.x.smtp", "missing; expected a string"),
    ('email = "a@b"\nsmtp = "http://mail"', "notify.x.smtp", "expected smtp://"),
    ('email = "a@b"\nsmtp = "smtp://mail:99999"', "notify.x.smtp", "expected smtp://"),
    ('email = "not-an-address"\nsmtp = "smtp://mail"', "notify.x.email", "expected an address"),
    ('email = []\nsmtp = "smtp://mail"', "notify.x.email", "expected an address"),
    ('email = "a@b"\nsmtp = "smtps://mail"\nstarttls = true', "notify.x.starttls",
     "smtps:// is TLS from the start"),
    ('email = "a@b"\nsmtp = "smtp://mail"\npassword_env = "X_PW"', "notify.x.password_env",
     "needs a user"),
    ('email = "a@b"\nsmtp = "smtp://u@mail"\npassword_env = "IONLAB_NO_SUCH_VAR"',
     "notify.x.password_env", "IONLAB_NO_SUCH_VAR is not set"),
    ('email = "a@b"\nsmtp = "smtp://mail"\nfrom = "ionlab"', "notify.x.from",
     "expected an address"),
    ('smtp = "smtp://mail"', "notify.x.email", "smtp, from and the like need `email`"),
    ('email = "a@b"\nsmtp = "smtp://mail"\nca_file = "/etc/hosts"', "notify.x.ca_file",
     "only for TLS: smtps://, or smtp:// with starttls = true"),
    ('email = "a@b"\nsmtp = "smtps://mail"\nca_file = "/no/such/ca.pem"', "notify.x.ca_file",
     "cannot use '/no/such/ca.pem' (No such file or directory)"),
    (f'email = "a@b"\nsmtp = "smtp://mail"\nstarttls = true\nca_file = "{__file__}"',
     "notify.x.ca_file", f"expected a PEM file of certificates, cannot use '{__file__}'"),
    ('webhook = "ftp://x/y"', "notify.x.webhook", "expected an http:// or https:// URL"),
    ('webhook = "http://x/y"\nformat = "xml"', "notify.x.format", "expected json, or slack"),
    ('format = "slack"', "notify.x.format", "only for a `webhook`"),
    ('', "notify.x.email", "a channel needs `email` (with `smtp`) or `webhook`"),
    ('webhook = "http://x/y"\nmax_per_hour = 0', "notify.x.max_per_hour", "expected a number > 0"),
    ('webhook = "http://x/y"\ngroup_s = -1', "notify.x.group_s", "expected seconds >= 0"),
    ('webhook = "http://x/y"\nburst = 0', "notify.x.burst", "expected an integer >= 1"),
    ('webhook = "http://x/y"\npager = 1', "notify.x.pager", "unknown key"),
])
def test_channel_mistakes_are_config_errors(table, key, expected):
    with pytest.raises(ConfigError) as caught:
        parse_channels(parse(f"[notify.x]\n{table}\n", "lab.toml"), environ={})
    assert caught.value.key == key
    assert expected in caught.value.expected


def test_smtp_passwords_are_never_shown():
    config = parse('[notify.x]\nemail = "a@b.example"\n'
                   'smtp = "smtps://ionlab:s3cr%40t@mail.lab:465"\n', "lab.toml")
    (email,) = parse_channels(config)["x"][1]
    assert (email.user, email._password, email.tls, email.port) == ("ionlab", "s3cr@t", True, 465)
    assert "s3cr" not in email.target and "s3cr" not in repr(email)
    with pytest.raises(ConfigError) as caught:
        parse_channels(parse('[notify.x]\nemail = "a@b"\nsmtp = "http://u:hunter2@mail"\n'))
    assert "hunter2" not in str(caught.value)
    from_env = parse('[notify.x]\nemail = "a@b"\nsmtp = "smtp://u@mail"\n'
                     'password_env = "PW"\nstarttls = true\n')
    (email,) = parse_channels(from_env, environ={"PW": "from-env"})["x"][1]
    assert email._password == "from-env" and email.starttls
    hook = parse('[notify.x]\nwebhook = "https://hooks.slack.example/services/T0/B0/SECRET"\n'
                 'format = "slack"\n')
    (webhook,) = parse_channels(hook)["x"][1]
    assert "SECRET" not in webhook.target and webhook.format == "slack"

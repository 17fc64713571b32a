"""The dashboard in a real browser against the real `ionlab run`."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from .conftest import TOKEN, Lab, wait_for

pytestmark = pytest.mark.e2e


def open_dashboard(page, lab) -> None:
    page.goto(lab.url)
    page.wait_for_function("() => window.ionlab && ionlab.stream.state === 'live' "
                           "&& ionlab.channels.rows.size > 0")


def cell(page, selector: str) -> str:
    return page.inner_text(selector).strip()


def screenshot(page, path) -> None:
    """The whole page, from the top (where the sticky header belongs)."""
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def test_page_loads_live_without_console_errors(page, lab, artifacts):
    open_dashboard(page, lab)
    channels = lab.api("/api/v1/channels")
    page.wait_for_function(f"() => ionlab.channels.rows.size === {len(channels)}")
    for ch in channels:
        row = f"#channel-{ch['channel']}"
        assert cell(page, f"{row} td:nth-child(2)") == ch["name"]
        page.wait_for_selector(f"{row} .badge:text-is('ok')")

    # Live: the frequency shown changes, with six decimals, and equals what the API says.
    first = cell(page, "#channel-1 td:nth-child(4)")
    assert len(first.split(".")[1]) == 6
    page.wait_for_function(f"() => document.querySelector('#channel-1 td:nth-child(4)')"
                           f".textContent !== {json.dumps(first)}", timeout=20_000)
    page.wait_for_function("() => ionlab.traces.get(1).t.length >= 5")
    shown = float(cell(page, "#channel-1 td:nth-child(4)"))
    api = lab.api("/api/v1/channels/1")["frequency_thz"]
    assert abs(shown - api) < 1e-3  # the same laser, moments apart

    page.wait_for_function("() => ionlab.history.chosen().includes('chamber')")
    page.wait_for_selector("#history-plots figure[data-unit='mbar']")
    page.wait_for_timeout(500)  # let the plots draw one more frame for the picture
    screenshot(page, artifacts / "dashboard-desktop.png")
    assert page.console.problems() == []
    origin = lab.url.rstrip("/")
    assert [u for u in page.console.requests if not u.startswith(origin)] == []
    assert lab.url + "static/vendor/uplot-1.6.32/uPlot.iife.min.js" in page.console.requests
    # One event stream carries everything the page shows live.
    assert [u for u in page.console.requests if "/api/v1/stream" in u] == [
        lab.url + "api/v1/stream"]


def test_phone_sized_screen_has_no_sideways_scrolling(browser, lab, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    try:
        page = context.new_page()
        open_dashboard(page, lab)
        page.wait_for_function("() => ionlab.traces.get(1).t.length >= 3")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390
        # The status of every channel is visible without scrolling the table sideways.
        box = page.locator("#channel-1 .badge").bounding_box()
        assert box["x"] + box["width"] <= 390
        screenshot(page, artifacts / "dashboard-phone.png")
    finally:
        context.close()


def rpc_status(lab, channel: int) -> dict:
    return lab.api(f"/api/v1/locks/{channel}")


def test_lock_toggle_needs_the_token(page, lab, artifacts):
    open_dashboard(page, lab)
    toggle = page.locator("#lock-2 button.toggle")
    page.wait_for_selector("#lock-2 .badge:text-is('unlocked')")

    # Without a token every write control is disabled.
    assert toggle.is_disabled()
    assert page.locator("#setpoint-2").is_disabled()
    assert page.is_visible("#locks-hint")

    # A wrong token: the server refuses, the page says so, nothing changes.
    page.fill("#token", "not-the-token")
    page.press("#token", "Enter")
    assert toggle.is_enabled()
    toggle.click()
    page.wait_for_selector("#locks-message:has-text('refused')")
    assert rpc_status(lab, 2)["state"] == "unlocked"
    assert cell(page, "#lock-2 .badge") == "unlocked"

    # The right token, typed and used from the keyboard alone: locks at the present frequency.
    page.click("#token-forget")
    assert toggle.is_disabled()
    page.focus("#token")
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    toggle.focus()
    page.keyboard.press("Space")
    page.wait_for_function("() => ['locked', 'railed', 'stale'].includes("
                           "document.querySelector('#lock-2 .badge').textContent)")
    status = rpc_status(lab, 2)
    assert status["state"] != "unlocked"
    frequency = lab.api("/api/v1/channels/2")["frequency_thz"]
    assert abs(status["setpoint_thz"] - frequency) < 1e-3
    page.wait_for_function("() => document.querySelector('#lock-2 td:nth-child(5)')"
                           ".textContent !== '–'")  # the error (MHz) arrives live
    assert toggle.inner_text() == "Unlock"

    # A new setpoint, 5 MHz up, typed and applied with Enter: the lock follows it.
    setpoint = round(status["setpoint_thz"] + 5e-6, 6)
    page.fill("#setpoint-2", f"{setpoint:.6f}")
    page.press("#setpoint-2", "Enter")
    page.wait_for_selector(f"#locks-message:text-is('channel 2: setpoint now {setpoint:.6f} THz')")
    assert rpc_status(lab, 2)["setpoint_thz"] == pytest.approx(setpoint, abs=1e-9)
    assert page.input_value("#setpoint-2") == f"{setpoint:.6f}"

    page.select_option("#history-range", "900")
    page.click("#history-form button[type=submit]")
    page.wait_for_selector("#history-message:has-text('points')")
    screenshot(page, artifacts / "dashboard-locked.png")  # the picture in docs/dashboard.md

    toggle.click()
    page.wait_for_selector("#lock-2 .badge:text-is('unlocked')")
    assert rpc_status(lab, 2)["state"] == "unlocked"


def test_write_without_a_token_is_refused_by_the_server(lab):
    request = urllib.request.Request(
        lab.url + "api/v1/rpc", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "lock",
                         "params": {"channel": 3, "setpoint_thz": 350.0}}).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        body = json.load(exc)
    assert "token" in body["error"]["message"]
    assert rpc_status(lab, 3)["state"] == "unlocked"


def test_history_plot_for_a_chosen_range(page, lab, artifacts):
    open_dashboard(page, lab)
    page.wait_for_selector("#history-sensors input[value='chamber']")
    day = urlencode({"start": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                     "end": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    wait_for(lambda: len(lab.api(f"/api/v1/series?sensor=chamber&{day}")["points"]) >= 6,
             30, "six stored chamber samples")
    page.check("#history-sensors input[value='chamber']")
    page.check("#history-sensors input[value='table']")
    page.select_option("#history-range", "900")
    with page.expect_request(lambda r: "/api/v1/series?sensor=chamber" in r.url) as asked:
        page.click("#history-form button[type=submit]")
    page.wait_for_selector("#history-message:has-text('points')")

    plots = page.evaluate("""() => [...ionlab.history.plotsByUnit.values()].map(p => ({
        unit: p.unit, distr: p.plot.scales.y.distr, width: p.plot.width,
        sensors: p.sensors, data: p.plot.data}))""")
    by_unit = {p["unit"]: p for p in plots}
    assert set(by_unit) == {"mbar", "K"}
    assert by_unit["mbar"]["sensors"] == ["chamber"]
    assert by_unit["mbar"]["distr"] == 3  # pressure on a log axis
    assert by_unit["K"]["distr"] == 1

    # The server downsampled to the plot's width (one bucket per pixel at most), and the
    # plot shows exactly what it answered.
    query = parse_qs(urlsplit(asked.value.url).query)
    assert query["every"] == [f"{math.ceil(900 / by_unit['mbar']['width'])}s"]
    answer = lab.api(asked.value.url.removeprefix(lab.url))["points"]
    times, values = by_unit["mbar"]["data"]
    complete = len(times) - 2  # the newest buckets may still be filling
    assert complete >= 2
    assert times[:complete] == [_ms(t) / 1000 for t, _ in answer[:complete]]
    assert values[:complete] == pytest.approx([v for _, v in answer[:complete]], rel=1e-12)

    # The newest samples stream in while the range ends now.
    page.wait_for_function(f"() => ionlab.history.plotsByUnit.get('mbar').plot.data[0].length"
                           f" > {len(times)}", timeout=20_000)
    page.locator("#history-plots").screenshot(path=str(artifacts / "dashboard-history.png"))

    # A custom range in the browser's local time (Berlin, UTC+1 in January) is asked for
    # in UTC; before the lab started it has nothing in it, and says so.
    page.select_option("#history-range", "custom")
    page.fill("#history-start", "2020-01-01T00:00:00")
    page.fill("#history-end", "2020-01-01T01:00:00")
    with page.expect_request(lambda r: "/api/v1/series?sensor=chamber" in r.url) as asked:
        page.click("#history-form button[type=submit]")
    query = parse_qs(urlsplit(asked.value.url).query)
    assert query["start"] == ["2019-12-31T23:00:00.000Z"]
    assert query["end"] == ["2020-01-01T00:00:00.000Z"]
    page.wait_for_selector("#history-message:text-is('0 points, 3 s per point')")
    page.fill("#history-end", "2019-01-01T00:00:00")
    page.click("#history-form button[type=submit]")
    page.wait_for_selector("#history-message:text-is('the end must come after the start')")


def test_a_sensor_that_starts_logging_later_joins_the_history_list(page, lab):
    from services.logger.queries import to_us
    from services.logger.store import open_store

    open_dashboard(page, lab)
    page.wait_for_function("() => ionlab.history.units.has('chamber')")
    assert not page.evaluate("() => ionlab.history.units.has('oven')")
    other = open_store(str(lab.folder / "lab.sqlite"))  # another logger, the same database
    try:
        other.write([("oven", "A", to_us(datetime.now(UTC)), 2.5)])
    finally:
        other.close()
    page.wait_for_function("() => ionlab.history.units.get('oven') === 'A'", timeout=30_000)
    assert page.inner_text("#history-sensors").count("oven (A)") == 1


@pytest.mark.slow
def test_server_restart_reconnects_and_leaves_no_gap(page, tmp_path, artifacts):
    lab = Lab(tmp_path)
    lab.start()
    try:
        open_dashboard(page, lab)
        assert f"at {lab.url}" in lab.output()  # `ionlab run` prints where it serves
        page.wait_for_function("() => ionlab.traces.get(1).t.length >= 10")
        first = page.evaluate("() => ionlab.traces.get(1).t[0]")
        wait_for(lambda: len(stored_since(lab, first)) >= 10, 30, "ten stored readings")

        stopped_at = datetime.now(UTC)
        assert lab.stop() == 0
        page.wait_for_selector("#connection:text-is('reconnecting…')")
        assert page.get_attribute("#connection", "data-state") == "reconnecting"
        restarted_at = datetime.now(UTC)
        lab.start()
        page.wait_for_selector("#connection:text-is('live')", timeout=60_000)
        page.wait_for_function(f"() => ionlab.traces.get(1).t.filter(t => t > "
                               f"{restarted_at.timestamp()}).length >= 10")
        until = datetime.now(UTC)

        # Every reading the logger stored, from before the restart until after it, is in
        # the trace: what the stream could not replay was filled from the store.
        stored: list[int] = []
        missing: list[int] = []

        def complete() -> bool:
            stored[:] = stored_since(lab, first, until)
            trace = set(page.evaluate("() => ionlab.traces.get(1).t.map(t => Math.round(t * 1e3))"))
            missing[:] = [t for t in stored if t not in trace]
            before = sum(t < _ms(stopped_at.isoformat()) for t in stored)
            after = sum(t > _ms(restarted_at.isoformat()) for t in stored)
            return before >= 10 and after >= 10 and not missing

        wait_for(complete, 30, lambda: f"the trace to hold every stored reading, ten from "
                 f"each run: {len(missing)} of {len(stored)} missing, e.g. {missing[:5]}")
        screenshot(page, artifacts / "dashboard-after-restart.png")
    finally:
        assert lab.stop() == 0


def stored_since(lab, start: float, end: datetime | None = None) -> list[int]:
    """The read times (ms) of channel 1's stored readings from `start` (s since the epoch)."""
    end = end or datetime.now(UTC)
    try:
        points = lab.api(f"/api/v1/series?sensor=wavemeter/1&start={_iso(start)}"
                         f"&end={_iso(end.timestamp())}")["points"]
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # 404: nothing stored for it yet
            raise
        return []
    return [_ms(t) for t, _ in points]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _ms(iso: str) -> int:
    """Milliseconds since the epoch, truncated as a browser's Date.parse does."""
    return (datetime.fromisoformat(iso) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1)


def test_ages_follow_the_servers_clock_not_the_browsers(browser, lab):
    """A browser whose clock is an hour fast still shows fresh readings as fresh."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.clock.install(time=datetime.now(UTC) + timedelta(hours=1))
        open_dashboard(page, lab)
        page.wait_for_function("() => ionlab.traces.get(1).t.length >= 3")
        ages = page.eval_on_selector_all("#channels tbody td:nth-child(6)",
                                         "cells => cells.map(c => c.textContent)")
        assert all(a.endswith(" s") and float(a.split()[0]) < 5 for a in ages), ages
        assert page.locator("#channels tbody tr.stale").count() == 0
    finally:
        context.close()


def put(lab, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        lab.url + path.lstrip("/"), method="PUT", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_stale_channels_show_at_a_glance(page, lab, artifacts):
    open_dashboard(page, lab)
    page.wait_for_selector("#channel-1 .badge:text-is('ok')")
    put(lab, "/api/v1/wavemeter", {"measurement": False})
    try:
        page.wait_for_selector("#channel-1.stale .badge:text-is('stale')", timeout=20_000)
        # The last value stays readable, struck out, and the row is marked as a whole.
        assert page.eval_on_selector("#channel-1 td:nth-child(4)",
                                     "td => getComputedStyle(td).textDecorationLine") == "line-through"
        assert cell(page, "#channel-1 td:nth-child(4)") != "–"
        screenshot(page, artifacts / "dashboard-stale.png")
    finally:
        put(lab, "/api/v1/wavemeter", {"measurement": True})
    page.wait_for_selector("#channel-1 .badge:text-is('ok')", timeout=20_000)
    assert page.locator("#channel-1.stale").count() == 0

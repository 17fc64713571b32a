"""The dashboard in a real browser against the real `ionlab run`."""

from __future__ import annotations

import json
import re
import struct
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.waiting import wait_until

from .conftest import TOKEN, Lab

pytestmark = pytest.mark.e2e

C_NM_THZ = 299792.458
CHANNEL_NAMES = {1: "397 cooling", 2: "866 repump", 3: "854 quench", 4: "729 qubit"}


def open_dashboard(page, lab, path: str = "") -> None:
    page.goto(lab.url + path)
    page.wait_for_function("() => window.ionlab && ionlab.stream.state === 'live' "
                           "&& ionlab.channels.rows.size > 0")


def cell(page, selector: str) -> str:
    return page.inner_text(selector).strip()


def screenshot(page, path) -> None:
    """The whole page, from the top (where the sticky header belongs)."""
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def use_token(page, token: str = TOKEN) -> None:
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_selector("#token-state:text-is('accepted: writes enabled')")


def plot_history(page, sensors, start="-15min", end="now") -> None:
    page.wait_for_function(f"() => {json.dumps(sensors)}.every(s => ionlab.history.sensors.has(s))")
    for box in page.query_selector_all("#history-sensors input"):
        box.set_checked(box.get_attribute("value") in sensors)
    page.fill("#history-from", start)
    page.fill("#history-to", end)
    # The message of the view before says "points" too: wait for this view's data first.
    with page.expect_response(lambda r: "/api/v1/series?" in r.url):
        page.click("#history-form button[type=submit]")
    page.wait_for_selector("#history-message:has-text('points')")


#: what each plot of the page says about itself: axis labels, tick labels, scale, data
PLOTS = """(views) => views.map(v => ({
  title: v.heading.textContent,
  x: v.plot.axes[0].label(v.plot), y: v.plot.axes[1].label(v.plot),
  ticks: v.ticks, span: v.plot.scales.x.max - v.plot.scales.x.min,
  distr: v.plot.scales.y.distr, width: v.plot.width, data: v.plot.data,
}))"""


def history_plots(page) -> dict:
    plots = page.evaluate(f"""() => ({PLOTS})([...ionlab.history.plotsByUnit.values()]
        .map(p => p.view)).map((p, i) => ({{...p,
          unit: [...ionlab.history.plotsByUnit.keys()][i]}}))""")
    return {p["unit"]: p for p in plots}


def test_page_loads_live_without_console_errors(page, lab, artifacts, run_cli):
    open_dashboard(page, lab)
    channels = lab.api("/api/v1/channels")
    page.wait_for_function(f"() => ionlab.channels.rows.size === {len(channels)}")
    for ch in channels:
        row = f"#channel-{ch['channel']}"
        assert cell(page, f"{row} td.name") == ch["name"]
        page.wait_for_selector(f"{row} .badge:text-is('ok')")

    # Live: the frequency shown changes, with six decimals (1 MHz), and equals the API's.
    value = "#channel-1 td.value .number"
    first = cell(page, value)
    assert re.fullmatch(r"\d{3}\.\d{6}", first)
    assert page.inner_text("#channels th.value") == "Frequency (THz)"
    page.wait_for_function(f"() => document.querySelector('{value}').textContent "
                           f"!== {json.dumps(first)}", timeout=20_000)
    page.wait_for_function("() => ionlab.traces.get(1).t.length >= 5")
    shown = float(cell(page, value))
    assert abs(shown - lab.api("/api/v1/channels/1")["frequency_thz"]) < 1e-3

    # `ionlab devices` shows the same channel with the same name and the same digits.
    result = run_cli("devices", "--config", str(lab.config))
    row = next(line.split() for line in result.stdout.splitlines() if "wavemeter/1" in line)
    assert row[3:5] == ["397", "cooling"]
    assert len(row[5].split(".")[1]) == len(first.split(".")[1]) == 6

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


def test_plots_have_labelled_axes_units_and_distinct_ticks(page, lab, artifacts):
    wait_until(lambda: {"chamber", "power397", "table", "wavemeter/1"} <= {
        s["sensor"] for s in lab.api("/api/v1/sensors")["sensors"]}, 30, "the lab's sensors")
    open_dashboard(page, lab)
    plot_history(page, ["chamber", "power397", "table", "wavemeter/1"])
    page.wait_for_function("() => [...ionlab.history.plotsByUnit.values()].every("
                           "p => p.view.ticks.x && p.view.ticks.y)")
    plots = history_plots(page)
    assert set(plots) == {"mbar", "W", "K", "THz"}
    assert plots["mbar"]["y"] == "pressure (mbar)" and plots["mbar"]["distr"] == 3
    assert plots["W"]["y"] == "power (mW)"  # about 2 mW: milliwatts, not 0.002 W
    assert plots["K"]["y"] == "temperature (K)"
    assert plots["THz"]["y"] == "offset (MHz)"
    assert plots["THz"]["title"] == "frequency offsets: wavemeter/1 · 397 cooling"
    assert re.search(r"MHz from \d{3}\.\d{6} THz", page.inner_text(
        "#history-plots figure[data-unit='THz'] .u-legend"))
    for unit, plot in plots.items():
        assert plot["x"].startswith("time (Europe/Berlin, UTC+01:00), 20"), plot["x"]
        ticks = plot["ticks"]
        assert len(ticks["x"]) >= 4 and len(set(ticks["x"])) == len(ticks["x"]), (unit, ticks)
        assert all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", t) for t in ticks["x"]), ticks["x"]
        assert len(ticks["y"]) >= 2 and len(set(ticks["y"])) == len(ticks["y"]), (unit, ticks)
    assert all("×10" in t for t in plots["mbar"]["ticks"]["y"])  # scientific, on a log axis
    # The watts are shown as mW: the data drawn are the API's values times 1000.
    api = lab.api("/api/v1/series?sensor=power397&start=-15min&end=now&every=1s")["points"]
    drawn = [v for v in plots["W"]["data"][1] if v is not None]
    assert 1 <= min(drawn) and max(drawn) <= 3 and 1e-3 <= api[0][1] <= 3e-3

    # Hovering: the time in 24-hour form with seconds, the value with the meter's 4 digits.
    figure = page.locator("#history-plots figure[data-unit='W'] .u-over")
    box = figure.bounding_box()
    at = page.evaluate("() => { const p = ionlab.history.plotsByUnit.get('W').view.plot;"
                       " const t = p.data[0]; return p.valToPos(t[t.length - 3], 'x'); }")
    figure.hover(position={"x": at, "y": box["height"] / 2})
    legend = page.locator("#history-plots figure[data-unit='W'] .u-legend")
    page.wait_for_function("() => /\\d mW/.test(document.querySelector("
                           "\"#history-plots figure[data-unit='W'] .u-legend\").textContent)")
    text = legend.inner_text()
    assert re.search(r"20\d\d-\d\d-\d\d [0-2]\d:[0-5]\d:[0-5]\d", text), text
    assert re.search(r"power397\s*\d\.\d{3} mW$", text.strip()), text

    # The live traces: labelled, at least four distinct time ticks, the window of the title.
    page.wait_for_function("() => ionlab.traces.get(1).view.ticks.x?.length >= 4")
    trace = page.evaluate(f"() => ({PLOTS})([ionlab.traces.get(1).view])[0]")
    assert trace["y"] == "offset (MHz)"
    assert re.search(r"MHz from \d{3}\.\d{6} THz \((first reading|setpoint|chosen)\)",
                     trace["title"])
    assert len(set(trace["ticks"]["x"])) == len(trace["ticks"]["x"]) >= 4
    assert len(set(trace["ticks"]["y"])) == len(trace["ticks"]["y"])
    page.locator("#history-plots").screenshot(path=str(artifacts / "dashboard-history.png"))
    # Colours a colour-blind reader tells apart, and status never by colour alone.
    strokes = page.evaluate("() => ionlab.history.plotsByUnit.get('mbar').view.plot.series"
                            ".slice(1).map(s => s._stroke)")
    assert strokes[0] == "#0072b2"  # Okabe–Ito blue
    assert page.evaluate("() => getComputedStyle(document.querySelector('#channel-1 .badge'), "
                         "'::before').content") == '"✓"'


def test_live_window_spans_its_title_filled_from_history(page, lab):
    from services.logger.queries import to_us
    from services.logger.store import open_store

    # Readings stored four and a half minutes ago, before the page opened: they are drawn.
    now = datetime.now(UTC)
    old = [now - timedelta(seconds=270 - 0.5 * k) for k in range(20)]
    other = open_store(str(lab.folder / "lab.sqlite"))
    try:
        other.write([("wavemeter/2", "THz", to_us(t), 346.0000012) for t in old])
    finally:
        other.close()
    open_dashboard(page, lab)
    assert page.inner_text("#traces-title small") == "(last 5 min)"
    page.wait_for_function(f"() => ionlab.traces.get(2).t[0] <= {old[0].timestamp() + 1e-3}")
    span = page.evaluate("() => { const s = ionlab.traces.get(2).view.plot.scales.x;"
                         " return s.max - s.min; }")
    assert span == pytest.approx(300, abs=0.01)
    times = page.evaluate("() => ionlab.traces.get(2).t")
    assert all(t >= now.timestamp() - 301 for t in times)
    assert {_ms(t.isoformat()) for t in old} <= {round(t * 1000) for t in times}


def test_unit_toggles_are_remembered_and_used_everywhere(page, lab):
    open_dashboard(page, lab)
    page.wait_for_function("() => ionlab.traces.get(1).t.length >= 3")
    # From the keyboard: focus THz, arrow to nm.
    page.focus("input[name=frequency][value=THz]")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => ionlab.prefs.frequency === 'nm'")
    assert page.inner_text("#channels th.value") == "Vacuum wavelength (nm)"
    thz = lab.api("/api/v1/channels/1")["frequency_thz"]
    nm = float(cell(page, "#channel-1 td.value .number"))
    assert cell(page, "#channel-1 td.value .unit") == "nm"
    assert nm == pytest.approx(C_NM_THZ / thz, abs=2e-3)  # 397 nm, the same laser
    assert re.search(r"MHz from \d{3}\.\d{6} nm", page.inner_text("#trace-1 h3"))
    assert page.inner_text("#lock-1 .setpoint-row .unit") == "nm"

    page.reload()
    page.wait_for_function("() => window.ionlab && ionlab.channels.rows.size > 0")
    assert page.evaluate("() => ionlab.prefs.frequency") == "nm"
    assert page.is_checked("input[name=frequency][value=nm]")
    assert cell(page, "#channel-1 td.value .unit") == "nm"

    # Kelvin or Celsius, local time or UTC: the history follows.
    plot_history(page, ["table"])
    page.check("input[name=temperature][value='°C']")
    page.check("input[name=zone][value=UTC]")
    page.wait_for_function("() => ionlab.history.plotsByUnit.get('K').view.plot.axes[1]"
                           ".label() === 'temperature (°C)'")
    plot = history_plots(page)["K"]
    assert plot["x"].startswith("time (UTC), 20")
    celsius = [v for v in plot["data"][1] if v is not None]
    assert celsius and all(15 < v < 30 for v in celsius)  # the room, in °C
    assert "UTC" in page.inner_text("#history-zone")
    page.check("input[name=frequency][value=THz]")
    page.check("input[name=temperature][value=K]")
    page.check("input[name=zone][value=local]")


def test_wrong_token_is_rejected_on_entry(page, lab):
    open_dashboard(page, lab)
    page.wait_for_selector("#lock-2 .badge:text-is('unlocked')")
    toggle = page.locator("#lock-2 button.toggle")
    assert toggle.is_disabled() and page.locator("#setpoint-2").is_disabled()
    assert page.is_visible("#locks-hint")
    page.fill("#token", "not-the-token")
    page.press("#token", "Enter")
    page.wait_for_selector("#token-state:text-is(\"wrong token: this is not the lab's write token\")")
    assert toggle.is_disabled()  # nothing was enabled on a token the server refused
    assert page.evaluate("() => sessionStorage.getItem('ionlab.token')") is None
    use_token(page)
    assert toggle.is_enabled() and not page.is_visible("#locks-hint")
    assert page.evaluate("() => sessionStorage.getItem('ionlab.token')") == TOKEN
    page.click("#token-forget")
    assert toggle.is_disabled()


def rpc_status(lab, channel: int) -> dict:
    return lab.api(f"/api/v1/locks/{channel}")


def test_nm_setpoint_locks_the_laser_steps_and_settings(page, lab, artifacts):
    open_dashboard(page, lab)
    page.wait_for_selector("#lock-3 .badge:text-is('unlocked')")
    # The right token, typed and used from the keyboard alone.
    page.focus("#token")
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_selector("#token-state:text-is('accepted: writes enabled')")
    page.check("input[name=frequency][value=nm]")

    # A frequency typed where nm are asked for: the page says it looks like THz.
    thz = lab.api("/api/v1/channels/3")["frequency_thz"]
    page.fill("#setpoint-3", f"{thz:.6f}")
    page.wait_for_selector("#lock-3 .setpoint-hint:has-text('read as THz')")
    page.click("#lock-3 .setpoint-hint button")
    typed = float(f"{thz:.6f}")
    assert float(page.input_value("#setpoint-3")) == pytest.approx(C_NM_THZ / typed, abs=5e-7)
    assert page.locator("#lock-3 .setpoint-hint").is_hidden()

    # The laser's wavelength in nm locks it: the server gets nm and converts exactly.
    nm = round(lab.api("/api/v1/channels/3")["wavelength_nm"], 6)
    page.fill("#setpoint-3", f"{nm:.6f}")
    toggle = page.locator("#lock-3 button.toggle")
    toggle.focus()
    page.keyboard.press("Space")
    page.wait_for_selector(f"#locks-message:text-is('channel 3 locked at {nm:.6f} nm')")
    page.wait_for_function("() => ['locked', 'railed'].includes("
                           "document.querySelector('#lock-3 .badge').textContent)")
    status = rpc_status(lab, 3)
    assert status["setpoint_thz"] == pytest.approx(C_NM_THZ / nm, rel=1e-15)
    wait_until(lambda: abs(rpc_status(lab, 3)["error_mhz"] or 99) < 5, 30,
             "the simulated laser to sit within 5 MHz of the nm setpoint")
    assert toggle.inner_text() == "Unlock"

    # Steps of ±1 and ±10 MHz move the setpoint by exactly that.
    before = rpc_status(lab, 3)["setpoint_thz"]
    page.click("#lock-3 button.step:text-is('+10')")
    page.wait_for_selector("#locks-message:has-text('setpoint +10 MHz')")
    page.click("#lock-3 button.step:text-is('−1')")
    page.wait_for_selector("#locks-message:has-text('setpoint −1 MHz')")
    assert rpc_status(lab, 3)["setpoint_thz"] == pytest.approx(before + 9e-6, abs=1e-12)
    assert page.input_value("#setpoint-3") == f"{C_NM_THZ / (before + 9e-6):.6f}"

    # Gains, capture range and output limits: shown, edited with the token, refused beyond
    # what the output accepts.
    page.click("#lock-3 summary")
    assert float(page.input_value("#lock-3-i")) == status["i"]
    assert float(page.input_value("#lock-3-capture_mhz")) == status["capture_mhz"]
    page.fill("#lock-3-p", "0.002")
    page.fill("#lock-3-capture_mhz", "150")
    page.fill("#lock-3-max_v", "3.5")
    page.click("#lock-3 .settings button[type=submit]")
    page.wait_for_selector("#locks-message:text-is('channel 3: p 0.002, capture_mhz 150, "
                           "max_v 3.5')")
    status = rpc_status(lab, 3)
    assert (status["p"], status["capture_mhz"], status["max_v"]) == (0.002, 150, 3.5)
    saved = lab.folder / "locks.json"  # kept for the next run, like the setpoint

    def persisted():
        values = json.loads(saved.read_text())["channels"]["3"] if saved.exists() else {}
        return {k: values.get(k) for k in ("p", "capture_mhz", "max_v")}

    wait_until(lambda: persisted() == {"p": 0.002, "capture_mhz": 150, "max_v": 3.5}, 10,
             lambda: f"the lock settings in {saved}: {persisted()}")

    # Error and output over time, per lock.
    page.wait_for_function("() => ionlab.locks.rows.get(3).t.filter((t, i) => "
                           "ionlab.locks.rows.get(3).error[i] !== null).length >= 5")
    assert page.is_visible("#lock-plot-3")
    labels = page.evaluate("() => { const p = ionlab.locks.rows.get(3).view.plot;"
                           " return [p.axes[1].label(), p.axes[2].label()]; }")
    assert labels == ["error (MHz)", "output (V)"]
    plot_history(page, ["chamber", "wavemeter/3"])
    screenshot(page, artifacts / "dashboard-locked.png")  # the picture in docs/dashboard.md

    page.fill("#lock-3-min_v", "-99")
    page.click("#lock-3 .settings button[type=submit]")
    page.wait_for_selector("#locks-message:has-text('min_v: wavemeter port 3 accepts')")
    assert rpc_status(lab, 3)["min_v"] != -99

    toggle.click()
    page.wait_for_selector("#lock-3 .badge:text-is('unlocked')")
    page.wait_for_selector("#lock-3 .last-unlock:has-text('last unlock: unlocked on request')")
    assert rpc_status(lab, 3)["state"] == "unlocked"
    page.check("input[name=frequency][value=THz]")


def test_a_lost_lock_shows_its_reason_prominently(page, lab):
    open_dashboard(page, lab)
    use_token(page)
    thz = lab.api("/api/v1/channels/4")["frequency_thz"]
    page.fill("#setpoint-4", f"{thz:.6f}")
    page.click("#lock-4 button.toggle")
    page.wait_for_selector("#lock-4 .badge:text-is('locked')")
    put(lab, "/api/v1/wavemeter", {"measurement": False})
    try:
        page.wait_for_selector("#lock-4 .last-unlock.fault:has-text('⚠ last unlock: signal lost "
                               "at ')", timeout=30_000)
        note = cell(page, "#lock-4 .last-unlock")
        assert re.fullmatch(r"⚠ last unlock: signal lost at [0-2]\d:[0-5]\d:[0-5]\d", note), note
        assert page.eval_on_selector("#lock-4 .last-unlock",
                                     "p => getComputedStyle(p).fontWeight") == "700"
    finally:
        put(lab, "/api/v1/wavemeter", {"measurement": True})
    assert rpc_status(lab, 4)["last_unlock"]["reason"] == "signal lost"


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


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, raw scanlines) of an 8-bit RGBA PNG, read with the stdlib."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert (depth, colour) == (8, 6)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_history_exports_csv_and_png_and_a_permalink_reopens_it(page, lab, browser, tmp_path):
    open_dashboard(page, lab)
    wait_until(lambda: len(lab.api("/api/v1/series?sensor=chamber&start=-1h&end=now")["points"])
             >= 6, 30, "six stored chamber samples")
    plot_history(page, ["chamber", "table"])
    plots = history_plots(page)
    assert set(plots) == {"mbar", "K"}

    # CSV: exactly what /api/v1/series?format=csv answers for the view.
    with page.expect_download() as caught:
        page.click("#history-plots figure[data-unit='mbar'] button.csv")
    download = caught.value
    assert download.suggested_filename.startswith("chamber_") and download.suggested_filename.endswith(".csv")
    query = parse_qs(urlsplit(download.url).query)
    assert query["format"] == ["csv"] and query["sensor"] == ["chamber"]
    assert query["every"] == [f"{page.evaluate('() => ionlab.history.view.every')}s"]
    saved = download.path().read_text()
    with urllib.request.urlopen(download.url, timeout=10) as response:
        again = response.read().decode().splitlines()
    # The same rows; only the newest bucket may have taken readings in between.
    assert saved.splitlines()[:-1] == again[:-1]
    assert saved.splitlines()[-1].split(",")[0] == again[-1].split(",")[0]
    header, *rows = saved.splitlines()
    assert header == "time,value" and len(rows) >= 2
    assert all(5e-11 < float(r.split(",")[1]) < 2e-10 for r in rows)

    # PNG: a real picture of the plot, title and legend included.
    with page.expect_download() as caught:
        page.click("#history-plots figure[data-unit='K'] button.png")
    data = caught.value.path().read_bytes()
    width, height, raw = png_pixels(data)
    canvas = page.evaluate("() => { const c = ionlab.history.plotsByUnit.get('K').view.plot"
                           ".ctx.canvas; return [c.width, c.height]; }")
    assert width == canvas[0] and height > canvas[1]
    assert len(set(raw)) > 10  # not a blank canvas

    # The address says the view as typed; the permalink fixes its range and reopens it.
    assert parse_qs(urlsplit(page.url).query) == {"sensors": ["chamber,table"],
                                                  "from": ["-15min"], "to": ["now"]}
    link = page.get_attribute("#history-permalink", "href")
    fixed = parse_qs(urlsplit(link).query)
    assert fixed["sensors"] == ["chamber,table"]
    start, end = (datetime.fromisoformat(fixed[k][0]) for k in ("from", "to"))
    assert (end - start).total_seconds() == pytest.approx(900, abs=0.01)
    context = browser.new_context(timezone_id="Asia/Tokyo")
    try:
        other = context.new_page()
        other.goto(link)
        other.wait_for_selector("#history-message:has-text('points')")
        assert sorted(other.evaluate("() => ionlab.history.chosen()")) == ["chamber", "table"]
        reopened = history_plots(other)
        first = history_plots(page)
        assert reopened["mbar"]["span"] == pytest.approx(900, abs=0.01)
        scales = other.evaluate("() => { const s = ionlab.history.plotsByUnit.get('mbar')"
                                ".view.plot.scales.x; return [s.min, s.max]; }")
        assert scales == pytest.approx([start.timestamp(), end.timestamp()], abs=1e-3)
        # The same buckets as the first view had for that range.
        same = [t for t in reopened["mbar"]["data"][0] if t in set(first["mbar"]["data"][0])]
        assert len(same) >= 2
    finally:
        context.close()


def test_typed_ranges_in_the_picker(page, lab):
    open_dashboard(page, lab)
    page.wait_for_selector("#history-sensors input[value='chamber']")
    # A wall-clock time in the browser's zone (Berlin, UTC+1 in January) is asked for in UTC;
    # before the lab started there is nothing in it, and the page says so.
    with page.expect_request(lambda r: "/api/v1/series?sensor=chamber" in r.url) as asked:
        plot_history(page, ["chamber"], "2020-01-01T00:00", "2020-01-01 01:00")
    query = parse_qs(urlsplit(asked.value.url).query)
    assert query["start"] == ["2019-12-31T23:00:00.000Z"]
    assert query["end"] == ["2020-01-01T00:00:00.000Z"]
    page.wait_for_selector("#history-message:has-text('0 points, ')")
    # Relative times and today.
    plot_history(page, ["chamber"], "today", "now")
    assert "live" in page.inner_text("#history-message")
    page.select_option("#history-range", "-6h")
    assert (page.input_value("#history-from"), page.input_value("#history-to")) == ("-6h", "now")
    # What cannot be read is said with an example; an end before the start too.
    page.fill("#history-from", "last tuesday")
    page.click("#history-form button[type=submit]")
    page.wait_for_selector("#history-message:has-text(\"start: cannot read 'last tuesday' as "
                           "a time\")")
    assert "-15min, -1h" in page.inner_text("#history-message")
    page.fill("#history-from", "-1h")
    page.fill("#history-to", "-2h")
    page.click("#history-form button[type=submit]")
    page.wait_for_selector("#history-message:has-text('end: must be after start')")


def test_phone_layout_has_cards_and_no_sideways_scrolling(browser, lab, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2,
                                  timezone_id="Europe/Berlin")
    try:
        page = context.new_page()
        open_dashboard(page, lab)
        page.wait_for_function("() => ionlab.traces.get(1).t.length >= 3")
        page.wait_for_selector("#history-plots figure")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        # Cards: every channel's name, status and value in view, nothing scrolled sideways.
        assert page.eval_on_selector("#channels thead", "t => getComputedStyle(t).display") == "none"
        for channel, name in CHANNEL_NAMES.items():
            for part in ("td.name", ".badge", "td.value"):
                locator = page.locator(f"#channel-{channel} {part}")
                box = locator.bounding_box()
                assert locator.is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
                    channel, part, box)
            assert cell(page, f"#channel-{channel} td.name") == name
            box = page.locator(f"#lock-{channel} button.toggle").bounding_box()
            assert box["x"] + box["width"] <= 390
        wide = page.evaluate("() => [...document.querySelectorAll('main *')].filter(e => "
                             "e.getBoundingClientRect().right > 391).map(e => e.tagName + "
                             "'#' + e.id + '.' + e.className)")
        assert wide == []
        screenshot(page, artifacts / "dashboard-phone.png")
        page.screenshot(path=str(artifacts / "dashboard-phone-top.png"))
    finally:
        context.close()


def test_a_sensor_that_starts_logging_later_joins_the_history_list(page, lab):
    from services.logger.queries import to_us
    from services.logger.store import open_store

    open_dashboard(page, lab)
    page.wait_for_function("() => ionlab.history.sensors.has('chamber')")
    assert not page.evaluate("() => ionlab.history.sensors.has('oven')")
    other = open_store(str(lab.folder / "lab.sqlite"))  # another logger, the same database
    try:
        other.write([("oven", "A", to_us(datetime.now(UTC)), 2.5)])
    finally:
        other.close()
    page.wait_for_function("() => ionlab.history.sensors.get('oven')?.unit === 'A'",
                           timeout=30_000)
    # Grouped by device: the gauge under its controller, the unknown oven under "other".
    groups = page.eval_on_selector_all("#history-sensors fieldset", "fs => fs.map(f => "
                                       "[f.querySelector('legend').textContent, "
                                       "[...f.querySelectorAll('input')].map(i => i.value)])")
    by_device = dict(groups)
    assert by_device["other"] == ["oven"]
    assert by_device["chamber"] == ["chamber"]
    assert by_device["temperatures"] == ["table", "trap rf"]
    assert by_device["wavemeter"][:2] == ["wavemeter/1", "wavemeter/2"]
    assert groups[-1][0] == "other"
    label = page.inner_text("#history-sensors label:has(input[value='wavemeter/1'])")
    assert label.strip() == "wavemeter/1 397 cooling (THz)"


@pytest.mark.slow
def test_server_restart_reconnects_and_leaves_no_gap(page, tmp_path, artifacts):
    lab = Lab(tmp_path)
    lab.start()
    try:
        open_dashboard(page, lab)
        assert f"at {lab.url}" in lab.output()  # `ionlab run` prints where it serves
        page.wait_for_function("() => ionlab.traces.get(1).t.length >= 10")
        first = page.evaluate("() => ionlab.traces.get(1).t[0]")
        wait_until(lambda: len(stored_since(lab, first)) >= 10, 30, "ten stored readings")

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

        wait_until(complete, 30, lambda: f"the trace to hold every stored reading, ten from "
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
        ages = page.eval_on_selector_all("#channels tbody td.age",
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
        assert page.eval_on_selector("#channel-1 td.value",
                                     "td => getComputedStyle(td).textDecorationLine") == "line-through"
        assert cell(page, "#channel-1 td.value .number") != "–"
        screenshot(page, artifacts / "dashboard-stale.png")
    finally:
        put(lab, "/api/v1/wavemeter", {"measurement": True})
    page.wait_for_selector("#channel-1 .badge:text-is('ok')", timeout=20_000)
    assert page.locator("#channel-1.stale").count() == 0


def test_formatting_rules_in_the_browser(page, lab):
    """The page's own formatting code, on the cases the issue names."""
    open_dashboard(page, lab)
    result = page.evaluate("""async () => {
        const f = await import('/static/format.js');
        f.setPrecision({ mbar: { significant: 5 }, W: { significant: 4 }, K: { decimals: 3 } });
        const watts = f.displayUnit('W', 4.2e-5);
        return {
          ticks: f.tickLabels([0.002, 0.0025, 0.003, 0.0035], 0.0005),
          close: f.tickLabels([294.3341, 294.3342, 294.3343], 0.0001),
          log: f.tickLabels([1e-10, 2e-10, 5e-10, 1e-9], 1e-10, true),
          microwatts: [watts.unit, f.formatValue(watts.convert(4.2137e-5), f.precisionOf('W'), watts.factor)],
          milliwatts: f.displayUnit('W', 2.1e-3).unit,
          pressure: f.formatValue(1.16243e-10, f.precisionOf('mbar')),
          kelvin: f.formatValue(294.3, f.precisionOf('K')),
          zero: f.formatValue(-0.04, { decimals: 1 }),
          noon: f.clock(Date.UTC(2026, 11, 1, 12, 0, 5) / 1000, { date: true }),
        };
    }""")
    assert result["ticks"] == ["0.0020", "0.0025", "0.0030", "0.0035"]  # never 0.003, 0.003
    assert result["close"] == ["294.3341", "294.3342", "294.3343"]
    assert result["log"] == ["1×10⁻¹⁰", "2×10⁻¹⁰", "5×10⁻¹⁰", "1×10⁻⁹"]
    assert result["microwatts"] == ["µW", "42.14"]
    assert result["milliwatts"] == "mW"
    assert result["pressure"] == "1.1624×10⁻¹⁰"
    assert result["kelvin"] == "294.300"
    assert result["zero"] == "0.0"  # an error of -0.04 MHz is not "-0.0"
    assert result["noon"] == "2026-12-01 13:00:05"  # Berlin, 24-hour, with seconds

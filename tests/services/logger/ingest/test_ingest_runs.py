"""Runs of simple lines are converted at once: exactly as line by line, whatever the run holds.

Both readers of runs are checked: the compiled one (`_simplelines`, built at
install) and the regular expression used where it was not built.
"""

from __future__ import annotations

import random

import pytest

from services.logger.ingest.lineprotocol import LineReader
from services.logger.ingest.mapping import MAX_US, PRECISIONS, RUN_READERS, Batch, Mapper
from tests.conftest import require

from .conftest import stored
from .test_ingest_http import post

SIMPLE = [f"room,sensor=s{k % 7} value={k * 0.25!r} {1_700_000_000 + k}" for k in range(300)]
# lines close to the simple form, each stored or refused as the line-by-line reading does
# (all with timestamps: a line without one gets the time it was read)
ODD = [
    "m v=1\t5", "m v=1 +5", "m v=1 1_0", "m v=1e999 5", "m v=\u0661 5", "m v=1 \u0665",
    "#m v=1 5", "m,a=1,a=2 v=1 5", "m v=1 5\r", " m v=1 5", "m  v=1 5", "m v=.5 5",
    "m v=1. 5", "m =1 5", "m v=1 -5", "m v=1 99999999999999999999999", "m v=nan 5",
    "m v=inf 5", "m,t= v=1 5", "m,=x v=1 5", ",t=1 v=1 5", "m v=1 5 6",
    "m v=1,w=2 5", "m,unit=K value=1 5", "m v=1i 5", "m v=-1e-3 5", "m v=1E3 5", "m v=1e 5",
    "m v=- 5", "m v=1 5 ", "m\tx v=1 5", "m\u00a0x v=1 5", "m v=1 5\u00a0", "", "m v=t 5",
    'm v="s" 5', "m\\ x v=1 5", "m=eq value=1 5", "\u00fcnits,ort=K\u00fchlwasser value=5 5",
    "m v=0x10 5", "m v=1_0 5", "m v=1 -0", "m v=1 0005", "m v=1 5\x0b", "m,a=1 v=1 5 5",
    "m a,b=1 5", "m v==1 5", "m v=1 5=", "m\u2028x v=1 5", "m v=1 --5", "m v=1 5-",
    "m v=+-1 5", "m v=1e5 5", "m,a=b=c v=1 5", "m,a=1, v=1 5", "m, v=1 5", "m v=1 -",
]


def require_compiled() -> None:
    require("compiled" in RUN_READERS, "the compiled line-protocol reader "
            "(services/logger/ingest/_simplelines.c)", "Install with a C compiler: make venv.")


@pytest.fixture(params=["compiled", "expression"])
def runs(request) -> str:
    """Which reader of runs the Mapper uses."""
    if request.param == "compiled":
        require_compiled()
    return request.param


def by_runs(body: bytes, chunk: int, precision: str, runs: str) -> Batch:
    mapper, batch, reader = Mapper(runs=runs), Batch(), LineReader()
    for at in range(0, len(body), chunk):
        mapper.convert(reader.feed(body[at:at + chunk]), precision, batch)
    mapper.convert(reader.end(), precision, batch)
    return batch


def by_lines(body: bytes, precision: str) -> Batch:
    batch = Batch()
    Mapper().convert_lines(enumerate(body.decode().split("\n"), 1), precision, batch)
    return batch


def rows(batch: Batch) -> list[tuple]:
    """Every row `batch` holds, in order (runs of simple lines come as columns)."""
    return [tuple(row) for part in batch.take_rows() for row in part]


def outcome(batch: Batch) -> tuple:
    return (rows(batch), batch.sensors, batch.errors, batch.lines, batch.stored_lines,
            batch.dropped)


@pytest.mark.parametrize("precision", ["u", "n", "s"])
@pytest.mark.parametrize("odd", ODD, ids=repr)
def test_a_run_with_an_odd_line_converts_as_line_by_line(odd, precision, runs):
    body = "\n".join([*SIMPLE[:150], odd, *SIMPLE[150:]]).encode()
    expected = outcome(by_lines(body, precision))
    assert expected[0], "the simple lines are stored"
    for chunk in (7, 1000, len(body)):
        assert outcome(by_runs(body, chunk, precision, runs)) == expected


@pytest.mark.parametrize("field", ["value", "temp", "mixed"])
def test_simple_runs_keep_every_value_time_and_sensor(field, runs):
    names = [field if field != "mixed" else ("value", "temp")[k % 2] for k in range(300)]
    body = "\n".join(line.replace("value=", f"{name}=")
                     for line, name in zip(SIMPLE, names, strict=True)).encode()
    batch = by_runs(body, 4096, "u", runs)
    sensors = [f"room,sensor=s{k % 7}" + ("" if name == "value" else f" {name}")
               for k, name in enumerate(names)]
    assert rows(batch) == [(sensor, "", 1_700_000_000 + k, k * 0.25)
                          for k, sensor in enumerate(sensors)]
    assert batch.sensors == {sensor: ("", {"sensor": sensor.split()[0][12:]})
                             for sensor in sensors}
    assert (batch.lines, batch.stored_lines, batch.dropped) == (300, 300, 0)


PIECES = ["m", "m,t=a", "m,t=a,u=b", "\u00b5", ",", "=", " ", "  ", "\\", '"', "#", "v", "=",
          "1", "-1", "+1", ".5", "1.", "1e3", "1E-3", "1e", "e5", "1e999", "-", "i", "u", "t",
          "\r", "\t", "\x0b", "\x1f", "\x7f", "5", "-5", "05", "9" * 20, "nan", "_", "0x1"]


def near_simple(rng: random.Random) -> str:
    """A line of the simple form with a few pieces changed, added or cut."""
    parts = [rng.choice(["m", "m,t=a", "m,t=a,u=b", "#m"]), " ", rng.choice(["v", "value"]),
             "=", rng.choice(["1", "-1.5", "+.5", "1e3", "2E-3"]), " ",
             rng.choice(["5", "-5", "1700000000000"])]
    for _ in range(rng.randrange(3)):
        at = rng.randrange(len(parts) + 1)
        what = rng.randrange(3)
        if what == 0:
            parts.insert(at, rng.choice(PIECES))
        elif what == 1 and at < len(parts):
            parts[at] = rng.choice(PIECES)
        elif at < len(parts):
            del parts[at]
    return "".join(parts)


@pytest.mark.parametrize("precision", ["n", "u", "ms", "s", "h"])
def test_the_compiled_reader_reads_runs_as_the_expression_does(precision):
    require_compiled()
    compiled, expression = RUN_READERS["compiled"], RUN_READERS["expression"]
    rng = random.Random(f"runs-{precision}")
    scale, divide = PRECISIONS[precision]
    taken = 0
    for _ in range(4000):
        text = "\n".join(near_simple(rng) for _ in range(rng.randrange(1, 4)))
        got, expected = compiled(text, scale, divide), expression(text, scale, divide)
        # non-ASCII runs are left to the line-by-line reading (the odd lines above)
        assert got == expected or (got is None and not text.isascii()), text
        taken += got is not None
    assert 200 < taken < 3600, "the lines are near the simple form, on both sides of it"
    edge = MAX_US * divide // scale
    for stamp in (edge, edge + 1, -edge, -edge - 1, 2**63 - 1, 2**63, -2**63):
        text = f"m v=1 {stamp}"
        assert compiled(text, scale, divide) == expression(text, scale, divide), text


def test_a_bad_line_deep_in_a_large_body_is_named_by_its_number(ingest_server, tmp_path, api):
    db = str(tmp_path / "runs.sqlite")
    srv = ingest_server(db)
    lines = [f"big,k=k{n % 5} value={n} {1_700_000_000 + n}" for n in range(20_000)]
    lines[12_344] = "big,k=k0 value=oops 1700012344"
    status, body, _ = post(srv, "/write?db=lab&precision=s", "\n".join(lines).encode(),
                           api.token)
    assert status == 400
    assert body["error"] == ("partial write: unable to parse 'big,k=k0 value=oops 1700012344' "
                             "(line 12345): invalid value 'oops' for field 'value': expected a "
                             "number, 1i, 1u, true/false or a \"string\" dropped=1")
    assert (body["stored_lines"], body["dropped"]) == (19_999, 1)
    data = stored(db)
    assert sum(map(len, data.values())) == 19_999
    assert data["big,k=k4"][:2] == [(1_700_000_004 * 10**6, 4.0), (1_700_000_009 * 10**6, 9.0)]
    assert (1_700_012_344 * 10**6, 12_344.0) not in data["big,k=k4"]

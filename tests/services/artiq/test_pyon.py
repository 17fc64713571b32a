"""PYON v2 and v1 as sipyco writes them: the reference's wire examples, both ways.

The expected texts are what sipyco's pyon.encode and pyon_v1.encode write
(compact JSON with ``__jsonclass__`` objects; Python literals with
``null``/``true``/``false`` and ``(x, )`` for a one-tuple).
"""

import base64
import doctest
import math
import subprocess
import sys
from collections import OrderedDict
from fractions import Fraction

import pytest

import services.artiq.datasets
import services.artiq.device_db
import services.artiq.settings
import services.web.pyon
from services.web.pyon import MAX_DEPTH, decode, decode_v1, encode, encode_v1


def _f8(*values: float) -> str:
    import struct

    return base64.b64encode(struct.pack(f"<{len(values)}d", *values)).decode()


V2 = [
    ('{"__jsonclass__": ["tuple", [[3]]]}', (3,)),
    ('{"__jsonclass__": ["set", [["ping"]]]}', {"ping"}),
    ('{"__jsonclass__": ["dict", [[[1, "a"], [2, "b"]]]]}', {1: "a", 2: "b"}),
    ('{"__jsonclass__": ["complex", [1.0, -2.0]]}', 1 - 2j),
    ('{"__jsonclass__": ["bytes", ["AAH/"]]}', b"\x00\x01\xff"),
    ('{"__jsonclass__": ["slice", [1, null, 2]]}', slice(1, None, 2)),
    ('{"__jsonclass__": ["Fraction", [1, 3]]}', Fraction(1, 3)),
    ('{"__jsonclass__": ["OrderedDict", [[["b", 1], ["a", 2]]]]}', OrderedDict(b=1, a=2)),
    ('[NaN, Infinity, -Infinity]', [math.nan, math.inf, -math.inf]),
    (f'{{"__jsonclass__": ["nparray", [[2, 2], "<f8", "{_f8(1, 2, 3, 4)}"]]}}',
     [[1.0, 2.0], [3.0, 4.0]]),
    ('{"__jsonclass__": ["npscalar", ["<i4", "BwAAAA=="]]}', 7),
    ('{"action": "call", "name": "frequency", "args": {"__jsonclass__": ["tuple", [[1]]]}, '
     '"kwargs": {}}', {"action": "call", "name": "frequency", "args": (1,), "kwargs": {}}),
]

V1 = [
    ('{"action": "call", "name": "frequency", "args": (3, ), "kwargs": {}}',
     {"action": "call", "name": "frequency", "args": (3,), "kwargs": {}}),
    ('{"ping", "frequency"}', {"ping", "frequency"}),
    ("(null, true, false, None, True, False)", (None, True, False, None, True, False)),
    ("[nan, inf, -inf, -1, +2.5, 1e-10]", [math.nan, math.inf, -math.inf, -1, 2.5, 1e-10]),
    ("[1j, (1+2j), (-0.5-1j), -2j]", [1j, 1 + 2j, -0.5 - 1j, -2j]),
    ("{1: 'a', (2, 3): b'\\x00\\xff'}", {1: "a", (2, 3): b"\x00\xff"}),
    ('"caf\\u00e9 \\n \\"quoted\\""', 'café \n "quoted"'),
    ("Fraction(1, 3)", Fraction(1, 3)),
    ('OrderedDict([("b", 1), ("a", 2)])', OrderedDict(b=1, a=2)),
    ("slice(1, null, 2)", slice(1, None, 2)),
    (f'nparray((3, ), "<f8", b"{_f8(1, 2, 3)}")', [1.0, 2.0, 3.0]),
    (f'npscalar("<f8", b"{_f8(0.25)}")', 0.25),
]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("text, value", V2)
def test_v2_decodes_the_reference_forms(text, value):
    assert _same(decode(text), value)


@pytest.mark.parametrize("text, value", V1)
def test_v1_decodes_what_old_clients_send(text, value):
    assert _same(decode_v1(text), value)


def test_v2_encodes_as_sipyco_does():
    assert encode((3,)) == '{"__jsonclass__":["tuple",[[3]]]}'
    assert encode({"status": "ok", "ret": None}) == '{"status":"ok","ret":null}'
    assert encode({1: (2,)}) == '{"__jsonclass__":["dict",[[[1,{"__jsonclass__":["tuple",[[2]]]}]]]]}'
    assert encode(b"\x00\x01\xff") == '{"__jsonclass__":["bytes",["AAH/"]]}'
    assert encode(1 - 2j) == '{"__jsonclass__":["complex",[1.0,-2.0]]}'
    assert encode(Fraction(1, 3)) == '{"__jsonclass__":["Fraction",[1,3]]}'
    assert encode(slice(None, 4)) == '{"__jsonclass__":["slice",[null,4,null]]}'
    assert encode([math.nan, math.inf]) == "[NaN,Infinity]"
    assert encode("café") == '"caf\\u00e9"'  # one ASCII line
    # A str-keyed dict holding the marker key is not mistaken for a special type.
    assert decode(encode({"__jsonclass__": 1})) == {"__jsonclass__": 1}
    with pytest.raises(TypeError, match="Object of type `object` is not PYON encodable"):
        encode({"a": object()})


def test_v1_encodes_as_sipyco_does():
    assert encode_v1({"status": "ok", "ret": (1, )}) == '{"status": "ok", "ret": (1, )}'
    assert encode_v1([None, True, False, 2.5, -1]) == "[null, true, false, 2.5, -1]"
    assert encode_v1([math.nan, math.inf, -math.inf]) == "[nan, inf, -inf]"
    assert encode_v1({"é": b"\x00"}) == '{"\\u00e9": b\'\\x00\'}'
    assert encode_v1(OrderedDict(a=(1, 2))) == 'OrderedDict([("a", (1, 2))])'
    assert encode_v1(Fraction(2, 3)) == "Fraction(2, 3)"
    assert encode_v1(slice(1, None)) == "slice(1, null, null)"
    assert encode_v1(1 + 2j) == "(1+2j)"
    with pytest.raises(TypeError, match="is not PYON serializable"):
        encode_v1(object())


CORPUS = [None, True, 0, -7, 2.5, "text\n\"x\"", b"\x00\xfe", (), (1,), (1, (2, 3)), [1, [2]],
          {"a": 1}, {1: 2, (3,): "x"}, {1, 2, "z"}, 1 + 2j, Fraction(5, 7),
          OrderedDict(z=1, a=2), slice(1, 10, 3), {"nested": [{"deep": (1, {2})}]}]


@pytest.mark.parametrize("value", CORPUS, ids=repr)
def test_round_trips_in_both_versions(value):
    assert _same(decode(encode(value)), value)
    assert _same(decode_v1(encode_v1(value)), value)


@pytest.mark.parametrize("text", [
    "__import__('os')", "open('/etc/passwd')", "x", "a.b", "a[0]", "f'{x}'", "(x := 1)",
    "lambda: 1", "[x for x in ()]", "[*a]", "{**a}", "1 + 1", "-'x'", "-True", "not 1",
    "1 if 1 else 2", "Fraction(1, denominator=3)", "OrderedDict(a=1)", "...",
    "nparray((1, ), '|O', b'AAAAAAAAAAA=')", "Fraction(1, 0)", "slice(1.5)", "b'x' + b'y'",
])
def test_v1_refuses_everything_but_the_literal_grammar(text):
    with pytest.raises((ValueError, TypeError)) as info:
        decode_v1(text)
    assert str(info.value).startswith(("not PYON v1", "PYON ")), info.value


@pytest.mark.parametrize("text, kind, message", [
    ('{"__jsonclass__": ["frobnicator", [1]]}', TypeError,
     "Object of type `frobnicator` is not PYON decodable"),
    ('{"__jsonclass__": ["tuple", [[]]], "x": 1}', ValueError, "must be the only key"),
    ('{"__jsonclass__": "tuple"}', ValueError, "must be the only key and hold [TYPE, [ARGS]]"),
    ('{"__jsonclass__": ["set", [[[1]]]]}', TypeError, "unhashable type: 'list'"),
    ('{"__jsonclass__": ["bytes", ["%%"]]}', ValueError, "PYON bytes('%%')"),
    ('{"__jsonclass__": ["Fraction", [1.5, 2]]}', TypeError, "expected an integer, got 1.5"),
    (f'{{"__jsonclass__": ["nparray", [[3], "<f8", "{_f8(1, 2)}"]]}}', ValueError,
     "cannot reshape"),
    ('{"__jsonclass__": ["nparray", [[1], "|O", "AAAAAAAAAAA="]]}', TypeError,
     "only boolean and numeric arrays are accepted"),
    ('{"__jsonclass__": ["nparray", [[1], "<U1", "AAAAAA=="]]}', TypeError,
     "only boolean and numeric arrays are accepted"),
    ("[1, 2", ValueError, "not PYON v2 (JSON)"),
    ("nan", ValueError, "not PYON v2 (JSON)"),
])
def test_v2_refusals_say_what_is_wrong(text, kind, message):
    with pytest.raises(kind) as info:
        decode(text)
    assert message in str(info.value)


@pytest.mark.parametrize("depth, ok", [(MAX_DEPTH, True), (MAX_DEPTH + 1, False),
                                       (10_000, False)])
def test_nesting_is_bounded_in_both_versions(depth, ok):
    text = "[" * depth + "]" * depth
    for decoder in (decode, decode_v1):
        if ok:
            assert decoder(text) is not None
        else:
            with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
                decoder(text)
    dicts = '{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    with pytest.raises(ValueError, match="nested deeper"):
        decode(dicts)


def test_without_numpy_arrays_are_refused_with_a_reason():
    script = (
        "import sys; sys.modules['numpy'] = None\n"
        "from services.web import pyon\n"
        f"print(pyon.decode('[1, 2]'))\n"
        "try:\n"
        f"    pyon.decode('{{\"__jsonclass__\": [\"nparray\", [[1], \"<f8\", \"{_f8(1)}\"]]}}')\n"
        "except TypeError as exc:\n"
        "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[1, 2]", "PYON nparray([1], '<f8', 'AAAAAAAA8D8='): numpy arrays need numpy, which is "
        "not installed on this server; send a list instead"]


@pytest.mark.parametrize("module", [services.web.pyon, services.artiq.settings,
                                    services.artiq.device_db, services.artiq.datasets])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0

"""InfluxDB line protocol: one line to a point, and a body read as a stream of lines.

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

Escapes: in the measurement ``\\,`` ``\\ `` and ``\\\\``; in tag keys, tag values
and field keys also ``\\=``; in string field values ``\\"`` and ``\\\\``. A
backslash before any other character is a literal backslash. Field values
are floats (``1``, ``-1.5e3``), integers (``1i``, signed 64-bit), unsigned
integers (``1u``, 64-bit), booleans (``t``, ``T``, ``true``, ``True``,
``TRUE`` and the same for false) or strings (``"..."``). The timestamp is an
integer in the request's precision. Blank lines and lines starting with ``#``
are skipped.

>>> parse_line('weather,room=lab\\\\ 1 temp=21.5,ok=t,n=3i,msg="hi \\\\"x\\\\"" 1700000000')
('weather', (('room', 'lab 1'),), [('temp', 21.5), ('ok', True), ('n', 3), ('msg', 'hi "x"')], 1700000000)
>>> parse_line('cpu value=')
Traceback (most recent call last):
...
services.logger.ingest.lineprotocol.LineError: missing field value of 'value'
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

__all__ = ["MAX_LINE_BYTES", "BodyTooLarge", "LineError", "LineReader", "parse_line"]

#: a longer line is refused (the reader's memory stays bounded whatever the body holds)
MAX_LINE_BYTES = 1 << 20
_INT64 = 1 << 63
_UINT64 = 1 << 64
_MEASUREMENT_ESCAPES = re.compile(r"\\([, \\])")
_KEY_ESCAPES = re.compile(r"\\([,= \\])")
_STRING_ESCAPES = re.compile(r'\\(["\\])')
_INTEGER = re.compile(r"[+-]?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset(("t", "T", "true", "True", "TRUE"))
_FALSE = frozenset(("f", "F", "false", "False", "FALSE"))
_NUMBER_START = frozenset("+-.0123456789")
_NUMBER_END = frozenset(".0123456789")


class LineError(ValueError):
    """A line that is not valid line protocol; the message says what is wrong."""


class BodyTooLarge(Exception):
    """The (decompressed) body passed the configured limit."""


def _unescape(pattern: re.Pattern, text: str) -> str:
    return pattern.sub(r"\1", text) if "\\" in text else text


def parse_line(line: str) -> tuple[str, tuple, list, int | None] | None:
    """(measurement, ((tag, value), ...), [(field, value), ...], timestamp or None).

    None for a blank line or a comment; LineError for anything else that is
    not line protocol.
    """
    parts = split_line(line)
    if parts is None:
        return None
    key, fields, stamp = parts
    return (*parse_key(key), parse_fields(fields), parse_stamp(stamp))


def split_line(line: str) -> tuple[str, str, str] | None:
    """The raw (still escaped) series key, field set and timestamp of a line; None if the
    line is blank or a comment."""
    line = line.strip()
    if not line or line[0] == "#":
        return None
    if "\\" not in line and '"' not in line:
        key, _, rest = line.partition(" ")
        fields, _, stamp = rest.lstrip(" ").partition(" ")
        return key, fields, stamp
    _, at = _split(line, ", ")
    key, rest = line[:at], line[at:].lstrip(" ")
    _, at = _split(rest, ", ", quotes=True)
    return key, rest[:at], rest[at:]


def parse_key(key: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(measurement, ((tag key, tag value), ...)) of a raw series key, unescaped."""
    if "\\" not in key:
        measurement, *texts = key.split(",")
        tags = tuple(_tag(t) for t in texts)
    else:
        measurement, *texts = _split(key, ",")[0]
        measurement = _unescape(_MEASUREMENT_ESCAPES, measurement)
        tags = tuple(_tag(*_split_once(t, "=")) for t in texts)
    if not measurement:
        raise LineError("missing measurement")
    if len(tags) > 1 and len({k for k, _ in tags}) != len(tags):
        raise LineError("duplicate tags")
    return measurement, tags


def parse_fields(text: str) -> list[tuple[str, object]]:
    """[(field key, value), ...] of a raw field set; values typed (float, int, bool, str)."""
    if not text:
        raise LineError("missing fields")
    if "\\" not in text and '"' not in text:  # nothing to unescape
        if "," not in text:
            k, _, v = text.partition("=")
            if k and v:
                return [(k, _value(k, v))]
        return [_plain_field(f) for f in text.split(",")]
    return [_field(*_split_once(f, "=", True)) for f in _split(text, ",", quotes=True)[0]]


def parse_stamp(text: str) -> int | None:
    """The timestamp as an integer in the request's precision, or None when absent."""
    text = text.strip(" ")
    if not text:
        return None
    if not _INTEGER.fullmatch(text):
        raise LineError(f"invalid timestamp {text!r}: expected an integer")
    return int(text)


def _tag(k: str, v: str | None = None) -> tuple[str, str]:
    if v is None:  # not yet cut at "="
        k, eq, v = k.partition("=")
        if not eq:
            v = ""
    key = _unescape(_KEY_ESCAPES, k)
    if not k:
        raise LineError(f"missing tag key before {v!r}")
    if not v:
        raise LineError(f"missing tag value of {key!r}")
    return key, _unescape(_KEY_ESCAPES, v)


def _plain_field(text: str) -> tuple[str, object]:
    k, _, v = text.partition("=")
    if k and v:
        return k, _value(k, v)
    return _field(k, v or None)


def _field(k: str, v: str | None) -> tuple[str, object]:
    key = _unescape(_KEY_ESCAPES, k)
    if not k:
        raise LineError(f"missing field key before {v!r}" if v else "missing field key")
    if not v:
        raise LineError(f"missing field value of {key!r}")
    return key, _value(key, v)


def _value(key: str, v: str):
    last = v[-1]
    if last in _NUMBER_END and v[0] in _NUMBER_START and v.isascii() and "_" not in v:
        try:
            number = float(v)
        except ValueError:
            raise LineError(f"invalid number {v!r} for field {key!r}") from None
        if number - number == 0.0:  # finite
            return number
        raise LineError(f"number {v!r} for field {key!r} is out of range")
    if last == "i" and _INTEGER.fullmatch(v, 0, len(v) - 1):
        number = int(v[:-1])
        if not -_INT64 <= number < _INT64:
            raise LineError(f"integer {v!r} for field {key!r} is out of range (signed 64-bit)")
        return number
    if last == "u" and _UNSIGNED.fullmatch(v, 0, len(v) - 1):
        number = int(v[:-1])
        if number >= _UINT64:
            raise LineError(f"unsigned {v!r} for field {key!r} is out of range (64-bit)")
        return number
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    if v[0] == '"':
        if len(v) < 2 or v[-1] != '"' or _escaped_end(v):
            raise LineError(f"unbalanced quotes in the value of field {key!r}")
        return _unescape(_STRING_ESCAPES, v[1:-1])
    raise LineError(f"invalid value {v!r} for field {key!r}: expected a number, 1i, 1u, "
                    "true/false or a \"string\"")


def _escaped_end(v: str) -> bool:
    """Whether the closing quote of a string value is itself escaped (odd backslashes)."""
    n = len(v) - 1
    k = n
    while k > 1 and v[k - 1] == "\\":
        k -= 1
    return (n - k) % 2 == 1


def _split(text: str, seps: str, quotes: bool = False) -> tuple[list[str], int]:
    """`text` cut at each unescaped `seps[0]`, up to the first unescaped `seps[1:]`.

    Returns the raw (still escaped) parts and where it stopped. With `quotes`,
    separators inside double quotes do not count (string field values).
    """
    parts, begin, i, n = [], 0, 0, len(text)
    cut, stop = seps[0], seps[1:]
    quoted = False
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if quoted:
            if c == '"':
                quoted = False
        elif quotes and c == '"':
            quoted = True
        elif c == cut:
            parts.append(text[begin:i])
            begin = i + 1
        elif c in stop:
            break
        i += 1
    if quoted:
        raise LineError("unbalanced quotes in a string field value")
    i = min(i, n)
    parts.append(text[begin:i])
    return parts, i


def _split_once(text: str, sep: str, quotes: bool = False) -> tuple[str, str | None]:
    """`text` cut at its first unescaped `sep` (outside quotes); (text, None) without one."""
    _, at = _split(text, "\0" + sep, quotes)
    if at >= len(text):
        return text, None
    return text[:at], text[at + 1:]


class LineReader:
    """A body fed in chunks (gzip or plain), handed back as runs of numbered lines.

    Each run is (number of its first line, its lines of text joined by
    ``\\n``), as many whole lines as a chunk holds, so that they can be
    parsed together. Memory stays bounded: at most one unfinished line
    (`MAX_LINE_BYTES`; a longer line is skipped and its number kept in
    `too_long`) and one piece of decompressed output (`OUTPUT`) are held.
    `limit` bounds the decompressed size (BodyTooLarge past it). A line that
    is not UTF-8 comes back alone, as None.

    >>> r = LineReader()
    >>> list(r.feed(b"a v=1\\nb v=2\\nc v"))
    [(1, 'a v=1\\nb v=2')]
    >>> list(r.feed(b"=3\\n\\xff\\n")), list(r.end())
    ([(3, 'c v=3'), (4, None)], [])
    """

    OUTPUT = 1 << 20

    def __init__(self, gzip: bool = False, limit: int | None = None):
        self.limit = limit
        self.size = 0  # decompressed bytes so far
        self.lineno = 0
        self.too_long: list[int] = []
        self._gzip = zlib.decompressobj(31) if gzip else None
        self._member = False  # inside a gzip member
        self._rest = b""
        self._skipping = False  # inside a line that is too long

    def feed(self, chunk: bytes) -> Iterator[tuple[int, str | None]]:
        if self._gzip is None:
            yield from self._lines(chunk)
            return
        data = chunk
        while data:
            self._member = True
            try:
                out = self._gzip.decompress(data, self.OUTPUT)
            except zlib.error as exc:
                raise LineError(f"the body is not valid gzip ({exc})") from None
            data = self._gzip.unconsumed_tail
            if self._gzip.eof:  # a next member may follow (concatenated gzip streams)
                data = self._gzip.unused_data + data
                self._gzip = zlib.decompressobj(31)
                self._member = False
            yield from self._lines(out)

    def end(self) -> Iterator[tuple[int, str | None]]:
        """The last line, if the body did not end with a newline."""
        if self._member:
            raise LineError("the gzip body is truncated")
        rest, self._rest = self._rest, b""
        if rest and not self._skipping:
            self.lineno += 1
            yield self.lineno, self._decode(rest)

    def _lines(self, data: bytes) -> Iterator[tuple[int, str | None]]:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise BodyTooLarge(f"the body is larger than {self.limit} bytes")
        cut = data.rfind(b"\n")
        if cut < 0:
            self._keep(data)
            return
        if self._skipping:  # the end of the line that was too long
            self._skipping = False
            first = data.find(b"\n")
            self.lineno += 1
            block = data[first + 1:cut] if first < cut else None
        else:
            block = self._rest + data[:cut]
        self._rest = b""
        if block is not None:
            yield from self._block(block)
        self._keep(data[cut + 1:])

    def _block(self, block: bytes) -> Iterator[tuple[int, str | None]]:
        try:
            text = block.decode()
        except UnicodeDecodeError:
            text = None
        if text is not None and (len(block) <= MAX_LINE_BYTES or  # no line can be too long
                                 max(map(len, text.split("\n"))) <= MAX_LINE_BYTES // 4):
            first = self.lineno + 1
            self.lineno += text.count("\n") + 1
            yield first, text
            return
        for line in text.split("\n") if text is not None else map(self._decode,
                                                                   block.split(b"\n")):
            self.lineno += 1
            if line is not None and len(line) > MAX_LINE_BYTES // 4 and \
                    len(line.encode()) > MAX_LINE_BYTES:
                self.too_long.append(self.lineno)
            else:
                yield self.lineno, line

    def _keep(self, data: bytes) -> None:
        if self._skipping or not data:
            return
        self._rest += data
        if len(self._rest) > MAX_LINE_BYTES:
            self._rest = b""
            self._skipping = True
            self.too_long.append(self.lineno + 1)

    @staticmethod
    def _decode(raw: bytes) -> str | None:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return None

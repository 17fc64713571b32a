"""The import record: `.hgimports` at the root of the monorepo, committed with it.

One table per imported subdirectory holds what a later `--sync` needs (where the
child lives, how its branches and tags were named, what was excluded). The
revision map is not stored: every imported changeset carries its child node and
its subdirectory in its extras, so any clone can rebuild the map.

    [imports."wavemeter"]
    source = "../wavemeter"
    kind = "hg"
    ...
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields

from .errors import StateAbort

__all__ = ["FILENAME", "Record", "dumps", "loads"]

FILENAME = ".hgimports"
_HEADER = ("# Repositories imported into this one by `hg importrepo` (ionlab tools/hgimport).\n"
           "# Read by `hg importrepo --sync`; edit `source` if a child moves.\n")


@dataclass
class Record:
    """How one child was imported."""

    subdir: str
    source: str
    kind: str = "hg"
    branch: str = ""
    branch_prefix: str = ""
    tag_prefix: str = ""
    branches: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    linear: bool = False
    keep_messages: bool = False
    onto: str = ""

    @property
    def sourcename(self) -> str:
        """The `convert_source` extra that marks this import's changesets."""
        return f"importrepo:{self.subdir}"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)  # a JSON string or list is a TOML one


def dumps(records: dict[str, Record]) -> str:
    """The file's text, one table per record, sorted by subdirectory."""
    parts = [_HEADER]
    for subdir in sorted(records):
        parts.append(f"\n[imports.{json.dumps(subdir)}]\n")
        for key, value in asdict(records[subdir]).items():
            if key != "subdir":
                parts.append(f"{key} = {_value(value)}\n")
    return "".join(parts)


def loads(text: str, where: str = FILENAME) -> dict[str, Record]:
    """Parse the file; a damaged one aborts naming the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StateAbort(f"{where}: {exc}", "fix the file or restore it from history") from None
    known = {f.name for f in fields(Record)} - {"subdir"}
    records = {}
    for subdir, table in data.get("imports", {}).items():
        unknown = set(table) - known
        if unknown or "source" not in table:
            problem = f"unknown key {sorted(unknown)[0]!r}" if unknown else "missing 'source'"
            raise StateAbort(f"{where}: imports.{subdir}: {problem}")
        records[subdir] = Record(subdir=subdir, **table)
    return records

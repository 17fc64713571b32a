"""How child names become monorepo names: files (filemap), branches, excludes."""

from __future__ import annotations

import fnmatch
import re

from .state import Record

__all__ = ["branch_target", "excluded", "filemap_word"]

_SPACE = re.compile(r"\s+")


def branch_target(record: Record, name: str) -> str:
    """The monorepo branch for child branch `name`: an explicit mapping, else
    `record.branch` for default, else the prefixed name (convert's branchmap
    cannot hold spaces in a target, so they become '-')."""
    target = record.branches.get(name) or (
        record.branch if name == "default" else record.branch_prefix + name)
    return _SPACE.sub("-", target.strip())


def excluded(paths: set[str], patterns: list[str]) -> set[str]:
    """Paths matched by `patterns`: a glob with a '/' matches the whole path (or a
    folder), one without matches any path component (`*.pyc`, `build`).

    >>> sorted(excluded({"a/b.pyc", "build/x", "src/build/y", "keep.c"}, ["*.pyc", "build"]))
    ['a/b.pyc', 'build/x', 'src/build/y']
    """
    hits = set()
    for path in paths:
        parts = path.split("/")
        for pattern in (p.strip("/") for p in patterns):
            if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*") \
                    or ("/" not in pattern and any(fnmatch.fnmatchcase(p, pattern)
                                                   for p in parts)):
                hits.add(path)
                break
    return hits


def filemap_word(path: str) -> str:
    """`path` quoted for convert's filemap (shlex, posix mode).

    >>> print(filemap_word('my "dir"'))
    "my \\"dir\\""
    """
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'

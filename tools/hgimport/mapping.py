"""How child names become monorepo names: the subdirectory, files (filemap),
branches, excludes."""

from __future__ import annotations

import fnmatch
import os
import re

from .errors import InputAbort
from .state import Record

__all__ = ["branch_target", "excluded", "filemap_word", "normalize_subdir"]

_SPACE = re.compile(r"\s+")

# Names Mercurial gives a meaning at the root of a repository (or anywhere: .hg).
_RESERVED = {".hgtags", ".hgignore", ".hgsub", ".hgsubstate", ".hgsigs", ".hgeol",
             ".hgimports"}


def normalize_subdir(subdir: str) -> str:
    """`subdir` as a clean relative path; aborts on anything else."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in subdir):
        raise InputAbort(f"invalid subdirectory {subdir!r}: it holds a control character "
                         "(a newline, a tab, ...)", "give a name of printable characters")
    clean = subdir.replace(os.sep, "/").strip("/")
    parts = clean.split("/")
    if not clean or os.path.isabs(subdir) or any(p in ("", ".", "..") for p in parts):
        raise InputAbort(f"invalid subdirectory {subdir!r}",
                         "give a relative path inside the repository, such as 'wavemeter'")
    if any(p.casefold() == ".hg" for p in parts) or parts[0].casefold() in _RESERVED:
        raise InputAbort(f"invalid subdirectory {subdir!r}: Mercurial reserves that name",
                         "choose another name (not .hg, .hgtags, .hgsub, .hgignore, ...)")
    return clean


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

"""`hg importrepo --export SUBDIR DEST`: SUBDIR's history as a repository of its own.

DEST is the child itself, as far as it was imported (its own changesets, pulled
from the recorded source by node, so every hash is the child's), with the
monorepo's later changes under SUBDIR converted on top: `hg convert` of the
monorepo with a filemap (`include SUBDIR`, `rename SUBDIR .`), the child's
branch names given back, and the revision map seeded with imported changeset ->
child changeset. A monorepo change made on top of the imported child head so
lands on top of the child's head, and `hg push` into a clone of the child takes
it. Hashes cited in those messages are rewritten back to the child's.

Incremental: DEST keeps convert's revision map, so the next export converts only
what the monorepo gained; the same monorepo gives the same changesets.
"""

from __future__ import annotations

import json
import os

from . import remote
from .errors import InputAbort, RemoteAbort, StateAbort
from .hg import Hg
from .importer import Parent, normalize_subdir
from .mapping import branch_target, filemap_word
from .scratch import Scratch
from .source import revset_string
from .state import Record
from .ui import UI

__all__ = ["export"]

MARKER = "importrepo-export"  # in DEST/.hg: what DEST is an export of


def export(hg: Hg, root: str, subdir: str, dest: str, ui: UI) -> int:
    """Write or bring up to date the export of `subdir` in `dest`; 0, or 1 when
    `dest` already had everything."""
    parent = Parent(hg, root)
    subdir = normalize_subdir(subdir)
    record = parent.records.get(subdir)
    if record is None:
        raise InputAbort(f"{subdir} is not an import recorded in .hgimports",
                         "export a subdirectory that hg importrepo brought in")
    if record.kind != "hg":
        raise InputAbort(f"{subdir} came from a {record.kind} repository; only Mercurial "
                         "children can be exported")
    dest = os.path.abspath(dest)
    _check_dest(root, subdir, dest)
    imported = {child: node for child, (node, _b) in parent.imported(record.sourcename).items()}
    revset = f"heads(extra('convert_source', {revset_string(record.sourcename)}))"
    heads = hg.lines("log", "-r", revset, "-T", '{get(extras, "convert_revision")}\n',
                     repo=root)
    before = _count(hg, dest)
    _bring_child(hg, root, record, dest, heads)
    shamap = os.path.join(dest, ".hg", "shamap")
    seen = set()
    if os.path.exists(shamap):
        with open(shamap, encoding="utf-8") as fh:
            seen = {line.split()[0] for line in fh if line.strip()}
    with open(shamap, "a", encoding="utf-8") as fh:
        fh.writelines(f"{node} {child}\n" for child, node in sorted(imported.items())
                      if node not in seen)
    with Scratch(None) as scratch:
        filemap = scratch.write("filemap", f"include {filemap_word(subdir)}\n"
                                           f"rename {filemap_word(subdir)} .\n")
        branchmap = scratch.write("branchmap", "".join(
            f"{mine} {theirs}\n" for theirs, mine in _branches(record, parent).items()
            if " " not in mine + theirs))
        hg.run("convert", "--source-type", "hg", "--dest-type", "hg", "--filemap", filemap,
               "--branchmap", branchmap, "--config", "convert.hg.saverev=False",
               "--config", "convert.skiptags=True",
               "--config", "convert.ignoreancestorcheck=True",
               "--config", "importrepo.messages=rewrite", root, dest)
    _bookmarks(hg, root, record, dest)
    with open(os.path.join(dest, ".hg", MARKER), "w", encoding="utf-8") as fh:
        json.dump({"monorepo": os.path.realpath(root), "subdir": subdir}, fh)
    added = _count(hg, dest) - before
    mine = len(hg.lines("log", "-r", "not ::(" + "+".join(heads) + ")", "-T", "x\n",
                        repo=dest)) if heads else 0
    ui.status(f"exported {subdir}/ to {dest}: {added} new changesets "
              f"({mine} made in the monorepo on top of the child's)")
    return 0 if added else 1


def _check_dest(root: str, subdir: str, dest: str) -> None:
    marker = os.path.join(dest, ".hg", MARKER)
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as fh:
            mark = json.load(fh)
        if mark != {"monorepo": os.path.realpath(root), "subdir": subdir}:
            raise StateAbort(f"{dest} is the export of {mark['subdir']} from "
                             f"{mark['monorepo']}", "give another destination")
    elif os.path.exists(dest) and os.listdir(dest):
        raise StateAbort(f"{dest} exists and is not an export of {subdir}",
                         "give a new folder, or an earlier export of it")


def _count(hg: Hg, dest: str) -> int:
    if not os.path.isdir(os.path.join(dest, ".hg")):
        return 0
    return int(hg.text("log", "-r", "tip", "-T", "{rev}", repo=dest)) + 1


def _bring_child(hg: Hg, root: str, record: Record, dest: str, heads: list[str]) -> None:
    """The child's own changesets up to the imported heads, from its source."""
    if not heads:
        raise StateAbort(f"nothing of {record.subdir} was imported")
    if os.path.isdir(os.path.join(dest, ".hg")):
        have = hg.run("log", "-r", "+".join(heads), "-T", "x", repo=dest, check=False)
        if have.code == 0 and have.text.count("x") == len(heads):
            return
    where = record.source if remote.is_remote(record.source) or os.path.isabs(record.source) \
        else os.path.normpath(os.path.join(root, record.source))
    revs = [arg for head in heads for arg in ("-r", head)]
    if os.path.isdir(os.path.join(dest, ".hg")):
        result = hg.run("pull", "-q", *revs, where, repo=dest, check=False)
    else:
        result = hg.run("clone", "-U", "-q", *revs, where, dest, check=False)
    if result.code:
        raise RemoteAbort(f"cannot bring the child's changesets from {record.source}: "
                          + result.err.decode("utf-8", "replace").strip(),
                          "the export takes the imported changesets from the child itself; "
                          "edit source in .hgimports if it moved")


def _branches(record: Record, parent: Parent) -> dict[str, str]:
    """{child branch: monorepo branch} for the branches the import made."""
    names = {branch for _n, branch in parent.imported(record.sourcename).values()}
    result = {"default": branch_target(record, "default")}
    for name in names:
        if name.startswith(record.branch_prefix) and name != result["default"]:
            result[name[len(record.branch_prefix):]] = name
    for old, new in record.branches.items():
        result[old] = new
    return result


def _bookmarks(hg: Hg, root: str, record: Record, dest: str) -> None:
    """DEST's bookmarks: the monorepo's under the prefix, without it; convert's copies
    of the monorepo's other bookmarks removed."""
    prefix = record.branch_prefix
    shamap = {}
    with open(os.path.join(dest, ".hg", "shamap"), encoding="utf-8") as fh:
        for line in fh:
            mono, mine = line.split()
            shamap[mono] = mine
    want = {b["bookmark"][len(prefix):]: shamap.get(b["node"])
            for b in hg.json("bookmarks", "-T", "json", repo=root)
            if prefix and b["bookmark"].startswith(prefix)}
    have = {b["bookmark"]: b["node"] for b in hg.json("bookmarks", "-T", "json", repo=dest)}
    extra = sorted(set(have) - set(want))
    if extra:
        hg.run("bookmark", "-d", *extra, repo=dest)
    for name, node in sorted(want.items()):
        if node and node != "SKIP" and have.get(name) != node:
            hg.run("bookmark", "-f", "-r", node, name, repo=dest)

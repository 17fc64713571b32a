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
what the monorepo gained, and what the last export saw (LastRun), so it looks
only at the monorepo's changesets since and reads the child only when a sync
imported more of it; the same monorepo gives the same changesets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import InputAbort, RemoteAbort, StateAbort
from .hg import Hg, HgError
from .importer import Parent, normalize_subdir, open_child
from .mapping import branch_target, filemap_word
from .scratch import Scratch
from .source import Source
from .state import Record
from .ui import UI

__all__ = ["export"]

MARKER = "importrepo-export"  # in DEST/.hg: what DEST is an export of
LAST_RUN = "importrepo-export-last"  # in DEST/.hg: what the last export saw (LastRun)


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
    before = _count(hg, dest)
    monoheads = hg.lines("log", "-r", "heads(all())", "-T", "{node}\n", repo=root)
    last = _last_run(dest)
    found, new = _imported(parent, record, monoheads, last)
    if not found:
        raise StateAbort(f"nothing of {subdir} was imported")
    imported = {child: node for child, (node, _b) in found.items()}
    with Scratch(None) as scratch:
        if new:
            heads = _bring_child(hg, root, record, dest, imported, scratch, ui)
        else:  # DEST holds every imported child changeset already
            heads = last.heads
        filemap = scratch.write("filemap", f"include {filemap_word(subdir)}\n"
                                           f"rename {filemap_word(subdir)} .\n")
        branchmap = scratch.write("branchmap", "".join(
            f"{mine} {theirs}\n" for theirs, mine in _branches(record, found).items()
            if " " not in mine + theirs))
        citemap = scratch.write("citemap", "".join(  # cited: the child's own node
            f"{node} {child}\n" for child, node in sorted(imported.items())))
        hg.run("convert", "--source-type", "hg", "--dest-type", "hg", "--filemap", filemap,
               "--branchmap", branchmap, "--config", "convert.hg.saverev=False",
               "--config", "convert.skiptags=True",
               "--config", "convert.ignoreancestorcheck=True",
               "--config", "importrepo.messages=rewrite",
               "--config", "importrepo.citemap=" + citemap, root, dest)
    _bookmarks(hg, root, record, dest)
    with open(os.path.join(dest, ".hg", MARKER), "w", encoding="utf-8") as fh:
        json.dump({"monorepo": os.path.realpath(root), "subdir": subdir}, fh)
    _save_run(dest, LastRun(monoheads, found, heads))
    added = _count(hg, dest) - before
    mine = len(hg.lines("log", "-r", "not ::(" + "+".join(heads) + ")", "-T", "x\n",
                        repo=dest)) if heads else 0
    ui.status(f"exported {subdir}/ to {dest}: {added} new changesets "
              f"({mine} made in the monorepo on top of the child's)")
    return 0 if added else 1


@dataclass
class LastRun:
    """What the last export saw: the monorepo's heads, the imported changesets
    ({child node: (node, branch)}) and the child's heads it brought into DEST."""

    monoheads: list[str]
    imported: dict[str, tuple[str, str]]
    heads: list[str]


def _last_run(dest: str) -> LastRun | None:
    """The last export's LastRun; None when there is none or it cannot be read
    (the export then reads everything again)."""
    try:
        with open(os.path.join(dest, ".hg", LAST_RUN), encoding="utf-8") as fh:
            data = json.load(fh)
        return LastRun(list(data["monoheads"]),
                       {child: (node, branch) for child, (node, branch)
                        in data["imported"].items()}, list(data["heads"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _save_run(dest: str, run: LastRun) -> None:
    path = os.path.join(dest, ".hg", LAST_RUN)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump({"monoheads": run.monoheads, "imported": run.imported,
                   "heads": run.heads}, fh)
    os.replace(path + ".tmp", path)


def _imported(parent: Parent, record: Record, monoheads: list[str], last: LastRun | None
              ) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """Every imported changeset, and those the last export did not see: of the
    monorepo (up to `monoheads`), only what is not below the last export's heads
    is looked at (all of it when there was no last export, or one of its heads
    is gone)."""
    if last is not None and last.monoheads:
        since = f"only({'+'.join(monoheads)}, {'+'.join(last.monoheads)})"
        try:
            new = parent.imported(record.sourcename, since)
        except HgError:  # one was stripped or hidden
            pass
        else:
            new = {child: v for child, v in new.items() if child not in last.imported}
            return {**last.imported, **new}, new
    found = parent.imported(record.sourcename)
    return found, found


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


def _standing(source: Source, imported: dict[str, str]) -> dict[str, str]:
    """{imported node: the child changeset it stands for}: its own, or the last of
    the tag-only commits on top of it (which the import folded into it), so that
    work done on top of it in the monorepo lands on top of them in the export."""
    top = {child: child for child in imported}
    base: dict[str, str] = {}  # tag-only child node -> the imported child node below it
    for change in source.changes:
        if change.node in imported or change.files != (".hgtags",) or not change.parents:
            continue
        below = change.parents[0] if change.parents[0] in imported else \
            base.get(change.parents[0])
        if below is not None:
            base[change.node] = below
            top[below] = change.node
    return {imported[child]: node for child, node in top.items()}


def _bring_child(hg: Hg, root: str, record: Record, dest: str, imported: dict[str, str],
                 scratch: Scratch, ui: UI) -> list[str]:
    """The child's own changesets, from its source (a local path or a scratch clone
    of a remote one), into DEST, and into convert's revision map as what the
    imported changesets stand for; returns the child heads brought."""
    source, _recorded = open_child(hg, root, record.source, root, scratch, ui)
    stands = _standing(source, imported)
    nodes = set(imported) | set(stands.values())
    heads = sorted(nodes - {p for n in nodes for p in source.parent_map[n]})
    revs = [arg for head in heads for arg in ("-r", head)]
    if os.path.isdir(os.path.join(dest, ".hg")):
        result = hg.run("pull", "-q", *revs, source.path, repo=dest, check=False)
    else:
        result = hg.run("clone", "-U", "-q", *revs, source.path, dest, check=False)
    if result.code:
        raise RemoteAbort(f"cannot bring the child's changesets from {record.source}: "
                          + result.err.decode("utf-8", "replace").strip(),
                          "the export takes the imported changesets from the child itself; "
                          "edit source in .hgimports if it moved")
    shamap = os.path.join(dest, ".hg", "shamap")
    seen = set()
    if os.path.exists(shamap):
        with open(shamap, encoding="utf-8") as fh:
            seen = {line.split()[0] for line in fh if line.strip()}
    with open(shamap, "a", encoding="utf-8") as fh:
        fh.writelines(f"{node} {child}\n" for node, child in sorted(stands.items())
                      if node not in seen)
    return heads


def _branches(record: Record, imported: dict[str, tuple[str, str]]) -> dict[str, str]:
    """{child branch: monorepo branch} for the branches the import made."""
    names = {branch for _n, branch in imported.values()}
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

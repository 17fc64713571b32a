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

All of it runs in the `hg importrepo --export` process itself: the monorepo and
DEST through Mercurial's API, convert called here. Only reading and pulling the
child (a first export, or one after a sync) starts a command server (hg.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from mercurial import encoding, extensions
from mercurial import hg as hgrepo
from mercurial.node import bin, hex

from . import importer, state
from . import source as sources
from .errors import InputAbort, RemoteAbort, StateAbort
from .hg import CONVERT_EXTENSION, Hg
from .mapping import branch_target, filemap_word, normalize_subdir
from .scratch import Scratch
from .state import Record
from .ui import UI

__all__ = ["export"]

MARKER = "importrepo-export"  # in DEST/.hg: what DEST is an export of
LAST_RUN = "importrepo-export-last"  # in DEST/.hg: what the last export saw (LastRun)


def export(repo, subdir: str, dest: str, ui: UI, hg_exe: str | None = None) -> int:
    """Write or bring up to date the export of `subdir` of `repo` (the monorepo,
    a Mercurial repository object) in `dest`; 0, or 1 when `dest` already had
    everything. `hg_exe` serves the child, when there is something to take from it.

    Names (branches, bookmarks) are read and written in UTF-8 whatever the locale,
    as the command server's runs are (HGENCODING=utf-8): under ``LANG=C`` a
    non-ASCII branch would otherwise come back as ``?`` and change the hashes."""
    saved = encoding.encoding
    encoding.encoding = b"UTF-8"
    try:
        return _export(repo, subdir, dest, ui, hg_exe)
    finally:
        encoding.encoding = saved


def _export(repo, subdir: str, dest: str, ui: UI, hg_exe: str | None) -> int:
    root = os.fsdecode(repo.root)
    subdir = normalize_subdir(subdir)
    record = _records(repo).get(subdir)
    if record is None:
        raise InputAbort(f"{subdir} is not an import recorded in .hgimports",
                         "export a subdirectory that hg importrepo brought in")
    if record.kind != "hg":
        raise InputAbort(f"{subdir} came from a {record.kind} repository; only Mercurial "
                         "children can be exported")
    dest = os.path.abspath(dest)
    _check_dest(root, subdir, dest)
    hgui = _convert_ui(repo.baseui)
    before = len(_open(hgui, dest)) if os.path.isdir(os.path.join(dest, ".hg")) else 0
    monoheads = [_hex(repo.changelog.node(rev)) for rev in sorted(repo.changelog.headrevs())]
    last = _last_run(dest)
    found, new = _imported(repo, record, monoheads, last)
    if not found:
        raise StateAbort(f"nothing of {subdir} was imported")
    imported = {child: node for child, (node, _b) in found.items()}
    with Scratch(None) as scratch:
        if new:
            with Hg(hg_exe) as hg:
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
        _convert(hgui, root, dest, filemap, branchmap, citemap, one_transaction=before > 0,
                 debug=repo.ui.debug)
    exported = _open(hgui, dest)
    _bookmarks(repo, record, exported)
    with open(os.path.join(dest, ".hg", MARKER), "w", encoding="utf-8") as fh:
        json.dump({"monorepo": os.path.realpath(root), "subdir": subdir}, fh)
    _save_run(dest, LastRun(monoheads, found, heads))
    added = len(exported) - before
    mine = len(exported.revs(b"only(%ld, %ln)", exported.changelog.headrevs(),
                             [bin(head) for head in heads])) if heads else 0
    ui.status(f"exported {subdir}/ to {dest}: {added} new changesets "
              f"({mine} made in the monorepo on top of the child's)")
    return 0 if added else 1


def _records(repo) -> dict[str, Record]:
    """The imports recorded in .hgimports of the working directory's parent."""
    ctx = repo[b"."]
    name = state.FILENAME.encode()
    if name not in ctx:
        return {}
    return state.loads(ctx[name].data().decode("utf-8", "surrogateescape"),
                       f"{state.FILENAME}@{_hex(ctx.node())[:12]}")


def _hex(node: bytes) -> str:
    return hex(node).decode("ascii")


def _open(hgui, path: str):
    return hgrepo.repository(hgui, os.fsencode(path))


def _convert_ui(baseui):
    """A ui for convert as `hg convert` would run with the settings the export
    needs, with convert and importrepo_convert loaded into this process."""
    hgui = baseui.copy()
    for key, value in ((b"ui.quiet", b"true"), (b"ui.interactive", b"no"),
                       (b"extensions.convert", b""),
                       (b"extensions.importrepo_convert", os.fsencode(CONVERT_EXTENSION)),
                       (b"convert.hg.saverev", b"false"), (b"convert.skiptags", b"true"),
                       (b"convert.ignoreancestorcheck", b"true"),
                       (b"importrepo.empty-merges", b"prune"),
                       (b"importrepo.messages", b"rewrite")):
        section, name = key.split(b".", 1)
        hgui.setconfig(section, name, value, b"importrepo")
    extensions.loadall(hgui, whitelist=[b"convert", b"importrepo_convert"])
    return hgui


def _convert(hgui, root: str, dest: str, filemap: str, branchmap: str, citemap: str,
             one_transaction: bool, debug) -> None:
    """`hg convert` of the monorepo into DEST with the filemap and branchmap, here.
    `one_transaction` (DEST has converted before): all the new commits in one
    transaction; when that fails for any reason (convert would roll back an empty
    commit, say), it is undone, DEST's revision map cut back to where it was, and
    convert runs again the ordinary way, a transaction per commit."""
    from hgext.convert import convcmd

    def run():  # convert sets encoding.encoding to UTF-8, which export() restores
        convcmd.convert(hgui, os.fsencode(root), os.fsencode(dest), source_type=b"hg",
                        dest_type=b"hg", filemap=os.fsencode(filemap),
                        branchmap=os.fsencode(branchmap))

    hgui.setconfig(b"importrepo", b"citemap", os.fsencode(citemap), b"importrepo")
    shamap = os.path.join(dest, ".hg", "shamap")
    if one_transaction and os.path.exists(shamap):
        size = os.path.getsize(shamap)
        hgui.setconfig(b"importrepo", b"one-transaction", b"true", b"importrepo")
        try:
            run()
            return
        except BaseException as exc:
            with open(shamap, "r+b") as fh:  # convert wrote the undone commits into it
                fh.truncate(size)
            if not isinstance(exc, Exception):
                raise
            debug(b"importrepo: convert in one transaction undone (%s), "
                  b"again with a transaction per commit\n" % type(exc).__name__.encode())
        finally:
            hgui.setconfig(b"importrepo", b"one-transaction", b"false", b"importrepo")
    run()


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
        fh.write(json.dumps({"monoheads": run.monoheads, "imported": run.imported,
                             "heads": run.heads}))
    os.replace(path + ".tmp", path)


def _imported(repo, record: Record, monoheads: list[str], last: LastRun | None
              ) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """Every imported changeset ({child node: (node, branch)}), and those the last
    export did not see: of the monorepo (up to `monoheads`), only what is not below
    the last export's heads is looked at (all of it when there was no last export,
    or one of its heads is gone)."""
    if last is not None and last.monoheads and _visible(repo, last.monoheads):
        since = repo.revs(b"only(%ln, %ln)", [bin(h) for h in monoheads],
                          [bin(h) for h in last.monoheads])
        new = {child: v for child, v in _marked(repo, record, since).items()
               if child not in last.imported}
        return {**last.imported, **new}, new
    found = _marked(repo, record, repo)
    return found, found


def _visible(repo, nodes: list[str]) -> bool:
    """Whether every one of `nodes` (hex) is a changeset of `repo` still there
    and not hidden."""
    try:
        return all(len(node) == 40 and bin(node) in repo for node in nodes)
    except (TypeError, ValueError):
        return False


def _marked(repo, record: Record, revs) -> dict[str, tuple[str, str]]:
    """{child node: (node, branch)} of the changesets among `revs` the import made."""
    mark = record.sourcename.encode("utf-8")
    result = {}
    for rev in revs:
        ctx = repo[rev]
        extra = ctx.extra()
        if extra.get(b"convert_source") == mark:
            result[extra[b"convert_revision"].decode("ascii")] = (
                _hex(ctx.node()), ctx.branch().decode("utf-8", "surrogateescape"))
    return result


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


def _standing(source: sources.Source, imported: dict[str, str]) -> dict[str, str]:
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
    source, _recorded = importer.open_child(hg, root, record.source, root, scratch, ui)
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


def _bookmarks(repo, record: Record, exported) -> None:
    """DEST's bookmarks: the monorepo's under the prefix, without it; convert's copies
    of the monorepo's other bookmarks removed."""
    prefix = encoding.tolocal(record.branch_prefix.encode("utf-8"))
    mine = {name[len(prefix):]: node for name, node in repo._bookmarks.items()
            if prefix and name.startswith(prefix)}
    shamap = {}
    if mine:
        with open(os.path.join(exported.path, b"shamap"), "rb") as fh:
            shamap = dict(line.split() for line in fh if line.strip())
    want = {name: shamap.get(hex(node)) for name, node in mine.items()}
    have = dict(exported._bookmarks.items())
    changes = [(name, None) for name in sorted(set(have) - set(want))]
    changes += [(name, bin(node)) for name, node in sorted(want.items())
                if node and node != b"SKIP" and have.get(name) != bin(node)]
    if changes:
        with exported.wlock(), exported.lock(), \
                exported.transaction(b"importrepo-export") as tr:
            exported._bookmarks.applychanges(exported, tr, changes)

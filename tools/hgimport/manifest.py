"""Build or extend a monorepo from a manifest: one TOML table per child.

    monorepo = "lab"                  # created when missing (relative to this file)
    username = "Lab <lab@example.org>"  # optional, for the merge commits

    [[child]]
    source = "../wavemeter"           # Mercurial or git, relative to this file
    subdir = "wavemeter"
    branch = "wavemeter"              # the child's default branch (default: subdir)
    branch_prefix = "wavemeter/"      # its other branches (default: subdir/)
    tag_prefix = "wavemeter/"         # its tags (default: subdir/)
    branches = { stable = "wavemeter-stable" }
    exclude = ["*.pyc", "build"]
    linear = false
    merge = true
    keep_messages = false           # true: child hashes in messages left as they are

A child already recorded in the monorepo's .hgimports is synced, any other
imported, in manifest order, each one atomically. --dry-run prints every plan,
--verify checks every import (and prints the plan of a child not imported
yet), both even before the monorepo exists.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import replace

from . import importer, mapping, remote
from .errors import ImportAbort, InputAbort, StateAbort
from .hg import Hg, HgError
from .options import Options
from .ui import UI

__all__ = ["Manifest", "consolidate", "load"]

_KEYS = {"source": str, "subdir": str, "branch": str, "branch_prefix": str, "tag_prefix": str,
         "branches": dict, "exclude": list, "linear": bool, "merge": bool, "rev": str,
         "keep_messages": bool}


class Manifest:
    """A parsed manifest: where the monorepo is and its children's Options."""

    def __init__(self, path: str, monorepo: str, username: str | None,
                 children: list[Options]):
        self.path, self.monorepo, self.username, self.children = \
            path, monorepo, username, children

    def __repr__(self) -> str:
        return f"<Manifest {self.path}: {len(self.children)} children into {self.monorepo}>"


def load(path: str) -> Manifest:
    """Read and check a manifest; every problem names the file and the key."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise InputAbort(f"cannot read manifest {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputAbort(f"{path}: {exc}") from None
    base = os.path.dirname(os.path.abspath(path))
    unknown = set(data) - {"monorepo", "username", "child"}
    if unknown:
        raise InputAbort(f"{path}: unknown key {sorted(unknown)[0]!r}",
                          "top-level keys are monorepo, username and [[child]] tables")
    if not isinstance(data.get("monorepo"), str):
        raise InputAbort(f"{path}: monorepo: expected the path of the monorepo (a string)")
    children, seen = [], set()
    for n, table in enumerate(data.get("child", [])):
        where = f"{path}: child[{n}]"
        for key, value in table.items():
            if key not in _KEYS:
                raise InputAbort(f"{where}.{key}: unknown key",
                                  "known keys: " + ", ".join(sorted(_KEYS)))
            if not isinstance(value, _KEYS[key]):
                raise InputAbort(f"{where}.{key}: expected a {_KEYS[key].__name__}, "
                                  f"got {value!r}")
        for key in ("source", "subdir"):
            if key not in table:
                raise InputAbort(f"{where}: missing {key!r}")
        subdir = mapping.normalize_subdir(table["subdir"])
        if subdir in seen:
            raise InputAbort(f"{where}.subdir: {subdir!r} appears twice")
        seen.add(subdir)
        source = table["source"]
        local = os.path.normpath(os.path.join(base, source))
        if not remote.looks_like_url(source) or os.path.exists(local):
            source = local
        children.append(Options(
            subdir=subdir, source=source, rev=table.get("rev"), branch=table.get("branch"),
            branch_prefix=table.get("branch_prefix"), tag_prefix=table.get("tag_prefix"),
            branches=dict(table.get("branches", {})), exclude=list(table.get("exclude", [])),
            linear=table.get("linear", False), merge=table.get("merge", True),
            keep_messages=table.get("keep_messages", False)))
    if not children:
        raise InputAbort(f"{path}: no [[child]] tables", "add one per repository to import")
    return Manifest(path, os.path.normpath(os.path.join(base, data["monorepo"])),
                    data.get("username"), children)


def _create(hg: Hg, root: str, ui: UI) -> None:
    """A new monorepo with one first commit (an .hgignore) to attach children to."""
    if os.path.exists(root) and os.listdir(root):
        raise StateAbort(f"{root} exists and is not a Mercurial repository",
                         "point monorepo at an existing repository or a new path")
    hg.run("init", root)
    with open(os.path.join(root, ".hgignore"), "w", encoding="utf-8") as fh:
        fh.write("# Ignore rules; each imported child's own are included below.\n")
    hg.run("commit", "-A", "-q", "-m", "create monorepo", repo=root)
    ui.status(f"created {root}")


def consolidate(manifest: Manifest, ui: UI, *, hg_exe: str | None = None,
                dry_run: bool = False, verify: bool = False) -> int:
    """Import or sync every child of `manifest`; returns 0, or 1 when no child
    had anything new. With `verify`, 1 when some child is not imported yet."""
    config = (f"ui.username={manifest.username}",) if manifest.username else ()
    try:
        with Hg(hg_exe, config=config) as hg:
            return _consolidate(hg, manifest, ui, dry_run, verify)
    except HgError as exc:
        raise ImportAbort(str(exc), "nothing half-imported was kept; children done before "
                          "it stay") from None


def _consolidate(hg: Hg, manifest: Manifest, ui: UI, dry_run: bool, verify: bool) -> int:
    root = manifest.monorepo
    if not os.path.isdir(os.path.join(root, ".hg")):
        if dry_run or verify:
            _plans_for_a_new_monorepo(hg, manifest, ui)
            return 1 if verify else 0  # nothing imported yet: nothing verified
        _create(hg, root, ui)
    if verify:
        return _verify(hg, manifest, root, ui)
    results = []
    for options in manifest.children:
        results.append(importer.run(hg, root, _options(hg, manifest, root, options, dry_run),
                                    ui))
    return 0 if 0 in results else 1


def _options(hg: Hg, manifest: Manifest, root: str, options: Options,
             dry_run: bool) -> Options:
    """`options` for this run: a sync if the child is recorded in `root`."""
    sync = options.subdir in importer.Parent(hg, root).records
    return replace(options, sync=sync, dry_run=dry_run, username=manifest.username,
                   linear=options.linear and not sync)


def _verify(hg: Hg, manifest: Manifest, root: str, ui: UI) -> int:
    """Verify every imported child; print the plan of the others (status 1)."""
    failed, missing = [], False
    for options in manifest.children:
        if options.subdir in importer.Parent(hg, root).records:
            if not importer.verify_subdir(hg, root, options.subdir, ui):
                failed.append(options.subdir)
            continue
        missing = True
        ui.status(f"{options.subdir}: not imported yet; the import would be:")
        importer.run(hg, root, _options(hg, manifest, root, options, True), ui)
    if failed:
        raise ImportAbort(f"verification failed for {', '.join(failed)}")
    return 1 if missing else 0


def _plans_for_a_new_monorepo(hg: Hg, manifest: Manifest, ui: UI) -> None:
    """--dry-run or --verify before the monorepo exists: every child's plan,
    against a stand-in created (as the real run would) in a temporary folder."""
    ui.status(f"{manifest.monorepo} does not exist yet: it would be created with a first "
              "commit, then every child imported")
    with tempfile.TemporaryDirectory(prefix="ionlab-import-") as tmp:
        stand_in = os.path.join(tmp, os.path.basename(manifest.monorepo))
        _create(hg, stand_in, UI())
        for options in manifest.children:
            importer.run(hg, stand_in, _options(hg, manifest, stand_in, options, True), ui)

"""The command faces share this: argument rules, one command server, the loop
over subdirectories for --sync and --verify."""

from __future__ import annotations

from dataclasses import replace

from . import export as exporting
from . import importer
from .errors import ImportAbort, InputAbort, StateAbort
from .hg import Hg, HgError
from .options import Options
from .ui import UI

__all__ = ["branch_pairs", "main"]


def branch_pairs(items: list[str]) -> dict[str, str]:
    """{'old': 'new'} from ['old=new', ...]; aborts on an item without '='."""
    pairs = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise InputAbort(f"invalid branch mapping {item!r}", "write it as OLD=NEW")
        pairs[old] = new
    return pairs


def _subdirs(hg: Hg, root: str, args: list[str]) -> list[str]:
    if args:
        return args
    recorded = sorted(importer.Parent(hg, root).records)
    if not recorded:
        raise StateAbort("nothing imported here yet", "hg importrepo SOURCE SUBDIR")
    return recorded


def main(*, hg_exe: str | None, root: str, args: list[str], sync: bool, verify: bool,
         options: Options, ui: UI, export: bool = False, repo=None) -> int:
    """Run `hg importrepo` with parsed arguments; returns the exit status. The
    export works on `repo` (the Mercurial repository object of `root`) itself."""
    if sync + verify + export > 1:
        raise InputAbort("--sync, --verify and --export cannot be combined",
                         "--sync verifies what it brings in anyway")
    if export:
        if len(args) != 2:
            raise InputAbort("need SUBDIR and DEST", "hg importrepo --export SUBDIR DEST")
        try:
            return exporting.export(repo, args[0], args[1], ui, hg_exe)
        except HgError as exc:
            raise ImportAbort(str(exc)) from None
    if not (sync or verify) and len(args) != 2:
        raise InputAbort("need SOURCE and SUBDIR", "hg importrepo SOURCE SUBDIR (see hg help "
                          "importrepo)")
    if (sync or verify) and (options.linear or options.rev):
        raise InputAbort("--linear and --rev apply to a first import only")
    config = (f"ui.username={options.username}",) if options.username else ()
    try:
        with Hg(hg_exe, config=config) as hg:
            return _main(hg, root, args, sync, verify, options, ui)
    except HgError as exc:
        raise ImportAbort(str(exc), "nothing was changed") from None


def _main(hg: Hg, root: str, args: list[str], sync: bool, verify: bool,
          options: Options, ui: UI) -> int:
    if verify:
        failed = [d for d in _subdirs(hg, root, args)
                  if not importer.verify_subdir(hg, root, d, ui)]
        if failed:
            raise ImportAbort(f"verification failed for {', '.join(failed)}")
        return 0
    if sync:
        results = [importer.run(hg, root, replace(options, subdir=d, sync=True), ui)
                   for d in _subdirs(hg, root, args)]
        return 0 if 0 in results else 1
    return importer.run(hg, root, replace(options, source=args[0], subdir=args[1]), ui)

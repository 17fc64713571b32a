"""import another repository into a subdirectory, history and all (ionlab)

``hg importrepo SOURCE SUBDIR`` brings every changeset of SOURCE (a Mercurial
or git repository, local or anything hg clone or git clone accepts) into
SUBDIR of the current repository, with authors, dates, messages, every merge,
named branches and renames; ``hg log -f`` and ``hg annotate`` reach back into
the child's history. The child's history is grafted onto the working
directory's parent and its head merged into it. Child branches are renamed
(default branch to SUBDIR, others to SUBDIR/NAME), child bookmarks and tags
namespaced (SUBDIR/master, SUBDIR/v1.0); the parent's bookmarks, tags, heads,
phases and remote names never move. The child's ``.hgignore`` is included from
the root ``.hgignore``. What was imported is recorded in ``.hgimports``, so that
``hg importrepo --sync SUBDIR`` later brings only what is new, from any clone,
and ``hg importrepo --export SUBDIR DEST`` gives SUBDIR back as a repository.

All work happens in a scratch clone; the repository changes only once the
import has been verified, so a failure or an interrupt leaves it as it was.

Enable it by path (it finds the ionlab ``tools`` package beside it)::

  [extensions]
  importrepo = /path/to/ionlab/hgext/importrepo.py
"""

from __future__ import annotations

import os
import sys

from mercurial import error, registrar
from mercurial.utils import procutil

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Mercurial's demandimport loads commands when the command first uses it
from tools.hgimport import commands, errors  # noqa: E402
from tools.hgimport.options import Options  # noqa: E402
from tools.hgimport.ui import UI  # noqa: E402

cmdtable: dict = {}
command = registrar.command(cmdtable)
templatekeyword = registrar.templatekeyword()
testedwith = b"6.3 7.2"
minimumhgversion = b"6.3"
buglink = b"https://github.com/ionlab/ionlab/issues"
_DEFAULT_PREFIX = b"SUBDIR/"  # shown in the help; stands for the real subdirectory


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _s(value) -> str | None:
    return None if value is None else value.decode("utf-8", "surrogateescape")


def _prefix(value: bytes) -> str | None:
    return None if value == _DEFAULT_PREFIX else _s(value)


class _MercurialUI(UI):
    """Report through Mercurial's ui: status lines and its progress bar."""

    def __init__(self, ui):
        self.ui, self._bars = ui, {}

    def status(self, text: str) -> None:
        self.ui.status(_b(text) + b"\n")

    def progress(self, topic: str, pos: int | None, total: int | None, unit: str = "") -> None:
        bar = self._bars.get(topic)
        if pos is None:
            if bar is not None:
                bar.complete()
                del self._bars[topic]
            return
        if bar is None:
            bar = self._bars[topic] = self.ui.makeprogress(_b(topic), unit=_b(unit), total=total)
        bar.update(pos)


@command(
    b"importrepo",
    [
        (b"r", b"rev", b"", b"import the child only up to REV", b"REV"),
        (b"", b"onto", b".", b"parent revision to attach to and merge into", b"REV"),
        (b"b", b"branch", b"", b"branch for the child's default branch "
         b"(default: SUBDIR; with --linear: the parent's branch)", b"NAME"),
        (b"", b"branch-prefix", _DEFAULT_PREFIX, b"prefix of the child's other branches",
         b"PREFIX"),
        (b"", b"tag-prefix", _DEFAULT_PREFIX, b"prefix of the child's tags", b"PREFIX"),
        (b"", b"map-branch", [], b"name child branch OLD as NEW", b"OLD=NEW"),
        (b"X", b"exclude", [], b"leave out files matching the glob PATTERN", b"PATTERN"),
        (b"", b"linear", False, b"put the child on the parent's branch, on top of it, "
         b"like a rebase"),
        (b"", b"merge", True, b"merge the child head (--no-merge leaves it to you)"),
        (b"", b"sync", False, b"bring in what is new in imported SUBDIRs (default: all)"),
        (b"", b"verify", False, b"only check imported SUBDIRs against their children"),
        (b"", b"export", False, b"write SUBDIR's history as a repository of its own in DEST"),
        (b"n", b"dry-run", False, b"print the plan and change nothing"),
        (b"m", b"message", b"", b"message of the merge or sync commit", b"TEXT"),
        (b"", b"keep-messages", False, b"leave the child hashes cited in messages as they are"),
    ],
    b"[OPTION]... (SOURCE SUBDIR | --sync|--verify [SUBDIR]... | --export SUBDIR DEST)",
    helpcategory=command.CATEGORY_IMPORT_EXPORT,
)
def importrepo(ui, repo, *args, **opts):
    """import a Mercurial or git repository into SUBDIR with its history

    Without options, the child's changesets are converted into SUBDIR, grafted
    onto the working directory's parent and merged into it in one new commit,
    which also adds the child's tags (as SUBDIR/TAG), includes SUBDIR/.hgignore
    from the root .hgignore and records the import in .hgimports.

    --linear stacks the child on the parent's branch instead (what a rebase
    would give); --no-merge leaves the child head unmerged on its branch.

    Child hashes cited in messages (7 hex digits or more) are rewritten to the
    imported ones (--keep-messages leaves them). Each imported changeset keeps
    its child node and source: ``hg log -T '{importnode} {importsource}\\n'``.

    --sync brings in only what the children gained since the last import, as
    one more merge; it does nothing when nothing is new. --verify checks an
    import: files, metadata, counts, tags and hg verify.

    --export SUBDIR DEST writes SUBDIR's history as a repository of its own:
    the child's changesets as they are (so every hash is the child's), then
    the monorepo's changes under SUBDIR on top, ready for ``hg push`` into
    the child. Run again, it adds only what is new.

    Returns 0 on success, 1 when there was nothing to sync or export. With
    ui.detailed-exit-code, a refusal for bad input exits 10 and one for the
    repository's state (uncommitted changes, an interrupted transaction, an
    import already there) 20.
    """
    args = [_s(a) for a in args]
    report = _MercurialUI(ui)
    try:
        username = _s(ui.username())
    except error.Abort:
        username = None
    options = dict(
        rev=_s(opts["rev"]) or None, onto=_s(opts["onto"]) or ".",
        branch=_s(opts["branch"]) or None, branch_prefix=_prefix(opts["branch_prefix"]),
        tag_prefix=_prefix(opts["tag_prefix"]), exclude=[_s(x) for x in opts["exclude"]],
        branches=commands.branch_pairs([_s(x) for x in opts["map_branch"]]),
        linear=opts["linear"], merge=opts["merge"], dry_run=opts["dry_run"],
        keep_messages=opts["keep_messages"],
        message=_s(opts["message"]) or None, username=username,
    )
    try:
        return commands.main(
            hg_exe=os.fsdecode(procutil.hgexecutable()), root=_s(repo.root), args=args,
            sync=opts["sync"], verify=opts["verify"], export=opts["export"], repo=repo,
            options=Options(subdir="", **options),
            ui=report)
    except errors.ImportAbort as exc:
        kind = _ERRORS.get(type(exc), error.Abort)
        raise kind(_b(exc.message), hint=_b(exc.hint) if exc.hint else None) from None


def _imported(ctx):
    extra = ctx.extra()
    return extra if extra.get(b"convert_source", b"").startswith(b"importrepo:") else {}


@templatekeyword(b"importsource", requires={b"ctx"})
def importsource(context, mapping):
    """String. The child repository an imported changeset came from, as given."""
    return _imported(context.resource(mapping, b"ctx")).get(b"importrepo_source", b"")


@templatekeyword(b"importnode", requires={b"ctx"})
def importnode(context, mapping):
    """String. The node of an imported changeset in its child repository."""
    return _imported(context.resource(mapping, b"ctx")).get(b"convert_revision", b"")


# with ui.detailed-exit-code, Mercurial exits 10, 20 and 100 for these
_ERRORS = {errors.InputAbort: error.InputError, errors.StateAbort: error.StateError,
           errors.RemoteAbort: error.RemoteError}

"""Bring Mercurial and git repositories into subdirectories of a monorepo.

`hg importrepo` (hgext/importrepo.py) and `ionlab-import MANIFEST`
(`python -m tools.hgimport`) are thin faces over this package, which drives
Mercurial only through its command line protocol (see hg.py), so it works
with any Mercurial from 6.3 on, inside or outside a Mercurial process.

Modules: hg (command server), source (the child), remote (children behind a
URL), mapping (names), importer (the import and sync), scratch (the run's
scratch folder), guard (what the parent must keep), verify (the checks), state
(.hgimports), export (SUBDIR back out as a repository), manifest (several
children in one run), errors (refusals and exit codes), synth (repositories for
tests and benchmarks).
"""

from .errors import ImportAbort, InputAbort, RemoteAbort, StateAbort
from .importer import Options

__all__ = ["ImportAbort", "InputAbort", "Options", "RemoteAbort", "StateAbort"]

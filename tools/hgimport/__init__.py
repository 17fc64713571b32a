"""Bring Mercurial and git repositories into subdirectories of a monorepo.

`hg importrepo` (hgext/importrepo.py) and `ionlab-import MANIFEST`
(`python -m tools.hgimport`) are thin faces over this package, which drives
Mercurial through its command line protocol (see hg.py), so it works with any
Mercurial from 6.3 on, inside or outside a Mercurial process. The export alone
runs inside `hg importrepo --export` and works on the repositories through
Mercurial's own API, in that one process.

Modules: hg (command server), options (what was asked for), source (the
child), remote (children behind a URL), mapping (names), importer (the import
and sync), scratch (the run's scratch folder), guard (what the parent must
keep), verify (the checks), state (.hgimports), export (SUBDIR back out as a
repository), manifest (several children in one run), errors (refusals and exit
codes), synth (repositories for tests and benchmarks).
"""

from .errors import ImportAbort, InputAbort, RemoteAbort, StateAbort

__all__ = ["ImportAbort", "InputAbort", "RemoteAbort", "StateAbort"]

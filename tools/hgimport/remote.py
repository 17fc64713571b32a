"""Sources that are not local paths: anything `hg clone` or `git clone` accepts
(http(s)://, ssh://, git://, file://, user@host:path), cloned to a scratch
folder first. Messages name the source as the user gave it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from .errors import RemoteAbort
from .hg import Hg

__all__ = ["clone", "is_remote", "looks_like_url"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP = re.compile(r"^[^/@:\s]+@[^/:\s]+:")  # git's user@host:path
_GITISH = re.compile(r"^git://|^[^/@:\s]+@[^/:\s]+:|\.git/?$")


def looks_like_url(source: str) -> bool:
    """Whether `source` is written as a URL (scheme://... or git's user@host:path)."""
    return bool(_SCHEME.match(source) or _SCP.match(source))


def is_remote(source: str) -> bool:
    """Whether `source` is a URL rather than a path (an existing path wins)."""
    return not os.path.exists(source) and looks_like_url(source)


def clone(hg: Hg, url: str, dest: str) -> None:
    """Clone `url` into `dest` (Mercurial's clone without a working directory, or
    a bare git mirror), trying git first where the URL looks like git's."""
    tries = [_hg_clone, _git_clone]
    if _GITISH.search(url):
        tries.reverse()
    failures = []
    for attempt in tries:
        error = attempt(hg, url, dest)
        if error is None:
            return
        failures.append(error)
        shutil.rmtree(dest, ignore_errors=True)
    raise RemoteAbort(f"cannot clone {url}: " + "; ".join(failures),
                      "check the URL; SOURCE is a local path or anything hg clone or git "
                      "clone accepts")


def _last_line(text: str) -> str:
    """The line that says why: the last `fatal:`/`abort:` one, else the last."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("fatal:", "abort:"))]
    return (said or lines or ["failed"])[-1]


def _hg_clone(hg: Hg, url: str, dest: str) -> str | None:
    result = hg.run("clone", "-U", "-q", "--config", "ui.ssh=ssh -o BatchMode=yes", url, dest,
                    check=False)
    if result.code == 0:
        return None
    return "as Mercurial: " + _last_line(result.err.decode("utf-8", "replace"))


def _git_clone(hg: Hg, url: str, dest: str) -> str | None:
    if not shutil.which("git"):
        return "as git: the git program is not on PATH"
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_SSH_COMMAND="ssh -o BatchMode=yes")
    proc = subprocess.run(["git", "clone", "--mirror", "-q", url, dest], capture_output=True,
                          text=True, errors="replace", env=env, stdin=subprocess.DEVNULL)
    if proc.returncode == 0:
        return None
    return "as git: " + _last_line(proc.stderr)

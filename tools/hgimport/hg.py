"""Mercurial through its stable interface: one command server, many commands.

Starting `hg` costs about half a second; an import runs dozens of commands, so
they all go through one `hg serve --cmdserver pipe` process (the protocol
python-hglib speaks). Output is plain (HGPLAIN=1) and machine-readable where it
matters (`-T json`). Nothing here imports Mercurial: the same code drives the
pinned PyPI Mercurial and Debian's.

    with Hg() as hg:
        hg.json("log", "-r", "tip", "-T", "json", repo="/path/to/repo")
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Hg", "HgError", "Result", "find_hg", "plain_env"]

# convert as the import needs it (hash rewriting, extras); inactive unless asked
CONVERT_EXTENSION = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "hgext", "importrepo_convert.py")
_HEADER = struct.Struct(">cI")
_INT = struct.Struct(">i")


def find_hg() -> str:
    """The `hg` beside the running Python (a venv's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "hg")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("hg")
    if not found:
        raise FileNotFoundError("no hg executable beside Python or on PATH")
    return found


def plain_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) with plain, UTF-8, non-interactive Mercurial."""
    env = dict(os.environ if base is None else base)
    env.pop("HGPLAINEXCEPT", None)
    env.update(HGPLAIN="1", HGENCODING="utf-8")
    return env


class HgError(Exception):
    """A Mercurial command exited non-zero."""

    def __init__(self, args: tuple[str, ...], code: int, err: str, repo: str | None = None):
        self.command, self.code, self.err = args, code, err
        where = f" in {repo}" if repo else ""
        super().__init__(f"hg {args[0] if args else ''}{where} failed: {err.strip()}")


@dataclass
class Result:
    code: int
    out: bytes
    err: bytes

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "surrogateescape")


class Hg:
    """A command server; `run()` one command at a time, `close()` when done.

    `config` holds `section.key=value` settings for every command (the convert
    extension is always enabled). `username` is used for commits.
    """

    def __init__(self, exe: str | None = None, *, config: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, cwd: str | None = None):
        self.exe = exe or find_hg()
        # remotenames off: its names are not bookmarks, and once a repository's hgrc
        # loads it into the server it hides the bookmarks of every other repository
        self._global = ["--config", "extensions.convert=", "--config", "ui.interactive=no",
                        "--config", "extensions.remotenames=!",
                        "--config", "extensions.importrepo_convert=" + CONVERT_EXTENSION]
        for item in config:
            self._global += ["--config", item]
        self._proc = subprocess.Popen(
            [self.exe, "serve", "--cmdserver", "pipe", *self._global],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=plain_env(env),
            cwd=cwd or os.path.abspath(os.sep), start_new_session=False)
        channel, data = self._read()
        if channel != b"o" or b"runcommand" not in data:
            raise HgError(("serve", "--cmdserver"), -1, data.decode(errors="replace"))

    def __repr__(self) -> str:
        state = "closed" if self._proc.poll() is not None else f"pid {self._proc.pid}"
        return f"<Hg {self.exe} {state}>"

    def _read(self) -> tuple[bytes, bytes]:
        header = self._proc.stdout.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise HgError(("serve",), self._proc.wait(), "command server died")
        channel, length = _HEADER.unpack(header)
        if channel in b"IL":  # input wanted: length is a size, not a payload
            return channel, b""
        return channel, self._proc.stdout.read(length)

    def run(self, *args: str, repo: str | None = None, check: bool = True,
            on_line: Callable[[str], None] | None = None) -> Result:
        """Run `hg args` in `repo` (file names relative to its root); raise HgError
        on a non-zero exit when `check`. `on_line` receives each line of standard
        output as it arrives.
        """
        argv = (["--cwd", repo, "-R", repo] if repo else []) + list(args)
        payload = "\0".join(argv).encode("utf-8", "surrogateescape")
        try:
            result = self._runcommand(payload, on_line)
        except BaseException:  # Ctrl-C, or a broken pipe: stop the server's command too
            self._proc.kill()
            self._proc.wait()
            raise
        if check and result.code:
            raise HgError(args, result.code, result.err.decode("utf-8", "replace"), repo)
        return result

    def _runcommand(self, payload: bytes, on_line: Callable[[str], None] | None) -> Result:
        self._proc.stdin.write(b"runcommand\n" + struct.pack(">I", len(payload)) + payload)
        self._proc.stdin.flush()
        out, err, pending = bytearray(), bytearray(), b""
        while True:
            channel, data = self._read()
            if channel == b"o":
                out += data
                if on_line:
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        on_line(line.decode("utf-8", "replace"))
            elif channel == b"e":
                err += data
            elif channel == b"r":
                code = _INT.unpack(data)[0]
                break
            elif channel in b"IL":  # never answer prompts: an empty reply means EOF
                self._proc.stdin.write(struct.pack(">I", 0))
                self._proc.stdin.flush()
        return Result(code, bytes(out), bytes(err))

    def text(self, *args: str, repo: str | None = None) -> str:
        return self.run(*args, repo=repo).text

    def json(self, *args: str, repo: str | None = None):
        return json.loads(self.run(*args, repo=repo).out or b"null")

    def lines(self, *args: str, repo: str | None = None) -> list[str]:
        return self.text(*args, repo=repo).splitlines()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> Hg:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

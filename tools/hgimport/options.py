"""What the user asked `hg importrepo` or a manifest entry for (`Options`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Options"]


@dataclass
class Options:
    """What the user asked for; None means the default (docs/hg-import.md)."""

    subdir: str
    source: str | None = None
    rev: str | None = None
    onto: str = "."
    branch: str | None = None
    branch_prefix: str | None = None
    tag_prefix: str | None = None
    branches: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    linear: bool = False
    keep_messages: bool = False
    merge: bool = True
    sync: bool = False
    dry_run: bool = False
    message: str | None = None
    username: str | None = None

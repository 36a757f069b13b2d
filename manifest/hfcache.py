"""Hugging Face cache targets (placeholder)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass(frozen=True)
class Snapshot:
    repo_id: str
    revision: str
    commit: str
    root: Path
    blobs: Path


def looks_like_repo_id(target: str) -> bool:
    return bool(_REPO.match(target))


def resolve(target: str) -> Snapshot:
    raise InputError(f"{target}: Hugging Face cache targets are not supported yet", code="unreadable")

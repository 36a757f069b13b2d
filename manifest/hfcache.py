"""Hugging Face cache targets: ``ORG/NAME[@REVISION]`` resolved to a snapshot, offline.

The snapshot is found through huggingface_hub's own offline lookup
(``snapshot_download(local_files_only=True)``), so ``HF_HUB_CACHE`` / ``HF_HOME`` and
the ``refs/`` files are honoured exactly as huggingface_hub honours them. Nothing is
ever fetched. huggingface_hub is imported only here, and only for cache targets.

A cached repo looks like this (as huggingface_hub writes it)::

    <HF_HUB_CACHE>/models--ORG--NAME/
        blobs/<sha256 or git-sha1>            the content, named by the Hub's own hash
        refs/main                             the commit a branch or tag points to
        snapshots/<commit>/<path> -> ../../blobs/<hash>
        trees/<commit>.json                   the Hub's file listing (sizes, blob ids, lfs_sha256)

Discovery follows the snapshot's symlinks into that repo's ``blobs/`` and nowhere else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Snapshot:
    """A resolved snapshot in the local Hugging Face cache."""

    repo_id: str
    revision: str  # as asked for: a branch, tag or commit
    commit: str  # the commit hash it resolved to (the snapshot folder's name)
    root: Path  # .../snapshots/<commit>
    blobs: Path  # .../blobs (the only place snapshot links may point into)

    @property
    def repo_dir(self) -> Path:
        """The repo's folder in the cache (``models--ORG--NAME``)."""
        return self.blobs.parent

    @property
    def tree_file(self) -> Path:
        """Where huggingface_hub keeps the Hub's file listing for this commit (may not exist)."""
        return self.repo_dir / "trees" / f"{self.commit}.json"


def looks_like_repo_id(target: str) -> bool:
    """``ORG/NAME`` or ``ORG/NAME@REVISION`` (checked before any import of huggingface_hub)."""
    return bool(_REPO.match(target))


def split_target(target: str) -> tuple[str, str]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; the revision defaults to ``main``."""
    repo_id, _, revision = target.partition("@")
    return repo_id, revision or "main"


def cache_dir() -> Path:
    """The hub cache folder, read from the environment at call time (as huggingface_hub
    reads it at import): ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(var)
        if value:
            return Path(os.path.expandvars(os.path.expanduser(value)))
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve(target: str) -> Snapshot:
    """Find ``ORG/NAME[@REVISION]`` in the local cache with no network.

    An incomplete snapshot (huggingface_hub's ``IncompleteSnapshotError``) is still
    returned: the ``hub`` section then names every missing file as
    ``incomplete-download`` instead of failing on the first one."""
    repo_id, revision = split_target(target)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError
    except ImportError:
        raise InputError(
            f"{target}: no such directory (cache targets need huggingface_hub: pip install 'model-manifest[hub]')", code="unreadable"
        ) from None
    where = cache_dir()
    try:
        path = str(snapshot_download(repo_id, revision=revision, cache_dir=str(where), local_files_only=True))
    except IncompleteSnapshotError as e:
        path = str(e.snapshot_path)
    except LocalEntryNotFoundError:
        raise InputError(
            f"{repo_id}@{revision} is not in the Hugging Face cache at {where} (nothing is downloaded: run `hf download {repo_id}` first)",
            code="unreadable",
        ) from None
    except (HFValidationError, ValueError) as e:
        raise InputError(f"{target}: not a usable repo id ({' '.join(str(e).split())[:200]})", code="unreadable") from None
    root = Path(path)
    commit = root.name
    if not _COMMIT.match(commit):
        raise InputError(f"{target}: resolved to {root}, which is not a snapshot folder of the cache", code="unreadable")
    return Snapshot(repo_id=repo_id, revision=revision, commit=commit, root=root, blobs=root.parent.parent / "blobs")


__all__ = ["Snapshot", "cache_dir", "looks_like_repo_id", "resolve", "split_target"]

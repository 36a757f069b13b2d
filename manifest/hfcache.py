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

        .no_exist/<commit>/<path>             "the Hub has no such file": huggingface_hub and
                                              transformers then treat <path> as absent

Containment: every part of the repo folder that huggingface_hub creates (``blobs/``,
``refs/`` and the ref file, ``snapshots/`` and the snapshot folder, ``trees/``,
``.no_exist/``) must be a real directory (or file) inside the repo folder's real path,
never a symlink: a linked ``blobs/`` would let a snapshot link reach any file. This is
checked before huggingface_hub reads anything, and nothing outside is ever read or
printed. Discovery then follows the snapshot's symlinks into that repo's real
``blobs/`` and nowhere else.
"""

from __future__ import annotations

import os
import re
import stat
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
    root: Path  # .../snapshots/<commit> (real path: no symlink in it below the repo folder)
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


def repo_folder(where: Path, repo_id: str) -> Path:
    """``<cache>/models--ORG--NAME``, named as huggingface_hub names it."""
    return where / ("models--" + repo_id.replace("/", "--"))


PARTS = ("blobs", "refs", "snapshots", "trees", ".no_exist")  # what huggingface_hub creates in a repo folder


def linked_part(repo: Path, revision: str) -> str | None:
    """The first part of the repo folder (relative, ``/``-separated) that is a symlink or
    not of the kind huggingface_hub writes there; ``None`` if all are real. Only ``lstat``
    is used: nothing a link points to is read."""
    rev = revision.split("/")
    wants = [(part, True) for part in PARTS]  # (part, must be a folder)
    wants += [("/".join(["refs", *rev[: i + 1]]), i + 1 < len(rev)) for i in range(len(rev))]
    for rel, folder in wants:
        try:
            st = os.lstat(repo.joinpath(*rel.split("/")))
        except FileNotFoundError:
            if rel.startswith("refs/"):
                return None  # the ref parts come last: nothing deeper exists
            continue
        except OSError:
            return rel
        if stat.S_ISLNK(st.st_mode):
            return rel
        if folder and not stat.S_ISDIR(st.st_mode):
            return rel
        if not folder and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            return rel  # a FIFO or device as the ref file (a folder there is simply not a ref)
    return None


def _refuse_linked(repo: Path, revision: str, target: str) -> None:
    bad = linked_part(repo, revision)
    if bad is not None:
        raise InputError(
            f"{target}: {repo.name}/{bad} in the Hugging Face cache is a symlink or not what huggingface_hub writes there; "
            "the cache's parts must be real folders and files inside the repo folder (nothing it points to is read)",
            code="unsafe-path",
        )


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
    if any(part in ("", ".", "..") for part in revision.split("/")):
        raise InputError(f"{target}: not a usable revision", code="unreadable")
    where = cache_dir()
    repo = repo_folder(where, repo_id)
    _refuse_linked(repo, revision, target)  # before huggingface_hub reads refs/ or lists snapshots/
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
    commit = Path(path).name
    if not _COMMIT.match(commit):
        raise InputError(f"{target}: did not resolve to a snapshot folder of the cache", code="unreadable")
    real_repo = Path(os.path.realpath(repo))
    _refuse_linked(real_repo, revision, target)
    root = real_repo / "snapshots" / commit
    try:
        st = os.lstat(root)
    except OSError:
        raise InputError(f"{target}: snapshots/{commit} cannot be read", code="unreadable") from None
    if not stat.S_ISDIR(st.st_mode) or os.path.realpath(path) != str(root):
        raise InputError(
            f"{target}: {repo.name}/snapshots/{commit} is a symlink or lies outside the repo folder; it is not read", code="unsafe-path"
        )
    return Snapshot(repo_id=repo_id, revision=revision, commit=commit, root=root, blobs=real_repo / "blobs")


__all__ = ["Snapshot", "cache_dir", "linked_part", "looks_like_repo_id", "repo_folder", "resolve", "split_target"]

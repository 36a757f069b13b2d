"""Installed distributions' versions, found the way ``importlib.metadata`` finds them
but without importing it (it pulls in the e-mail parser, zipfile and csv: about 30 ms
of every start) and without parsing whole METADATA files.

The ``sys.path`` directories are listed once; a distribution is a ``*.dist-info`` or
``*.egg-info`` entry, matched by its normalized name, first on ``sys.path`` wins (the
same rules as ``importlib.metadata.Lookup``), and its version is the ``Version:``
header. Whenever this cannot be sure (a zip or ``.egg`` on ``sys.path``, a metadata file
without a version), it asks ``importlib.metadata`` itself.
"""

from __future__ import annotations

import os
import re
import sys

_SEP = re.compile(r"[-_.]+")
_index_for: tuple[str, ...] | None = None
_index: dict[str, str] = {}
_complete = True  # False when some sys.path entry may hold distributions this scan does not see


def normalize(name: str) -> str:
    """PEP 503 normalization, spelled with underscores as ``importlib.metadata`` does."""
    return _SEP.sub("_", name).lower()


def _scan() -> None:
    global _index_for, _index, _complete
    paths = tuple(sys.path)
    if paths == _index_for:
        return
    index: dict[str, str] = {}
    complete = True
    for entry in paths:
        base = entry or "."
        if base.lower().endswith(".egg"):
            complete = False
        try:
            it = os.scandir(base)
        except NotADirectoryError:
            complete = False  # a zip file on sys.path
            continue
        except OSError:
            continue  # a missing directory holds nothing
        with it:
            for e in it:
                low = e.name.lower()
                if low.endswith((".dist-info", ".egg-info")):
                    name = low.rpartition(".")[0].partition("-")[0]
                    index.setdefault(normalize(name), e.path)
    _index_for, _index, _complete = paths, index, complete


def _version_header(meta_path: str) -> str | None:
    candidates = [meta_path] if os.path.isfile(meta_path) else [
        os.path.join(meta_path, "METADATA"), os.path.join(meta_path, "PKG-INFO")]
    for path in candidates:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line in ("\n", "\r\n"):
                        return None  # end of the headers, no version
                    if line.startswith("Version:"):
                        return line[len("Version:"):].strip() or None
        except OSError:
            continue
    return None


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None if it is not installed."""
    _scan()
    meta = _index.get(normalize(name))
    if meta is not None:
        version = _version_header(meta)
        if version is not None:
            return version
    elif _complete:
        return None
    import importlib.metadata  # the slow, general path

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None

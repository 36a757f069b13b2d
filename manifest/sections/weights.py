"""The `weights` section (interface first; record/diagnose/compare follow)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..findings import Finding
from ..formats.safetensors import Header, HeaderError, TensorInfo, read_header
from ..inventory import Artifact
from ..options import Options
from ..report import Report


def safetensors_files(art: Artifact) -> list[str]:
    """The artifact's ``*.safetensors`` files, sorted."""
    return sorted(p for p in art.files if p.endswith(".safetensors"))


def header_of(art: Artifact, rel: str) -> Header | HeaderError | OSError:
    """The parsed header of one file (memoized), or the error that stopped it."""

    def compute() -> Header | HeaderError | OSError:
        try:
            with art.open(rel) as f:
                return read_header(f, art.files[rel].size)
        except HeaderError as e:
            return e
        except OSError as e:
            return e

    return art.memo(("safetensors-header", rel), compute)


def tensor_table(art: Artifact) -> dict[str, TensorInfo]:
    """All tensors of all safetensors files that parse cleanly, merged by name (memoized)."""

    def compute() -> dict[str, TensorInfo]:
        out: dict[str, TensorInfo] = {}
        for rel in safetensors_files(art):
            h = header_of(art, rel)
            if isinstance(h, Header):
                for name, t in h.tensors.items():
                    out.setdefault(name, t)
        return out

    return art.memo("tensor-table", compute)


class WeightsSection:
    name = "weights"

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        return None

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        return ()

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        return ()

"""Manifest sections beyond the file table.

A section reads formats from the discovered artifact (never a whole weight file) and
can, independently:

- ``record``: build its part of the manifest at ``create`` time (JSON-able dict or None);
- ``diagnose``: find problems with no manifest at all (``check``, and ``verify`` too);
- ``compare``: check the live artifact against what the manifest recorded.

Each method may call ``report.mark_checked(name)`` / ``report.mark_not_checked(name, why)``
so the report says what was and was not checked. Sections run in list order, all of
them before any full-file digest: they must stay cheap (headers, small JSON files).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ..findings import Finding
from ..inventory import Artifact
from ..options import Options
from ..report import Report


class Section(Protocol):
    name: str

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None: ...

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]: ...

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]: ...


def all_sections() -> list[Section]:
    """The sections in the order they run (imports are local so start-up stays lean)."""
    from .config import ConfigSection
    from .hub import HubSection
    from .requirements import RequirementsSection
    from .tokenizer import TokenizerSection
    from .weights import WeightsSection

    return [WeightsSection(), TokenizerSection(), ConfigSection(), RequirementsSection(), HubSection()]

"""The opt-in load tier (placeholder)."""

from __future__ import annotations

from collections.abc import Iterable

from .findings import Finding
from .inventory import Artifact
from .options import Options
from .report import Report


def run_load(art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
    report.mark_not_checked(f"load:{opts.load}", "the load tier is not implemented yet")
    return ()

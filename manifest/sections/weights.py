"""The `weights` section (placeholder: records nothing yet)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..findings import Finding
from ..inventory import Artifact
from ..options import Options
from ..report import Report


class WeightsSection:
    name = "weights"

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        return None

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        return ()

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        return ()

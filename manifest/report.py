"""The result of ``verify`` and ``check``: every finding, and what was and was not checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .findings import Finding, Severity

REPORT_VERSION = 1
INTEGRITY_ONLY = "integrity only, authenticity not checked"  # what a verify --no-signature verdict says


@dataclass
class Report:
    """Pass/fail plus everything found. Never raised; ``bool(report)`` is the verdict."""

    command: str  # "verify" or "check"
    artifact: str
    manifest: str | None = None
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    not_checked: dict[str, str] = field(default_factory=dict)  # check -> reason
    stats: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. memory needed, signer key ids
    stopped_early: bool = False
    integrity_only: bool = False  # verify --no-signature: the files were checked against the manifest, not who wrote it

    # -- building -----------------------------------------------------------------
    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def extend(self, findings: Any) -> None:
        for f in findings:
            self.add(f)

    def mark_checked(self, check: str) -> None:
        if check not in self.checked:
            self.checked.append(check)
        self.not_checked.pop(check, None)

    def mark_not_checked(self, check: str, reason: str) -> None:
        if check not in self.checked:
            self.not_checked.setdefault(check, reason)

    # -- reading -----------------------------------------------------------------
    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def __bool__(self) -> bool:
        return self.ok

    @property
    def verdict(self) -> str:
        return "pass" if self.ok else "fail"

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION,
            "tool": {"name": "model-manifest", "version": __version__},
            "command": self.command,
            "artifact": self.artifact,
            "manifest": self.manifest,
            "verdict": self.verdict,
            "exit_status": self.exit_status,
            "stopped_early": self.stopped_early,
            "integrity_only": self.integrity_only,
            "checked": list(self.checked),
            "not_checked": [{"check": k, "reason": v} for k, v in self.not_checked.items()],
            "findings": [f.to_dict() for f in self.findings],
            "stats": dict(self.stats),
            "facts": dict(self.facts),
        }

"""Turn a report into output. One formatter per :class:`Format` value (a test checks
that every value has one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum

from .findings import Severity
from .report import Report


class Format(str, Enum):
    TEXT = "text"
    JSON = "json"


def render_text(report: Report) -> str:
    lines: list[str] = []
    for f in report.findings:
        lines.append(f.one_line())
        if f.hint:
            lines.append(f"  fix: {f.hint}")
    n_err = len(report.errors)
    n_warn = sum(1 for f in report.findings if f.severity is Severity.WARNING)
    what = "verified" if report.command == "verify" else "no problems found"
    head = f"{report.command} {report.artifact}: "
    if report.ok:
        head += what + (f" ({n_warn} warning(s))" if n_warn else "")
    else:
        head += f"FAILED, {n_err} error(s)" + (f", {n_warn} warning(s)" if n_warn else "")
        if report.stopped_early:
            head += " (stopped at the first error: --fail-fast)"
    lines.append(head)
    if report.checked:
        lines.append("  checked: " + ", ".join(report.checked))
    for check, why in report.not_checked.items():
        lines.append(f"  not checked: {check}: {why}")
    cached = report.facts.get("trusted_from_cache")
    if cached:
        lines.append(f"  trusted from the stat cache (unchanged size, mtime, inode): {len(cached)} file(s)")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


FORMATTERS: dict[Format, Callable[[Report], str]] = {
    Format.TEXT: render_text,
    Format.JSON: render_json,
}


def render(report: Report, fmt: Format) -> str:
    return FORMATTERS[fmt](report)

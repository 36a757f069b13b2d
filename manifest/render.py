"""Turn a report into output. One formatter per :class:`Format` value (a test checks
that every value has one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum

from .findings import Severity
from .report import INTEGRITY_ONLY, Report


class Format(str, Enum):
    TEXT = "text"
    JSON = "json"
    GITHUB = "github"  # GitHub Actions workflow commands: one ::error file=...:: annotation per finding
    MARKDOWN = "markdown"  # a summary for $GITHUB_STEP_SUMMARY (or any Markdown page)


def render_text(report: Report) -> str:
    lines: list[str] = []
    roots = {f.id for f in report.findings if f.id is not None}
    for f in report.findings:
        if f.caused_by is not None and f.caused_by in roots:  # evidence, under its root cause (whose fix covers it)
            lines.append(f"    {f.one_line()}")
            continue
        lines.append(f.one_line())
        if f.hint:
            lines.append(f"  fix: {f.hint}")
        n = sum(1 for e in report.findings if e.caused_by is not None and e.caused_by == f.id)
        if n:
            lines.append(f"  explains the next {n} finding(s):" if n > 1 else "  explains the next finding:")
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
    if report.integrity_only:
        head += f" ({INTEGRITY_ONLY})"
    lines.append(head)
    if report.checked:
        lines.append("  checked: " + ", ".join(report.checked))
    for check, why in report.not_checked.items():
        lines.append(f"  not checked: {check}: {why}")
    cached = report.facts.get("trusted_from_cache")
    if cached:
        lines.append(f"  trusted from the stat cache (unchanged size, mtime, inode): {len(cached)} file(s)")
    sections = report.facts.get("sections_from_cache")
    if sections:
        lines.append(f"  reused from the stat cache (no file changed): the {', '.join(sections)} checks")
    target = report.facts.get("target")
    if isinstance(target, dict) and target.get("kind") == "hf-cache" and report.facts.get("snapshot_path"):
        lines.append(f"  checked the Hugging Face cache snapshot; load exactly this path (not the repo id): {report.facts['snapshot_path']}")
    if isinstance(target, dict) and target.get("kind") == "remote" and isinstance(report.facts.get("bytes_read"), int):
        n = report.facts["bytes_read"]
        req = report.stats.get("read_requests")
        lines.append(f"  read {n:,} bytes from {target.get('protocol', 'storage')}" + (f" in {req} range request(s)" if req else ""))
    lines.extend(_load_lines(report))
    return "\n".join(lines) + "\n"


def _load_lines(report: Report) -> list[str]:
    """What the opt-in load tier measured (see docs/semantics.md)."""
    out = []
    s = report.facts.get("load:structural")
    if s:
        out.append(f"  load:structural: {s.get('class')} built on the meta device: {s.get('expected_tensors')} tensors expected, "
                   f"{s.get('weights_tensors')} in the weights")
    f = report.facts.get("load:full")
    if f:
        st = report.stats
        mib = st.get("load:full_peak_rss_bytes", 0) / 2**20
        fwd = f" forward pass {st['load:full_forward_seconds']} s ({f.get('tokens')} tokens -> {f.get('output_shape')})," \
            if "load:full_forward_seconds" in st else ""
        out.append(f"  load:full: {f.get('class')} loaded in {st.get('load:full_model_seconds')} s,{fwd} peak RSS {mib:.0f} MiB")
    return out


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _finding_file(report: Report, path: str | None) -> str | None:
    """The annotated file, relative to the workspace: the artifact directory joined
    with the finding's path (a cache target ``ORG/NAME`` is no directory: path only)."""
    if not path:
        return None
    import os

    base = report.artifact
    if base and os.path.isdir(base):
        return os.path.normpath(os.path.join(base, path)).replace(os.sep, "/")
    return path


GITHUB_MAX_FILES = 200


def render_github(report: Report) -> str:
    """One workflow command per finding (``::error``/``::warning``/``::notice``), then
    the text summary. GitHub turns the commands into annotations on the files."""
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
    from .diagnosis import paths_of

    lines = []
    for f in report.findings:
        msg = " ".join(f.message.split()) + (f" (fix: {f.hint})" if f.hint else "")
        # A grouped finding over many files annotates each of them (a few hundred at most).
        files = paths_of(f)[:GITHUB_MAX_FILES] if f.items is not None and f.path is None else [f.path]
        for path in files or [None]:
            props = [f"title={_gh_prop(f'manifest {report.command}: {f.code}')}"]
            file = _finding_file(report, path)
            if file:
                props.insert(0, f"file={_gh_prop(file)}")
            lines.append(f"::{level[f.severity]} {','.join(props)}::{_gh_data(msg)}")
    return "\n".join(lines) + ("\n" if lines else "") + render_text(report)


def _md_cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("`", "'")


def render_markdown(report: Report) -> str:
    """A job summary: verdict, findings table, what was and was not checked."""
    n_err = len(report.errors)
    mark = "✅" if report.ok else "❌"
    verdict = ("verified" if report.command == "verify" else "no problems found") if report.ok else f"FAILED ({n_err} error(s))"
    if report.integrity_only:
        verdict += f" ({INTEGRITY_ONLY})"
    out = [f"### {mark} manifest {report.command} `{_md_cell(report.artifact)}`: {verdict}", ""]
    if report.manifest:
        out += [f"Manifest: `{_md_cell(report.manifest)}`", ""]
    if report.findings:
        out += ["| severity | code | file | finding |", "| --- | --- | --- | --- |"]
        for f in report.findings:
            path = f"`{_md_cell(f.path)}`" if f.path else ""
            msg = _md_cell(f.message) + (f" (fix: {_md_cell(f.hint)})" if f.hint else "")
            out.append(f"| {f.severity.value} | `{f.code}` | {path} | {msg} |")
        out.append("")
    if report.checked:
        out += ["**Checked:** " + ", ".join(report.checked), ""]
    if report.not_checked:
        out.append("**Not checked:**")
        out += [f"- {_md_cell(k)}: {_md_cell(v)}" for k, v in report.not_checked.items()]
        out.append("")
    return "\n".join(out) + "\n"


FORMATTERS: dict[Format, Callable[[Report], str]] = {
    Format.TEXT: render_text,
    Format.JSON: render_json,
    Format.GITHUB: render_github,
    Format.MARKDOWN: render_markdown,
}


def render(report: Report, fmt: Format) -> str:
    return FORMATTERS[fmt](report)

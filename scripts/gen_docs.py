#!/usr/bin/env python3
"""Regenerate the parts of the docs and schemas that come from the code registry:
``docs/codes.md`` and the finding-code enum in ``schemas/report.schema.json``.

    python scripts/gen_docs.py          # rewrite them
    python scripts/gen_docs.py --check  # exit 1 if they are stale (the test suite runs this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from manifest.findings import all_codes  # noqa: E402

GROUPS = {
    "manifest": "The manifest itself",
    "trust": "Trust: signatures and claims",
    "files": "The file set and contents",
    "weights": "Weights (safetensors, pickle, shards, memory)",
    "semantics": "Semantics: tokenizer, config, labels",
    "environment": "Environment",
    "load": "The opt-in load tier",
    "hub": "The Hugging Face cache",
    "run": "The run itself",
}


def codes_md() -> str:
    lines = [
        "# Finding codes",
        "",
        "Generated from `manifest/findings.py` by `scripts/gen_docs.py`; do not edit by hand.",
        "A code is a contract: once released its name and meaning do not change.",
        "`error` findings fail verification (exit 1); `warning` and `info` findings are shown but do not.",
        "Errors that stop a run before any check (malformed manifest, unreadable directory, bad key) exit 2",
        "with one line `error[CODE]: ...` on stderr.",
        "Every finding carries a fix (`fix:` in the text report, `hint` in JSON): the default below, or a more",
        "precise one from the check that found it. When `verify` finds only changes that may be intended",
        "(files added, removed or edited), the fix ends with the exact `manifest create` command that records them.",
        "",
    ]
    by_group: dict[str, list] = {}
    for info in all_codes().values():
        by_group.setdefault(info.group, []).append(info)
    for g, title in GROUPS.items():
        if g not in by_group:
            continue
        lines += [f"## {title}", "", "| code | severity | meaning | default fix |", "| --- | --- | --- | --- |"]
        lines += [f"| `{i.code}` | {i.severity.value} | {i.meaning} | {i.hint} |" for i in by_group[g]]
        lines.append("")
    return "\n".join(lines)


def report_schema() -> str:
    path = ROOT / "schemas" / "report.schema.json"
    schema = json.loads(path.read_text())
    schema["$defs"]["finding"]["properties"]["code"]["enum"] = sorted(all_codes())
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    targets = {ROOT / "docs" / "codes.md": codes_md(), ROOT / "schemas" / "report.schema.json": report_schema()}
    stale = [p for p, text in targets.items() if not p.exists() or p.read_text() != text]
    if "--check" in sys.argv:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)} (run python scripts/gen_docs.py)")
        return 1 if stale else 0
    for p in stale:
        p.write_text(targets[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

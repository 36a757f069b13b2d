"""Output a person can act on: one-line usage errors, a fix on every finding, root
causes first, repeats grouped, and a report that says what it skipped."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "args, says",
    [
        (["check", "DIR", "--bogus"], "No such option '--bogus'"),
        (["check"], "Missing argument 'DIR'"),
        (["check", "DIR", "--format", "xml"], "Invalid value for '--format'"),
        (["verify", "DIR", "--load", "half"], "Invalid value for '--load'"),
        (["create", "DIR", "-o"], "Option '-o' requires an argument"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["verify", "DIR", "--memory-limit", "lots"], "cannot read size 'lots'"),
    ],
    ids=["unknown-option", "missing-argument", "bad-choice", "bad-load", "option-without-value", "unknown-command", "bad-size"],
)
def test_usage_errors_are_one_line_exit_2(cli, minilm, args, says):
    r = cli(*[str(minilm) if a == "DIR" else a for a in args])
    assert r.code == 2, r
    assert r.out == ""
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error[usage]: ") and says in lines[0], r.err


def test_help_and_version_still_print(cli):
    r = cli("check", "--help")
    assert r.code == 0 and "Usage:" in r.out and "--load" in r.out
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("manifest, version ")
    r = cli()  # no arguments at all: the help text, as a usage error
    assert r.code == 2 and "Commands:" in r.err

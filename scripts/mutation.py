#!/usr/bin/env python3
"""Mutation testing of the modules that carry the core promises (runs outside CI: slow).

Runs mutmut (the ``dev`` extra) on a copy of a commit's tree (``--rev``, default HEAD), so
the work tree is never touched, with the fast in-process tests those modules need. Each module (or, for
``api``, the comparison functions only) is scored on its own:

    python scripts/mutation.py                          # every module, one worker, niced
    python scripts/mutation.py --module digest --module paths
    python scripts/mutation.py --workdir /tmp/mut --resume   # continue an interrupted run
    python scripts/mutation.py --report-only --workdir /tmp/mut

It prints (and writes to ``--out``, JSON) per module: mutants, killed, survived (with
their names), timeouts and "no tests" (a mutant no selected test reaches counts as
a survivor). ``mutmut show NAME`` in ``WORKDIR/tree`` prints a mutant's diff.
docs/testing.md records the last score and explains each survivor left.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module -> (file, the functions mutated (globs over mutmut's mangled names), the tests that kill them)
# In-process tests only count: mutmut ties a mutant to the tests that call its function in the
# pytest process (a CLI test's subprocess runs the mutant too, but is not traced). With
# tests/test_properties.py or tests/test_json_conformance.py in the selection, mutmut 3.8.1
# recorded no test for any function; they kill nothing the others do not.
FAST_TESTS = [
    "tests/test_core.py",
    "tests/test_digest.py",
    "tests/test_safetensors_reader.py",
    "tests/test_statcache.py",
    "tests/test_foundation.py",
    "tests/test_weights.py",
]
# slow, and kills nothing the others do not (a pickle scan)
DESELECT = ["tests/test_weights.py::test_pickle_weights_name_their_imports"]
MODULES: dict[str, tuple[str, list[str]]] = {
    "digest": ("manifest/digest.py", ["*"]),
    "api-compare": ("manifest/api.py", ["x__digest_mismatch_*", "x__check_file_set_*", "x__compare_section_*", "x__start_digests_*",
                                        "x__finish_digests_*", "x__verify_digests_*", "xǁ_PendingDigestsǁ*"]),
    "signing": ("manifest/signing.py", ["*"]),
    "safetensors": ("manifest/formats/safetensors.py", ["*"]),
    "inventory": ("manifest/inventory.py", ["*"]),
    "paths": ("manifest/paths.py", ["*"]),
    "statcache": ("manifest/statcache.py", ["*"]),
    "findings": ("manifest/findings.py", ["*"]),
    "report": ("manifest/report.py", ["*"]),
    "errors": ("manifest/errors.py", ["*"]),
}
KILLED = {1, 3}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {5, 33}


def _module_name(file: str) -> str:
    return file[: -len(".py")].replace("/", ".")


def copy_tree(dst: Path, rev: str) -> str:
    """The tree of commit ``rev`` (never the work tree's uncommitted edits)."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    return commit


def configure(tree: Path, files: list[str], tests: list[str], basetemp: Path | None) -> None:
    """mutmut reads ``[tool.mutmut]`` from the copy's pyproject.toml.

    ``basetemp``: one pytest temporary directory that every mutant's run empties and reuses.
    Without it each run leaves a new ``pytest-of-USER/pytest-N`` (over 1 GB with the
    checkpoint copies), which pytest keeps for three days: thousands of mutants fill a disk."""
    toml = tree / "pyproject.toml"
    text = toml.read_text()
    assert "[tool.mutmut]" not in text
    lst = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"  # noqa: E731
    pytest_args = ["-p", "no:cacheprovider", "-W", "ignore", "--hypothesis-seed=0", *(f"--deselect={t}" for t in DESELECT)]
    if basetemp is not None:
        pytest_args += ["--basetemp", str(basetemp)]
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["manifest"]\n'
        'also_copy = ["schemas", "scripts", "docs", "README.md"]\n'
        f"only_mutate = {lst(files)}\n"
        f"pytest_add_cli_args_test_selection = {lst(tests)}\n"
        f"pytest_add_cli_args = {lst(pytest_args)}\n"
        "use_git_change_detection = false\n"
        "timeout_multiplier = 10.0\n"
    )
    toml.write_text(text)


# A CLI test runs ``python -m manifest`` in a subprocess whose working directory is a
# temporary one: mutmut's trampolines there read their configuration from the tree.
SITECUSTOMIZE = """\
import os
if os.environ.get("MUTANT_UNDER_TEST") is not None:
    _cwd = os.getcwd()
    os.chdir(os.environ["MANIFEST_MUTATION_TREE"])
    try:
        from mutmut.configuration import config
        config()
    finally:
        os.chdir(_cwd)
"""


# Mutants are written by a first process, then tested by ``mutmut run`` on the written tree:
# run at once on a fresh tree, mutmut 3.8.1 here recorded no test for any function (its
# stats phase ran the tests but saw no call of a mutated function), and on the second run
# of the same tree it did.
GENERATE = """\
import os
os.environ["MUTANT_UNDER_TEST"] = "mutant_generation"
from pathlib import Path
from mutmut.__main__ import create_mutants
from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir
Path("mutants").mkdir(exist_ok=True)
copy_src_dir()
copy_also_copy_files()
create_mutants(1)
"""


def results(tree: Path, selected: dict[str, tuple[str, list[str]]]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, (file, globs) in selected.items():
        meta = tree / "mutants" / (file + ".meta")
        try:
            codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        except ValueError:  # a results file cut short (the disk filled up): run this module again
            print(f"{name}: {meta} is unreadable; run --module {name} again", file=sys.stderr)
            codes = {}
        prefix = _module_name(file) + "."
        mine = {k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, prefix + g) for g in globs)}
        killed = sorted(k for k, v in mine.items() if v in KILLED)
        timeouts = sorted(k for k, v in mine.items() if v in TIMEOUT)
        no_tests = sorted(k for k, v in mine.items() if v in NO_TESTS)
        unchecked = sorted(k for k, v in mine.items() if v is None)
        survived = sorted(k for k, v in mine.items() if k not in {*killed, *timeouts, *no_tests, *unchecked})
        tested = len(mine) - len(unchecked)
        score = (len(killed) + len(timeouts)) / tested if tested else 0.0
        out[name] = {"file": file, "mutants": len(mine), "killed": len(killed), "timeout": len(timeouts), "survived": survived,
                     "no_tests": no_tests, "not_checked": len(unchecked), "score": round(100 * score, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", action="append", choices=sorted(MODULES), help="module(s) to mutate (default: all)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/manifest-mutation"))
    ap.add_argument("--rev", default="HEAD", help="the commit to mutate (default HEAD)")
    ap.add_argument("--resume", action="store_true", help="keep the workdir's results, run only unchecked mutants")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tests", nargs="*", default=FAST_TESTS)
    ap.add_argument("--out", type=Path, help="write the per-module results as JSON")
    args = ap.parse_args(argv)
    selected = {m: MODULES[m] for m in (args.module or sorted(MODULES))}
    tree = args.workdir / "tree"
    if not (args.resume or args.report_only):
        shutil.rmtree(args.workdir, ignore_errors=True)
        tree.mkdir(parents=True)
        commit = copy_tree(tree, args.rev)
        # one worker: one reused basetemp; several: pytest's numbered ones, kept inside the work dir
        basetemp = args.workdir / "pytest-tmp" if args.workers == 1 else None
        configure(tree, sorted({f for f, _ in selected.values()}), [t for t in args.tests if (tree / t.split("::")[0]).exists()], basetemp)
        (args.workdir / "commit").write_text(commit)
    commit = (args.workdir / "commit").read_text() if (args.workdir / "commit").exists() else "?"
    t0 = time.monotonic()
    if not args.report_only:
        names = [_module_name(f) + "." + g for f, globs in selected.values() for g in globs]
        site = args.workdir / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {**os.environ, "PYTHONPATH": f"{tree / 'mutants'}{os.pathsep}{site}", "MANIFEST_MUTATION_TREE": str(tree),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TMPDIR": str(args.workdir / "tmp")}
        (args.workdir / "tmp").mkdir(exist_ok=True)
        env.pop("CI", None)
        mutmut = shutil.which("mutmut") or "mutmut"
        if not (tree / "mutants").exists():
            subprocess.run(["nice", "-n", "10", sys.executable, "-c", GENERATE], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
        cmd = ["nice", "-n", "10", mutmut, "run", "--max-children", str(args.workers), *names]
        p = subprocess.run(cmd, cwd=tree, env=env, check=False)
        if p.returncode != 0:
            print(f"mutmut exited {p.returncode}", file=sys.stderr)
    res = results(tree, selected)
    total = sum(int(r["mutants"]) - int(r["not_checked"]) for r in res.values())  # type: ignore[call-overload]
    dead = sum(int(r["killed"]) + int(r["timeout"]) for r in res.values())  # type: ignore[call-overload]
    summary = {"commit": commit, "seconds": round(time.monotonic() - t0), "modules": res,
               "total": {"mutants": total, "killed_or_timeout": dead, "score": round(100 * dead / total, 1) if total else 0.0}}
    for name, r in res.items():
        print(f"{name:12} {r['score']:5.1f}%  {r['killed']}+{r['timeout']} of {int(r['mutants']) - int(r['not_checked'])}"  # type: ignore[call-overload]
              f"  survived {len(r['survived'])}  no tests {len(r['no_tests'])}")  # type: ignore[arg-type]
        for k in [*r["survived"], *r["no_tests"]]:  # type: ignore[misc]
            print(f"    {k}")
    print(f"total        {summary['total']['score']}%  ({dead} of {total})  commit {commit}")  # type: ignore[index]
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Mutation testing of the modules that carry the core promises (runs outside CI: slow).

Runs mutmut (the ``dev`` extra) on a copy of a commit's tree (``--rev``, default HEAD), so
the work tree is never touched. Each module (or, for ``api``, the comparison functions
only) is mutated on its own copy with its own fast in-process tests, one worker, niced:

    python scripts/mutation.py                          # every module (about 40 minutes on a shared 2-core machine)
    python scripts/mutation.py --module digest --module paths
    python scripts/mutation.py --module signing --resume  # continue an interrupted run
    python scripts/mutation.py --report-only --out mutation.json

It prints (and writes to ``--out``, JSON) per module: mutants, killed, survived (with
their names), timeouts and "no tests" (a mutant no selected test reaches counts as
a survivor), the commit and the seconds it took. ``mutmut show NAME`` in
``.mutation/MODULE/tree`` prints a mutant's diff; ``rm -rf .mutation`` when done.
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

# module -> (file, the functions mutated (globs over mutmut's mangled names), the tests that kill them).
# Each module runs on its own copy with only its own tests: mutmut runs, for each mutant, the
# selected tests that called its function, so a slow test selected for one module would
# otherwise run for every mutant of the others. The tests are the fast in-process ones:
# mutmut ties a mutant to the tests that call its function in the pytest process (a CLI
# test's subprocess runs the mutant too, but is not traced). tests/test_units_core.py holds
# small synthetic cases (no checkpoint copy), tests/test_core.py the real-checkpoint ones.
UNITS = "tests/test_units_core.py"
# keys, certificate chains, discovery, the header reader and the path rules, written from their survivors
TRUST = "tests/test_units_trust.py"
# the digest engine's exact answers (what moved, chunks across blocks, a chunk alone, the remote path), the stat cache's
# file and entries, and the comparison's words (damaged ranges, tensors, unreadable files), written from their survivors
DIGEST = "tests/test_units_digest.py"
# test_core.py without the tests on a copy of the real checkpoint (seconds each, for every
# mutant of a function they call: discovery, findings and reports are called by all);
# test_units_core.py has their small-tree twins (the digest edited after its 16th character)
CORE = "tests/test_core.py"
CHECKPOINT_TESTS = ["tests/test_core.py::test_a_digest_differing_only_after_its_16th_hex_character_fails",
                    "tests/test_core.py::test_a_chunk_digest_differing_only_after_its_16th_hex_character_fails",
                    "tests/test_core.py::test_the_unedited_resigned_manifest_verifies"]
CORE_FAST = [CORE, *(f"--deselect={t}" for t in CHECKPOINT_TESTS)]
# test_statcache.py's tests on a copy of the real checkpoint or through the CLI (tests/test_units_core.py
# has the in-process ones on a small tree)
STATCACHE_CHECKPOINT_TESTS = [
    "test_cached_reverify_names_every_trusted_file", "test_no_cache_rehashes_everything_and_leaves_the_cache_alone",
    "test_a_corrupt_cache_file_is_ignored_and_replaced", "test_the_cli_says_nothing_about_a_corrupt_cache",
    "test_an_unusable_cache_directory_is_not_an_error", "test_the_cache_lives_outside_the_artifact",
    "test_a_write_through_a_shared_mapping_after_a_verify_is_caught", "test_create_fills_the_cache_for_the_first_verify",
    "test_an_mtime_change_forces_a_rehash", "test_a_size_change_is_never_trusted", "test_a_flipped_byte_with_restored_mtime_is_caught",
    "test_a_replaced_file_with_the_same_bytes_and_mtime_is_rehashed", "test_the_cache_is_keyed_by_the_manifest", "test_no_cache_in_the_api",
    "test_the_number_of_cache_files_is_bounded", "test_a_cache_file_owned_by_someone_else_is_ignored"]
MODULES: dict[str, tuple[str, list[str], list[str]]] = {
    "digest": ("manifest/digest.py", ["*"], [UNITS, DIGEST, "tests/test_digest.py"]),
    "api-compare": ("manifest/api.py", ["x__digest_mismatch_*", "x__chunk_mismatch_*", "x__in_units_*", "x_damaged_tensors_*",
                                        "x__check_file_set_*", "x__compare_section_*", "x__start_digests_*",
                                        "x__finish_digests_*", "x__verify_digests_*", "xǁ_PendingDigestsǁ*"], [UNITS, DIGEST]),
    "signing": ("manifest/signing.py", ["*"], [UNITS, TRUST, *CORE_FAST]),
    # the header reader; not ``sniff``/``_not_safetensors`` (what a refused file looks like, for its message)
    # nor ``build`` (writes headers for tests and benchmarks)
    "safetensors": ("manifest/formats/safetensors.py", ["x_read_header_*", "x_parse_header_bytes_*", "x__read_exact_*", "x__uint_*",
                                                        "x__has_surrogate_*", "x__validate_*", "x__tensor_*", "xǁHeaderErrorǁ*",
                                                        "xǁTensorInfoǁ*", "xǁHeaderǁ*"],
                    [*(f"{UNITS}::{t}" for t in ("test_header_totals_add_up_per_dtype", "test_a_malformed_entry_names_the_first_broken_field",
                                                 "test_a_tensor_entry_missing_keys_names_them_all",
                                                 "test_a_bad_dtype_or_shape_is_named_in_words")),
                     TRUST, *CORE_FAST, "tests/test_safetensors_reader.py",
                     # hypothesis searches (seconds each, for every mutant); the named corpus covers each rule
                     *(f"--deselect=tests/test_safetensors_reader.py::{t}" for t in (
                         "test_valid_headers_pass_and_round_trip", "test_mutations_of_a_small_real_file_rust_rejects_we_reject",
                         "test_mutations_of_a_real_header_give_clean_findings_or_pass", "test_arbitrary_bytes_give_a_clean_error_or_a_header"))]),
    "inventory": ("manifest/inventory.py", ["*"], [UNITS, TRUST]),
    "paths": ("manifest/paths.py", ["*"], [UNITS, *CORE_FAST]),
    # the key and the trust rule of the stat cache (what can make it answer for a changed file);
    # its file housekeeping (where it lives, writing, pruning) can only lose entries, see docs/testing.md
    "statcache": ("manifest/statcache.py", ["x_manifest_identity_*", "x_file_for_*", "x_stat_of_*", "x_kernel_window_ns_*",
                                            "x_window_override_ns_*", "x_racy_window_ns_*", "x_mount_types_*", "x_no_writeback_*",
                                            "x_trustworthy_*", "x__parse_entry_*", "xǁStatCacheǁ*", "x_read_doc_*", "x__load_*"],
                  [UNITS, DIGEST, "tests/test_statcache.py", *(f"--deselect=tests/test_statcache.py::{t}" for t in STATCACHE_CHECKPOINT_TESTS)]),
    # ``_c`` fills the code registry while the module is imported, before mutmut selects a mutant
    "findings": ("manifest/findings.py", ["xǁ*", "x_code_info_*", "x_all_codes_*", "x_examples_*", "x_group_repeats_*"], [UNITS, *CORE_FAST]),
    "report": ("manifest/report.py", ["*"], [UNITS, *CORE_FAST]),
    "errors": ("manifest/errors.py", ["*"], [UNITS, *CORE_FAST]),
}
KILLED = {1, 3}
# -9: SIGKILL, from the kernel's OOM killer or the CPU-time hard limit mutmut sets one second past the soft one
# (a mutant that made a test allocate or run without end, such as an endless ``repeat``): the tests never passed
TIMEOUT = {36, -24, 24, 152, 255, -9}
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
    # "-n 0": the suite's addopts run it on pytest-xdist workers, whose calls mutmut cannot trace (every
    # mutant would have no tests); the mutants run in mutmut's own process, one at a time
    pytest_args = ["-p", "no:cacheprovider", "-n", "0", "-W", "ignore", "--hypothesis-seed=0"]
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
        # mutmut's limit is wall clock too, (the tests' time + constant) x multiplier: on a loaded machine a
        # forked run of tests that take 0.1 s can take 15 s, and a small constant made such runs false timeouts
        "timeout_multiplier = 3.0\n"
        "timeout_constant = 20.0\n"
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


def results(tree: Path, name: str) -> dict[str, object]:
    file, globs, _ = MODULES[name]
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
    return {"file": file, "mutants": len(mine), "killed": len(killed), "timeout": len(timeouts), "survived": survived,
            "no_tests": no_tests, "not_checked": len(unchecked), "score": round(100 * score, 1)}


def run_module(name: str, work: Path, rev: str, workers: int, resume: bool) -> float:
    """Mutate one module on its own copy ``work/tree`` with its own tests; the seconds it took."""
    file, globs, tests = MODULES[name]
    tree = work / "tree"
    if not resume or not tree.exists():
        shutil.rmtree(work, ignore_errors=True)
        tree.mkdir(parents=True)
        commit = copy_tree(tree, rev)
        # one worker: one reused basetemp; several: pytest's numbered ones, kept inside the work dir
        basetemp = work / "pytest-tmp" if workers == 1 else None
        configure(tree, [file], [t for t in tests if t.startswith("-") or (tree / t.split("::")[0]).exists()], basetemp)
        (work / "commit").write_text(commit)
    t0 = time.monotonic()
    site = work / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (work / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{tree / 'mutants'}{os.pathsep}{site}", "MANIFEST_MUTATION_TREE": str(tree),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TMPDIR": str(work / "tmp")}
    env.pop("CI", None)
    mutmut = shutil.which("mutmut") or "mutmut"
    if not (tree / "mutants").exists():
        subprocess.run(["nice", "-n", "19", sys.executable, "-c", GENERATE], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    names = [_module_name(file) + "." + g for g in globs]
    p = subprocess.run(["nice", "-n", "19", mutmut, "run", "--max-children", str(workers), *names], cwd=tree, env=env, check=False)
    if p.returncode != 0:
        print(f"{name}: mutmut exited {p.returncode}", file=sys.stderr)
    seconds = time.monotonic() - t0
    (work / "seconds").write_text(f"{seconds:.0f}\n")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", action="append", choices=sorted(MODULES), help="module(s) to mutate (default: all)")
    ap.add_argument("--workdir", type=Path, default=ROOT / ".mutation", help="default: .mutation in the repository (git-ignored)")
    ap.add_argument("--rev", default="HEAD", help="the commit to mutate (default HEAD)")
    ap.add_argument("--resume", action="store_true", help="keep a module's results, run only its unchecked mutants")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write the per-module results as JSON")
    args = ap.parse_args(argv)
    res: dict[str, dict[str, object]] = {}
    for name in args.module or sorted(MODULES):
        work = args.workdir / name
        if not args.report_only:
            run_module(name, work, args.rev, args.workers, args.resume)
        res[name] = results(work / "tree", name)
        res[name]["commit"] = (work / "commit").read_text() if (work / "commit").exists() else "?"
        res[name]["seconds"] = int((work / "seconds").read_text()) if (work / "seconds").exists() else None
    total = sum(int(r["mutants"]) - int(r["not_checked"]) for r in res.values())  # type: ignore[call-overload]
    dead = sum(int(r["killed"]) + int(r["timeout"]) for r in res.values())  # type: ignore[call-overload]
    summary = {"modules": res, "total": {"mutants": total, "killed_or_timeout": dead, "score": round(100 * dead / total, 1) if total else 0.0}}
    for name, r in res.items():
        print(f"{name:12} {r['score']:5.1f}%  {r['killed']}+{r['timeout']} of {int(r['mutants']) - int(r['not_checked'])}"  # type: ignore[call-overload]
              f"  survived {len(r['survived'])}  no tests {len(r['no_tests'])}  {r['seconds']} s  commit {str(r['commit'])[:9]}")  # type: ignore[arg-type]
        for k in [*r["survived"], *r["no_tests"]]:  # type: ignore[misc]
            print(f"    {k}")
    print(f"total        {summary['total']['score']}%  ({dead} of {total})")  # type: ignore[index]
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

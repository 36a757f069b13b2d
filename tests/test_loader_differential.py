"""Issue 11: a pass means the loader gets exactly what was signed.

Each attack below is tried on a signed copy of a real checkpoint (the bundled MiniLM, and a
real fine-tuned BertForTokenClassification built from it), and two things are asserted:

(a) the real loaders see the difference: what transformers / safetensors / huggingface_hub
    load from the attacked copy differs from what they load from the signed one (a tokenizer
    fingerprint, config values, a chat template, or a digest of the state dict as loaded);
(b) ``manifest verify --key PUB --expect-model M --expect-revision R --no-cache`` does not
    exit 0 on the attacked copy.

Every load runs in ONE subprocess (tests/loader_fingerprint.py), for every attack at once:
this process never imports torch or transformers.

The sweep plants every file name that transformers 5 looks up by name or pattern in a model
folder (``LOADER_NAMES``, each with the place in the installed transformers it comes from),
as a file, as an empty directory and as a non-empty directory, at the root and nested, in a
signed model, and asserts verify fails on every one. A guard test reads the installed
transformers' source so that a version that adds a name is noticed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_hfcache import COMMIT as HUB_COMMIT
from test_hfcache import REPO as HUB_REPO
from test_hfcache import build_cache

from manifest import api
from manifest.options import Options
from manifest.signing import generate, load_public_key, write_keypair

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
TOKCLS_ID = "example/minilm-token-classification"
REVISION = "r1"
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
    reason="needs transformers and torch (test extra)",
)


# =========================================================================== the signed bases
@dataclass(frozen=True)
class Base:
    dir: Path  # the signed directory (for a Hugging Face cache: its HF_HOME)
    model_id: str
    manifest: Path | None = None  # a manifest kept outside the tree (the Hugging Face cache)
    load: str = ""  # the path a loader is given, relative to dir (a cache's snapshot)


@dataclass
class Lab:
    """Signed copies of the real checkpoints (read-only: attacks work on hard-linked clones)."""

    root: Path
    priv: Path
    pub: Path
    key: Any
    bases: dict[str, Base]

    def clone(self, base: str, dst: Path) -> Path:
        """A clone of a signed base: side files copied, weights hard-linked (never written through).
        The Hugging Face cache is cloned whole (HF_HOME), its links kept as links."""
        src = self.bases[base].dir
        if base.startswith("hub"):
            shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
            return dst
        for p in sorted(src.rglob("*")):
            rel = p.relative_to(src)
            if p.is_dir():
                (dst / rel).mkdir(parents=True, exist_ok=True)
                continue
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            if p.suffix == ".safetensors":
                os.link(p, dst / rel)
            else:
                shutil.copy2(p, dst / rel)
        return dst


def _sign(d: Path, key: Any, model_id: str) -> None:
    api.create(d, key=key, model_id=model_id, revision=REVISION, options=Options(use_cache=False))


def _copy(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", *skip))
    return dst


def _make_lab(root: Path, minilm_src: Path, tokcls_build: Path) -> Lab:
    key = generate("ecdsa-p256")  # the key type both this tool and OpenSSF model_signing accept
    write_keypair(key, root / "k.pem", root / "k.pub.pem")
    bases = {
        # the real MiniLM, as published
        "minilm": Base(_copy(minilm_src, root / "minilm"), MINILM_ID),
        # MiniLM signed without tokenizer.json (a slow-tokenizer repo: vocab.txt only)
        "minilm-notok": Base(_copy(minilm_src, root / "minilm-notok", ("tokenizer.json",)), MINILM_ID),
        # a real fine-tuned BertForTokenClassification (5 labels), saved by transformers
        "tokcls": Base(_copy(tokcls_build / "clean", root / "tokcls"), TOKCLS_ID),
    }
    for b in bases.values():
        _sign(b.dir, key, b.model_id)
    # the MiniLM as `hf download` leaves it in a Hugging Face cache (HF_HOME), signed by repo id;
    # and the same without tokenizer.json
    for name, src in (("hub", minilm_src), ("hub-notok", _copy(minilm_src, root / "src-notok", ("tokenizer.json",)))):
        cache = build_cache(src, root / name)
        bases[name] = Base(cache.home, HUB_REPO, root / f"{name}-manifest.json", str(cache.snapshot.relative_to(cache.home)))
        p = subprocess.run([sys.executable, "-m", "manifest", "create", HUB_REPO, "-o", str(root / f"{name}-manifest.json"),
                            "--key", str(root / "k.pem"), "--model-id", HUB_REPO, "--revision", HUB_COMMIT, "--no-cache", "-q"],
                           env={**os.environ, **_hub_env(cache.home)}, capture_output=True, text=True, timeout=300, check=False)
        assert p.returncode == 0, p.stderr
    # and the same MiniLM signed by the OpenSSF reference signer, for the verifier differential
    ms_sign(bases["minilm"].dir, root / "k.pem", root / "minilm.ms.sig")
    return Lab(root, root / "k.pem", root / "k.pub.pem", key, bases)


def _hub_env(home: Path) -> dict[str, str]:
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "", "HUGGINGFACE_HUB_CACHE": ""}


def _hub_attack(d: Path, lab: Lab, mutate: Callable[[Path], None], base: str = "hub", by_path: bool = False) -> Prepared:
    """An attack on a clone of a signed Hugging Face cache (``d`` is its HF_HOME), verified by
    repo id against the signed manifest; loaded by repo id, or (``by_path``) from the snapshot
    path the report names, as docs/workflows.md says to."""
    mutate(d / "hub" / ("models--" + HUB_REPO.replace("/", "--")))
    manifest = lab.bases[base].manifest
    assert manifest is not None
    args = ["verify", HUB_REPO, "-m", str(manifest), "--key", str(lab.pub), "--expect-model", HUB_REPO,
            "--expect-revision", HUB_COMMIT, "--no-cache", "--json", "-q"]
    job = {"kind": "tokenizer", "path": str(d / lab.bases[base].load)} if by_path else _hub_job(d)
    return Prepared(d, job, [args], _hub_env(d))


def _hub_job(home: Path) -> dict[str, Any]:
    return {"kind": "hub", "repo_id": HUB_REPO, "cache_dir": str(home / "hub")}


def _no_exist(repo_dir: Path, rel: str) -> None:
    """What huggingface_hub writes when the Hub answered 404 for ``rel`` at the commit."""
    marker = repo_dir / ".no_exist" / HUB_COMMIT / rel
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def ms_sign(model: Path, priv: Path, sig: Path) -> None:
    """``model_signing sign key`` (the real OpenSSF Model Signing library, in-process)."""
    import model_signing

    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=True)).sign(model, sig)


def ms_verify(model: Path, sig: Path, pub: Path) -> str | None:
    """``model_signing verify key`` in-process: None when it verifies, else its error."""
    import model_signing

    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).set_hashing_config(
            model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=True)).verify(model, sig)
    except Exception as e:  # model_signing raises ValueError and cryptography's InvalidSignature
        return f"{type(e).__name__}: {e}"
    return None


# =========================================================================== the attacks
@dataclass
class Prepared:
    """What an attack built: the directory a loader is given, the load job, the verify calls."""

    dir: Path
    job: dict[str, Any]
    verify: list[list[str]] = field(default_factory=list)  # every one must exit non-zero
    env: dict[str, str] = field(default_factory=dict)  # for the verify calls


@dataclass(frozen=True)
class Attack:
    cls: int  # the class of issue 11 it belongs to
    base: str
    kind: str  # loader job kind (tests/loader_fingerprint.py)
    fields: tuple[str, ...]  # fingerprint fields that must differ from the signed load
    build: Callable[[Path, Lab], Prepared | None]


ATTACKS: dict[str, Attack] = {}


def attack(cls: int, base: str, kind: str, *fields: str) -> Callable[[Callable[[Path, Lab], Prepared | None]], Any]:
    def deco(fn: Callable[[Path, Lab], Prepared | None]) -> Any:
        ATTACKS[fn.__name__.removeprefix("attack_")] = Attack(cls, base, kind, fields, fn)
        return fn

    return deco


def verify_args(lab: Lab, d: Path, base: str, *extra: str) -> list[str]:
    return ["verify", str(d), "--key", str(lab.pub), "--expect-model", lab.bases[base].model_id,
            "--expect-revision", REVISION, "--no-cache", "--json", "-q", *extra]


def _without_key(args: list[str]) -> list[str]:
    """The same verify with no trust anchor: it must not pass either (no-trust-anchor)."""
    i = args.index("--key")
    return args[:i] + args[i + 2:]


TOKENIZER = ("vocab", "ids")
CHAT = ("chat_template", "chat_rendered")


# -- class 1: entries that are not regular files, or that the manifest does not list, read by name
@attack(1, "minilm-notok", "tokenizer", *TOKENIZER)
def attack_tekken_json_directory_holding_a_file(d: Path, lab: Lab) -> None:
    # transformers matches the listed names against r"tekken\.json|tokenizer\.model\.*|..." and
    # then builds a 5-token vocabulary from whatever that entry is
    (d / "tekken.json").mkdir()
    (d / "tekken.json" / "x").write_text("x")


@attack(1, "minilm-notok", "tokenizer", *TOKENIZER)
def attack_backup_file_whose_name_contains_tekken_json(d: Path, lab: Lab) -> None:
    # the listing is searched with re.search over all names joined: the match "tekken.json" then
    # replaces the vocab file transformers asks for (an absent file), so vocab.txt is not read
    (d / "old.tekken.json.bak").write_text("")


@attack(1, "minilm", "tokenizer", *CHAT)
def attack_chat_template_jinja_added(d: Path, lab: Lab) -> None:
    (d / "chat_template.jinja").write_text("{{ 'pwned: ' }}{% for m in messages %}{{ m['content'] }}{% endfor %}")


@attack(1, "minilm", "tokenizer", *CHAT)
def attack_additional_chat_template_added(d: Path, lab: Lab) -> None:
    (d / "additional_chat_templates").mkdir()
    (d / "additional_chat_templates" / "default.jinja").write_text("{{ 'pwned' }}")


@attack(1, "minilm", "tokenizer", *CHAT)
def attack_chat_template_jinja_hard_link_to_a_signed_file(d: Path, lab: Lab) -> None:
    # a regular file with a signed file's bytes: still a name the manifest does not list
    os.link(d / "modules.json", d / "chat_template.jinja")


@attack(1, "minilm", "tokenizer", "model_max_length")
def attack_tokenizer_config_symlink_to_a_signed_file(d: Path, lab: Lab) -> None:
    (d / "tokenizer_config.json").unlink()
    (d / "tokenizer_config.json").symlink_to("config.json")


@attack(1, "tokcls", "tokenizer", *TOKENIZER)
def attack_tokenizer_json_symlink_out_of_the_tree(d: Path, lab: Lab) -> None:
    other = lab.root / "stale_vocab_tokenizer.json"  # 3 added tokens
    (d / "tokenizer.json").unlink()
    (d / "tokenizer.json").symlink_to(other)


@attack(1, "tokcls", "tokenizer", *TOKENIZER)
def attack_tokenizer_json_replaced_by_a_hard_link(d: Path, lab: Lab) -> None:
    (d / "tokenizer.json").unlink()
    os.link(lab.root / "stale_vocab_tokenizer.json", d / "tokenizer.json")


# -- class 4: no trust anchor, no pass
@attack(4, "tokcls", "config", "id2label")
def attack_config_changed_and_manifest_remade_unsigned(d: Path, lab: Lab) -> Prepared:
    cfg = json.loads((d / "config.json").read_text())
    cfg["id2label"] = {"0": "O", "1": "B-LOC", "2": "I-LOC", "3": "B-PER", "4": "I-PER"}  # labels swapped
    cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    api.create(d, model_id=TOKCLS_ID, revision=REVISION, options=Options(use_cache=False))
    return Prepared(d, {}, [verify_args(lab, d, "tokcls"), _without_key(verify_args(lab, d, "tokcls"))])


@attack(4, "tokcls", "model", "state_dict")
def attack_weights_changed_and_manifest_signed_by_another_key(d: Path, lab: Lab) -> Prepared:
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    w.unlink()  # the clone's weights are a hard link: write a private copy
    data[-64:] = bytes(64)  # zero the last 16 float32 of the last tensor
    w.write_bytes(bytes(data))
    _sign(d, generate("ecdsa-p256"), TOKCLS_ID)
    return Prepared(d, {}, [verify_args(lab, d, "tokcls"), _without_key(verify_args(lab, d, "tokcls"))])


@attack(1, "minilm-notok", "tokenizer", *TOKENIZER)
def attack_tekken_json_empty_directory(d: Path, lab: Lab) -> None:
    (d / "tekken.json").mkdir()


@attack(1, "minilm-notok", "tokenizer", *TOKENIZER)
def attack_tokenizer_model_empty_directory(d: Path, lab: Lab) -> None:
    (d / "tokenizer.model").mkdir()


@attack(1, "minilm-notok", "tokenizer", *TOKENIZER)
def attack_tokenizer_model_v3_empty_directory(d: Path, lab: Lab) -> None:
    (d / "tokenizer.model.v3").mkdir()  # matched by the pattern tokenizer\.model\.*


@attack(1, "minilm-notok", "tokenizer", *TOKENIZER)
def attack_tiktoken_model_empty_directory(d: Path, lab: Lab) -> None:
    (d / "tiktoken.model").mkdir()


@attack(2, "minilm", "tokenizer", *CHAT)
def attack_manifest_renamed_to_chat_template_and_symlinked(d: Path, lab: Lab) -> None:
    (d / "manifest.json").rename(d / "chat_template.jinja")
    (d / "manifest.json").symlink_to("chat_template.jinja")


@attack(2, "minilm", "tokenizer", *CHAT)
def attack_manifest_moved_into_additional_chat_templates_and_symlinked(d: Path, lab: Lab) -> None:
    (d / "additional_chat_templates").mkdir()
    (d / "manifest.json").rename(d / "additional_chat_templates" / "default.jinja")
    (d / "manifest.json").symlink_to("additional_chat_templates/default.jinja")


@attack(2, "minilm", "tokenizer", *CHAT)
def attack_oms_bundle_renamed_to_chat_template_and_symlinked(d: Path, lab: Lab) -> Prepared:
    from manifest.oms import export_oms

    export_oms(d, lab.key, d / "model.sig")
    (d / "model.sig").rename(d / "chat_template.jinja")
    (d / "model.sig").symlink_to("chat_template.jinja")
    return Prepared(d, {}, [["verify", str(d), "--oms", str(d / "model.sig"), "--key", str(lab.pub), "--no-cache", "--json", "-q"]])


@attack(3, "minilm", "model_signing", "verified")
def attack_nested_git_directory(d: Path, lab: Lab) -> None:
    # no transformers code path reads it; the OMS reference verifier (model_signing) refuses it,
    # and so must verify: the signed tree is the whole tree but for the root's .git/ and .cache/
    (d / "1_Pooling" / ".git").mkdir()
    (d / "1_Pooling" / ".git" / "evil.py").write_text("import os\n")


@attack(3, "minilm", "model_signing", "verified")
def attack_nested_cache_directory(d: Path, lab: Lab) -> None:
    (d / "1_Pooling" / ".cache").mkdir()
    (d / "1_Pooling" / ".cache" / "config.json").write_text("{}")


@attack(6, "hub", "hub", "model_max_length")
def attack_no_exist_marker_hides_a_signed_file(d: Path, lab: Lab) -> Prepared:
    return _hub_attack(d, lab, lambda c: _no_exist(c, "tokenizer_config.json"))


@attack(6, "hub", "hub_file", "file")
def attack_no_exist_marker_hides_a_nested_signed_file(d: Path, lab: Lab) -> Prepared:
    p = _hub_attack(d, lab, lambda c: _no_exist(c, "1_Pooling/config.json"))
    p.job = {**p.job, "kind": "hub_file", "filename": "1_Pooling/config.json"}
    return p


@attack(1, "hub-notok", "tokenizer", *TOKENIZER)
def attack_empty_directory_in_a_cache_snapshot(d: Path, lab: Lab) -> Prepared:
    # the Hugging Face cache target gets the same inventory rule; loaded from the snapshot path
    return _hub_attack(d, lab, lambda c: (c / "snapshots" / HUB_COMMIT / "tekken.json").mkdir(), "hub-notok", by_path=True)


# =========================================================================== running it all
@dataclass
class Results:
    lab: Lab
    prepared: dict[str, Prepared]
    loaded: dict[str, dict[str, Any]]
    signed: dict[str, dict[str, Any]]  # attack -> what the same load gives on the signed base


def _reference_job(base: Base, kind: str, job: dict[str, Any]) -> dict[str, Any]:
    if kind.startswith("hub"):  # the same load by repo id, from the signed cache
        return {**job, "cache_dir": str(base.dir / "hub")}
    return {"kind": kind, "path": str(base.dir / base.load)}


def _model_signing(lab: Lab, d: Path) -> dict[str, Any]:
    err = ms_verify(d, lab.root / "minilm.ms.sig", lab.pub)
    return {"verified": err is None, "error_text": err}


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path, tokcls_build: Path) -> Lab:
    root = tmp_path_factory.mktemp("differential")
    shutil.copyfile(tokcls_build / "stale_vocab" / "tokenizer.json", root / "stale_vocab_tokenizer.json")
    return _make_lab(root, minilm_src, tokcls_build)


@pytest.fixture(scope="session")
def results(lab: Lab) -> Results:
    root = lab.root
    prepared: dict[str, Prepared] = {}
    loaded: dict[str, dict[str, Any]] = {}
    jobs: dict[str, dict[str, Any]] = {}
    refs: dict[str, str] = {name: f"signed:{name}" for name in ATTACKS}  # attack -> its signed load
    for name, a in ATTACKS.items():
        d = lab.clone(a.base, root / "attacks" / name)
        p = a.build(d, lab) or Prepared(d, {}, [])
        p.job = p.job or {"kind": a.kind, "path": str(p.dir)}
        p.verify = p.verify or [verify_args(lab, p.dir, a.base)]
        prepared[name] = p
        if a.kind == "model_signing":  # the OpenSSF reference verifier, in this process
            loaded[name] = _model_signing(lab, p.dir)
            loaded[f"signed:{name}"] = _model_signing(lab, lab.bases[a.base].dir)
            continue
        jobs[name] = p.job
        ref = _reference_job(lab.bases[a.base], a.kind, p.job)
        jobs[f"signed:{json.dumps(ref, sort_keys=True)}"] = ref  # each distinct reference load runs once
        refs[name] = f"signed:{json.dumps(ref, sort_keys=True)}"
    proc = subprocess.run([sys.executable, str(HERE / "loader_fingerprint.py")], input=json.dumps(jobs), capture_output=True,
                          text=True, timeout=600, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {**json.loads(proc.stdout), **loaded}
    return Results(lab, prepared, out, {name: out[ref] for name, ref in refs.items()})


def test_the_loader_process_imports_nothing_here() -> None:
    assert "torch" not in sys.modules and "transformers" not in sys.modules


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_changes_what_is_loaded_and_verify_fails(name: str, results: Results, cli: Callable[..., Any]) -> None:
    a, p = ATTACKS[name], results.prepared[name]
    signed, got = results.signed[name], results.loaded[name]
    # (a) the real loader reads something else than what was signed
    assert "error" not in signed and "error" not in got, (signed, got)
    for f in a.fields:
        assert got[f] != signed[f], f"{name}: {f} is the same as signed ({got[f]!r}): the attack does not reach the loader"
    # (b) verify, with a key, refuses it
    for args in p.verify:
        r = cli(*args, env=p.env)
        assert "Traceback" not in r.err, r.err
        assert r.code != 0, f"{name}: `manifest {' '.join(args)}` exited 0 while the loader reads {got}\n{r.out[-1500:]}"
        if r.out.strip().startswith("{"):
            assert json.loads(r.out)["verdict"] != "pass"


def test_an_integrity_only_pass_says_that_nobody_vouched(results: Results, cli: Callable[..., Any]) -> None:
    """The attacker's re-made manifest agrees with the attacked files: --no-signature passes it,
    and its verdict says authenticity was not checked (a gate must not read that as trust)."""
    d = results.prepared["config_changed_and_manifest_remade_unsigned"].dir
    r = cli("verify", str(d), "--no-signature", "--no-cache", "-q")
    assert r.code == 0, r.out + r.err
    assert "integrity only, authenticity not checked" in r.out

# =========================================================================== the name sweep
# Every name transformers 5 (5.24) looks up by name or by pattern in a model folder. Each is
# planted in the signed MiniLM, as a file, as an empty directory and as a directory holding a
# file; at the root, nested in 1_Pooling/, and under a nested 1_Pooling/.git/.
LOADER_NAMES: dict[str, str] = {
    # transformers/utils/__init__.py (modeling_utils, configuration_utils, processors, modelcard)
    "pytorch_model.bin": "utils/__init__.py WEIGHTS_NAME",
    "pytorch_model.bin.index.json": "utils/__init__.py WEIGHTS_INDEX_NAME",
    "model.safetensors": "utils/__init__.py SAFE_WEIGHTS_NAME",
    "model.safetensors.index.json": "utils/__init__.py SAFE_WEIGHTS_INDEX_NAME",
    "config.json": "utils/__init__.py CONFIG_NAME",
    "preprocessor_config.json": "utils/__init__.py FEATURE_EXTRACTOR_NAME, IMAGE_PROCESSOR_NAME",
    "video_preprocessor_config.json": "utils/__init__.py VIDEO_PROCESSOR_NAME",
    "audio_tokenizer_config.json": "utils/__init__.py AUDIO_TOKENIZER_NAME",
    "processor_config.json": "utils/__init__.py PROCESSOR_NAME",
    "generation_config.json": "utils/__init__.py GENERATION_CONFIG_NAME",
    "modelcard.json": "utils/__init__.py MODEL_CARD_NAME",
    # transformers/utils/hub.py (tokenization_utils_base, processing_utils, integrations/mistral)
    "chat_template.json": "utils/hub.py LEGACY_PROCESSOR_CHAT_TEMPLATE_FILE",
    "chat_template.jinja": "utils/hub.py CHAT_TEMPLATE_FILE",
    "additional_chat_templates": "utils/hub.py CHAT_TEMPLATE_DIR (globbed for *.jinja)",
    # transformers/utils/peft_utils.py (find_adapter_config_file, called by from_pretrained)
    "adapter_config.json": "utils/peft_utils.py ADAPTER_CONFIG_NAME",
    "adapter_model.bin": "utils/peft_utils.py ADAPTER_WEIGHTS_NAME",
    "adapter_model.safetensors": "utils/peft_utils.py ADAPTER_SAFE_WEIGHTS_NAME",
    # transformers/tokenization_utils_base.py, tokenization_utils_tokenizers.py, tokenization_python.py
    "special_tokens_map.json": "tokenization_utils_base.py SPECIAL_TOKENS_MAP_FILE",
    "added_tokens.json": "tokenization_utils_base.py ADDED_TOKENS_FILE",
    "tokenizer_config.json": "tokenization_utils_base.py TOKENIZER_CONFIG_FILE",
    "tokenizer.json": "tokenization_utils_base.py FULL_TOKENIZER_FILE",
    "tokenizer.model": "tokenization_utils_tokenizers.py TIKTOKEN_VOCAB_FILE; tokenization_utils_sentencepiece.py",
    "tiktoken.model": "tokenization_utils_tokenizers.py TIKTOKEN_LEGACY_NAME; the other_pattern below",
    # tokenization_utils_base.py: when tokenizer.json is absent, the folder listing is searched with
    # other_pattern = r"tekken\.json|tokenizer\.model\.*|tiktoken\.model" (a substring search)
    "tekken.json": "tokenization_utils_base.py other_pattern; convert_slow_tokenizer.py (Mistral tekken)",
    "tokenizer.model.v3": "tokenization_utils_base.py other_pattern tokenizer\\.model\\.*",
    "tokenizer.model.v7m1": "tokenization_utils_base.py other_pattern tokenizer\\.model\\.*",
    "my.tekken.json.bak": "tokenization_utils_base.py other_pattern (re.search: a substring of any name)",
    # tokenization_utils_base.py _re_tokenizer_file / configuration_utils.py get_configuration_file:
    # versioned files, picked from the lists tokenizer_config.json / config.json name
    "tokenizer.5.0.0.json": "tokenization_utils_base.py _re_tokenizer_file",
    "config.5.0.0.json": "configuration_utils.py get_configuration_file",
    # generation/utils.py load_custom_generate
    "custom_generate": "generation/utils.py custom_generate/generate.py, custom_generate/requirements.txt",
}
# every vocab file name of every tokenizer class: models/*/tokenization_*.py VOCAB_FILES_NAMES
VOCAB_FILES = ("bpe.codes", "byte_maps.json", "dict.txt", "emoji.json", "entity_vocab.json", "merges.txt", "normalizer.json",
               "prophetnet.tokenizer", "sentencepiece.bpe.model", "sentencepiece.model", "source.spm", "spiece.model",
               "spm.model", "spm_char.model", "target.spm", "target_vocab.json", "vocab-src.json", "vocab-tgt.json",
               "vocab.json", "vocab.txt", "word_pronunciation.json", "word_shape.json")
SWEEP = sorted({*LOADER_NAMES, *VOCAB_FILES})
MODES = ("file", "empty-dir", "dir")
OTHER_FORMS = ("symlink", "hardlink", "fifo")  # each to, or with the bytes of, a signed file
PLACES = {"root": "", "nested": "1_Pooling/"}


def _plant(d: Path, rel: str, mode: str) -> None:
    """Plant ``rel`` in the signed tree ``d`` (replacing a signed file of that name)."""
    p = d / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_file():  # a signed name: replace it
        p.unlink()
    if mode == "file":
        p.write_text('{"pwned": true}\n')
    elif mode == "symlink":
        p.symlink_to(os.path.relpath(d / _other(rel), p.parent))
    elif mode == "hardlink":
        os.link(d / _other(rel), p)
    elif mode == "fifo":
        os.mkfifo(p)
    else:
        p.mkdir()
        if mode == "dir":
            (p / "default.jinja").write_text("{{ 'pwned' }}")


def _other(rel: str) -> str:
    """A signed file other than ``rel`` (the target of a planted link)."""
    return "config.json" if rel == "tokenizer_config.json" else "tokenizer_config.json"


def _verify_in_process(lab: Lab, d: Path, fail_fast: bool = True) -> Any:
    """What ``manifest verify D --key PUB --expect-model --expect-revision --no-cache --fail-fast``
    runs. The CLI is exercised by the attack tests; here hundreds of plants must stay fast, and
    ``--fail-fast`` changes only when a failing verify stops, never whether it fails."""
    return api.verify(d, options=Options(keys=[load_public_key(lab.pub)], expect_model=MINILM_ID, expect_revision=REVISION,
                                         use_cache=False, fail_fast=fail_fast))


def _related(finding_path: str | None, rel: str) -> bool:
    p = finding_path or ""
    return p == rel or p.startswith(rel + "/") or rel.startswith(p + "/")


def _sweep(lab: Lab, tmp: Path, prefix: str, mode: str) -> dict[str, str]:
    """Plant each name, verify; returns the names verify did not refuse (with why)."""
    passed: dict[str, str] = {}
    for i, name in enumerate(SWEEP):
        d = lab.clone("minilm", tmp / f"{i}")
        rel = prefix + name
        _plant(d, rel, mode)
        rep = _verify_in_process(lab, d)
        if rep.exit_status == 0:
            passed[rel] = "exit 0"
        elif not any(_related(f.path, rel) for f in rep.findings):
            passed[rel] = f"failed, but no finding names it: {[(f.code, f.path) for f in rep.findings]}"
        shutil.rmtree(d)
    return passed


def test_the_sweep_base_verifies(lab: Lab, tmp_path: Path) -> None:
    rep = _verify_in_process(lab, lab.clone("minilm", tmp_path / "clean"), fail_fast=False)
    assert rep.exit_status == 0, [(f.code, f.path) for f in rep.findings]


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("mode", ["file", "dir"])
def test_every_loader_name_planted_fails_verify(lab: Lab, tmp_path: Path, place: str, mode: str) -> None:
    assert _sweep(lab, tmp_path, PLACES[place], mode) == {}


@pytest.mark.parametrize("mode", OTHER_FORMS)
def test_every_loader_name_as_a_link_or_fifo_fails_verify(lab: Lab, tmp_path: Path, mode: str) -> None:
    assert _sweep(lab, tmp_path, "", mode) == {}


# -- the guard: the installed transformers still looks up exactly these names
TRANSFORMERS = Path(importlib.util.find_spec("transformers").origin).parent if importlib.util.find_spec("transformers") else Path()
CONSTANT_FILES = ("utils/__init__.py", "utils/hub.py", "utils/peft_utils.py", "tokenization_utils_base.py",
                  "tokenization_utils_tokenizers.py", "tokenization_utils_sentencepiece.py", "tokenization_python.py")
NOT_FOLDER_NAMES = {"transformers_modules"}  # utils/hub.py TRANSFORMERS_DYNAMIC_MODULE_NAME: the modules cache's own folder


def test_the_swept_names_are_the_installed_transformers_names() -> None:
    """Read (never import) the installed transformers: every file-name constant of the modules
    that resolve model-folder files, and every tokenizer class's VOCAB_FILES_NAMES, must be in
    the sweep, and the folder-listing pattern must be the one the sweep covers. A transformers
    that adds a name fails here until the name is added to LOADER_NAMES / VOCAB_FILES."""
    constants: dict[str, str] = {}
    for rel in CONSTANT_FILES:
        text = (TRANSFORMERS / rel).read_text()
        for const, value in re.findall(r'^([A-Z][A-Z0-9_]*(?:NAME|FILE|DIR))\s*=\s*"([^"]+)"', text, re.M):
            constants[f"{rel} {const}"] = value
    assert len(constants) >= 25, constants
    missing = {k: v for k, v in constants.items() if v not in SWEEP and v not in NOT_FOLDER_NAMES}
    assert not missing, f"file names transformers looks up that the sweep does not plant: {missing}"
    vocab: set[str] = set()
    for p in TRANSFORMERS.glob("models/*/tokenization_*.py"):
        for body in re.findall(r"VOCAB_FILES_NAMES\s*=\s*\{(.*?)\}", p.read_text(), re.S):
            vocab.update(re.findall(r':\s*"([^"]+)"', body))
    assert len(vocab) >= 15 and "vocab.txt" in vocab
    assert vocab <= set(SWEEP), f"vocab file names not swept: {sorted(vocab - set(SWEEP))}"
    base = (TRANSFORMERS / "tokenization_utils_base.py").read_text()
    assert 'other_pattern = r"tekken\\.json|tokenizer\\.model\\.*|tiktoken\\.model"' in base
    assert 'template_dir.glob("*.jinja")' in base  # additional_chat_templates/ is listed
    assert '_re_tokenizer_file = re.compile(r"tokenizer\\.(.*)\\.json")' in base
    gen = (TRANSFORMERS / "generation" / "utils.py").read_text()
    assert 'custom_generate_file = "custom_generate/generate.py"' in gen
    cfg = (TRANSFORMERS / "configuration_utils.py").read_text()
    assert 'file_name.startswith("config.") and file_name.endswith(".json")' in cfg


@pytest.mark.parametrize("mode", ["file", "dir"])
@pytest.mark.parametrize("ignored", [".git", ".cache"])
def test_every_loader_name_planted_under_a_nested_git_or_cache_fails_verify(lab: Lab, tmp_path: Path, ignored: str,
                                                                            mode: str) -> None:
    """Only the root's .git/ and .cache/ are ignored: a nested one is part of the tree."""
    assert _sweep(lab, tmp_path, f"1_Pooling/{ignored}/", mode) == {}


@pytest.mark.parametrize("place", [*PLACES.values(), "1_Pooling/.git/", "1_Pooling/.cache/"])
def test_every_loader_name_planted_as_an_empty_directory_fails_verify(lab: Lab, tmp_path: Path, place: str) -> None:
    assert _sweep(lab, tmp_path, place, "empty-dir") == {}


def _load(jobs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(HERE / "loader_fingerprint.py")], input=json.dumps(jobs), capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_write_through_a_dirty_shared_mapping_after_a_cached_verify(results: Results, cli: Callable[..., Any], tmp_path: Path) -> None:
    """Class 5. A page of a MAP_SHARED mapping, once dirty, takes further writes without moving
    mtime or ctime until writeback. Dirty a page (same byte), let the racy window pass, verify
    (fills the stat cache), write a different byte through the same page: the cached verify
    must not pass, while safetensors reads the new byte."""
    import mmap

    lab = results.lab
    d = lab.clone("tokcls", tmp_path / "tokcls")
    w = d / "model.safetensors"
    data = w.read_bytes()
    w.unlink()  # a private copy: the clone's weights are a hard link
    w.write_bytes(data)
    del data
    args = verify_args(lab, d, "tokcls")
    args.remove("--no-cache")  # the gate trusts its stat cache
    off = (w.stat().st_size - 3 * mmap.PAGESIZE) // mmap.PAGESIZE * mmap.PAGESIZE  # inside the last tensors' data
    with open(w, "r+b") as f, mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED) as m:
        m[off] = m[off]  # 1. dirty the page, bytes unchanged
        time.sleep(2.5)  # 2. past the cache's racy window
        r = cli(*args)  # 3. verify: passes, and fills the cache
        assert r.code == 0, r.out + r.err
        m[off] = (m[off] + 1) % 256  # 4. through the same, still dirty, page
        st = w.stat()
        loaded = _load({"signed": {"kind": "safetensors", "path": str(lab.bases["tokcls"].dir / "model.safetensors")},
                        "attacked": {"kind": "safetensors", "path": str(w)}})
        assert loaded["attacked"]["state_dict"] != loaded["signed"]["state_dict"]  # (a)
        r = cli(*args)  # 5. the cached verify
        assert r.code != 0, f"the cached verify passed a changed file (stat unchanged: {w.stat().st_mtime_ns == st.st_mtime_ns})"

"""The `config` section: config facts, remote code, and cross-consistency.

``record`` stores model_type, architectures, label maps, sizes, dtype, the writing
transformers version, tie_word_embeddings and what custom code the checkpoint asks
for. ``diagnose`` (check and verify, no manifest) runs :mod:`manifest.consistency`
over config, tokenizer and weights headers, and reports custom code (``remote-code``).
``compare`` names what changed against the manifest (``config-mismatch``,
``label-map-mismatch``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..consistency import cross_check, input_embedding
from ..errors import InputError
from ..findings import Finding, Severity
from ..formats.config import CONFIG, ConfigError, ConfigFacts, read_config, remote_code, signable
from ..formats.tokenizer import Tokenizer
from ..inventory import Artifact
from ..options import Options
from ..report import Report
from .tokenizer import live_tokenizer

RESTORE = "restore config.json from the original checkpoint, or create the manifest again if the change is intended"
FACT_NAMES = ("model_type", "architectures", "vocab_size", "hidden_size", "dtype", "transformers_version", "tie_word_embeddings")


def tensors_of(art: Artifact) -> dict[str, Any]:
    """Tensor name -> info (with ``.shape``) from the safetensors headers (never the data)."""
    from .weights import tensor_table

    return tensor_table(art)


def live_config(art: Artifact) -> ConfigFacts | ConfigError | None:
    try:
        return read_config(art)
    except ConfigError as e:
        return e
    except InputError as e:
        return ConfigError(str(e))
    except OSError as e:
        return ConfigError(f"cannot read config.json: {e.strerror}")


#: File names from_pretrained loads weights from (transformers' own names, not adapters' or diffusers').
_HF_WEIGHTS = re.compile(r"(?:model(?:-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|"
                         r"pytorch_model(?:-\d+-of-\d+)?\.bin|pytorch_model\.bin\.index\.json|tf_model\.h5|flax_model\.msgpack)")
#: Tokenizers that need no vocabulary file (bytes or code points are the ids).
_NO_VOCAB = ("ByT5Tokenizer", "CanineTokenizer", "PerceiverTokenizer")
_VOCAB_FILES = "tokenizer.json, vocab.txt, vocab.json + merges.txt, or a sentencepiece *.model"


def missing_side_files(art: Artifact, cfg: ConfigFacts | None, tok: Any, tensors: dict[str, Any]) -> list[Finding]:
    """Files from_pretrained needs beside what is there: config.json beside weights
    (error: it raises), a tokenizer_config.json's vocabulary (error: transformers 5 builds
    an empty tokenizer from it silently), and any tokenizer beside a model that reads token
    ids (warning: a weights-only directory is a legitimate way to ship, but loading a
    tokenizer from it gives an empty one)."""
    out: list[Finding] = []
    dirs = sorted({p.rpartition("/")[0] for p in art.files if _HF_WEIGHTS.fullmatch(p.rpartition("/")[2])})
    for d in dirs:
        cfg_path = f"{d}/{CONFIG}" if d else CONFIG
        if cfg_path not in art.files:
            where = f" in {d}/" if d else ""
            weights = sorted(p for p in art.files if p.rpartition("/")[0] == d and _HF_WEIGHTS.fullmatch(p.rpartition("/")[2]))
            out.append(Finding.of("side-file-missing", f"weights ({', '.join(weights[:3])}) but no config.json{where}: "
                                                       "from_pretrained cannot build the model and raises",
                                  path=cfg_path, expected=CONFIG,
                                  hint="copy config.json from the checkpoint these weights were saved with "
                                       "(model.config.save_pretrained(DIR) writes it)"))
    if tok is not None:
        return out  # a tokenizer is there (a broken one is the tokenizer section's finding)
    if "tokenizer_config.json" in art.files:
        try:
            tc = art.read_json("tokenizer_config.json")
        except Exception:  # unreadable: nothing more to say about it here
            tc = None
        cls = tc.get("tokenizer_class") if isinstance(tc, dict) else None
        if isinstance(tc, dict) and cls not in _NO_VOCAB and not tc.get("auto_map"):
            out.append(Finding.of("side-file-missing",
                                  f"tokenizer_config.json{f' ({cls})' if isinstance(cls, str) else ''} but no vocabulary ({_VOCAB_FILES}): "
                                  "transformers builds a tokenizer of only its special tokens, and every word becomes the unknown token",
                                  path="tokenizer_config.json", expected="tokenizer.json",
                                  hint="save the tokenizer again beside the model (tokenizer.save_pretrained(DIR)) "
                                       "or copy tokenizer.json from the checkpoint it came from"))
        return out
    emb = input_embedding(tensors)
    reads_ids = emb is not None or (not tensors and cfg is not None and cfg.vocab_size is not None)
    if cfg is not None and reads_ids:
        what = f"the embedding matrix {emb}" if emb else f"vocab_size {cfg.vocab_size}"
        out.append(Finding.of("side-file-missing",
                              f"no tokenizer, but the model reads token ids ({what}): a tokenizer loaded from this directory "
                              "is empty or fails; the right one must come from elsewhere",
                              path="tokenizer.json", severity=Severity.WARNING,
                              hint="save the tokenizer beside the model (tokenizer.save_pretrained(DIR)), "
                                   "or load it from the base model it was trained with"))
    return out


def _remote(art: Artifact) -> dict[str, Any]:
    return art.memo("remote-code", lambda: remote_code(art))


class ConfigSection:
    name = "config"

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        cfg = live_config(art)
        if cfg is None:
            return None
        if isinstance(cfg, ConfigError):
            raise InputError(f"{cfg}: fix it before creating a manifest", code="side-file-invalid", path=CONFIG)
        facts = cfg.facts()
        rc = _remote(art)
        if rc.get("python_files"):
            facts["python_files"] = rc["python_files"]
        facts["remote_code"] = bool(rc)
        return signable(facts, CONFIG)

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        out: list[Finding] = []
        cfg = live_config(art)
        if isinstance(cfg, ConfigError):
            out.append(Finding.of("side-file-invalid", str(cfg), path=CONFIG,
                                  hint="restore config.json from the original checkpoint (from_pretrained cannot read it)"))
            cfg = None
        elif cfg is None:
            report.mark_not_checked("config", "no config.json")
        else:
            report.mark_checked("config")
        tok = live_tokenizer(art)
        tok_ok: Tokenizer | None = tok if isinstance(tok, Tokenizer) else None
        tensors = tensors_of(art)
        out.extend(missing_side_files(art, cfg, tok, tensors))
        if cfg is not None or tok_ok is not None:
            out.extend(cross_check(cfg, tok_ok, tensors))
            report.mark_checked("consistency")
            if not tensors:
                report.mark_not_checked("consistency: weights", "no readable safetensors headers: embedding and head shapes not compared")
        rc = _remote(art)
        if rc:
            parts = []
            if "auto_map" in rc or "tokenizer_auto_map" in rc:
                parts.append("auto_map")
            if rc.get("python_files"):
                files = rc["python_files"]
                parts.append(f"{len(files)} Python file(s): {', '.join(files[:5])}{' ...' if len(files) > 5 else ''}")
            allowed = " (allowed by --trust-remote-code)" if opts.trust_remote_code else ""
            out.append(Finding.of("remote-code", f"the checkpoint asks for custom code ({'; '.join(parts)}){allowed}",
                                  path=CONFIG if "auto_map" in rc else rc.get("python_files", [None])[0],
                                  hint="read the code before loading; it runs only with trust_remote_code=True (--trust-remote-code)"))
        return out

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        if not isinstance(recorded, dict):
            report.mark_not_checked("config (manifest)", "the manifest's config section is malformed")
            return []
        cfg = live_config(art)
        if cfg is None:
            return [Finding.of("config-mismatch", "the manifest records config facts, but the directory has no config.json", path=CONFIG,
                               hint=RESTORE)]
        if isinstance(cfg, ConfigError):
            report.mark_not_checked("config (manifest)", "config.json cannot be read")
            return []
        live = cfg.facts()
        out: list[Finding] = []
        for k in FACT_NAMES:
            if k in recorded and recorded.get(k) != live.get(k):
                msg = f"{k} is {_show(live.get(k))}, the manifest says {_show(recorded.get(k))}"
                out.append(Finding.of("config-mismatch", msg, path=CONFIG, expected=recorded.get(k), actual=live.get(k), hint=RESTORE))
        out.extend(_compare_labels(recorded, live))
        if recorded.get("remote_code") is False and _remote(art):
            msg = "the checkpoint now asks for custom code (auto_map or *.py files); the manifest recorded none"
            out.append(Finding.of("config-mismatch", msg, path=CONFIG, hint="remove the added code and auto_map, or " + RESTORE))
        report.mark_checked("config facts")
        return out


def _show(v: Any) -> str:
    return "(unset)" if v is None else repr(v)


def _compare_labels(recorded: dict[str, Any], live: dict[str, Any]) -> list[Finding]:
    r, lv = recorded.get("id2label"), live.get("id2label")
    hint = "restore config.json's id2label/label2id: the classifier head's outputs keep their trained meaning only with the recorded labels"
    out: list[Finding] = []
    if r != lv:
        if r is None or lv is None:
            msg = "id2label is gone (the manifest has one)" if lv is None else "id2label is new (the manifest has none)"
            out.append(Finding.of("label-map-mismatch", msg, path=CONFIG, expected=r, actual=lv, hint=hint))
        else:
            changes = []
            for k in sorted(set(r) | set(lv), key=lambda x: (len(x), x)):
                a, b = r.get(k), lv.get(k)
                if a == b:
                    continue
                if a is None:
                    changes.append(f"label {k} {b!r} added")
                elif b is None:
                    changes.append(f"label {k} {a!r} removed")
                else:
                    changes.append(f"label {k} renamed from {a!r} to {b!r}")
            more = f" (and {len(changes) - 4} more)" if len(changes) > 4 else ""
            out.append(Finding.of("label-map-mismatch", f"id2label changed: {'; '.join(changes[:4])}{more}", path=CONFIG,
                                  expected=r, actual=lv, hint=hint))
    elif recorded.get("label2id") != live.get("label2id"):
        out.append(Finding.of("label-map-mismatch", "label2id changed against the manifest", path=CONFIG,
                              expected=recorded.get("label2id"), actual=live.get("label2id"), hint=hint))
    return out

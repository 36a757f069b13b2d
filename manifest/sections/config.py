"""The `config` section: config facts, remote code, and cross-consistency.

``record`` stores model_type, architectures, label maps, sizes, dtype, the writing
transformers version, tie_word_embeddings and what custom code the checkpoint asks
for. ``diagnose`` (check and verify, no manifest) runs :mod:`manifest.consistency`
over config, tokenizer and weights headers, and reports custom code (``remote-code``).
``compare`` names what changed against the manifest (``config-mismatch``,
``label-map-mismatch``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..consistency import cross_check
from ..errors import InputError
from ..findings import Finding
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

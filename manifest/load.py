"""The opt-in load tier: does the checkpoint really load?

- ``structural``: build the class ``config.architectures`` names on torch's *meta*
  device (no memory, no weight read) and compare its expected state_dict keys and
  shapes with the safetensors headers: missing, unexpected and mismatched tensors,
  tied aliases and buffers excepted (``load-mismatch``).
- ``full``: the real ``from_pretrained`` for model and tokenizer, one sentence through
  the model, the time taken and the peak memory (``load-failed`` when anything
  raises or the output is not finite).

Both run in a child Python process (``python -m manifest.load``): torch and
transformers are never imported into the caller, a crash or an out-of-memory kill in
the loader cannot take the verifier down, and the child's peak RSS is the load's
peak memory. The child runs offline (``HF_HUB_OFFLINE``), from an empty working
directory, and passes ``trust_remote_code`` only when ``--trust-remote-code`` was given.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from .findings import Finding, Severity
from .inventory import Artifact
from .options import Options
from .report import Report

MARK = "MANIFEST-LOAD-RESULT "
SENTENCE = "The quick brown fox jumps over the lazy dog."
TIMEOUT = float(os.environ.get("MANIFEST_LOAD_TIMEOUT", "1800"))
TRUST_HINT = "read the checkpoint's Python files, then pass --trust-remote-code to allow them to run"


# --------------------------------------------------------------------------- parent side
def run_load(art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
    """Run the requested tier in a child process and turn its answer into findings."""
    mode = opts.load or "structural"
    check = f"load:{mode}"
    try:
        from .sections.weights import tensor_table

        tensors = {n: list(t.shape) for n, t in tensor_table(art).items()}
    except Exception:  # the weights section reports unreadable headers itself
        tensors = {}
    has_weights = any(p.endswith((".safetensors", ".bin", ".pt", ".pth", ".ckpt")) for p in art.files)
    if "config.json" not in art.files or not has_weights:
        report.mark_not_checked(check, "no config.json or no weights: nothing to load")
        return []
    if mode == "structural" and not tensors:
        report.mark_not_checked(check, "no readable safetensors headers to compare the state_dict with (pickle weights are never read)")
        return []
    refused = _refuse_custom(art, opts)
    if refused is not None:
        report.mark_checked(check)
        return [Finding.of("load-failed", f"{mode} load not run: {refused}", path="config.json", hint=TRUST_HINT)]
    request = {"root": os.path.abspath(art.root), "mode": mode, "trust_remote_code": bool(opts.trust_remote_code), "tensors": tensors}
    t0 = time.perf_counter()
    result = _run_child(request)
    report.stats[f"{check}_wall_seconds"] = round(time.perf_counter() - t0, 3)
    return list(_findings(result, mode, report, check, _layer_key(art)))


def _run_child(request: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"})
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="manifest-load-") as cwd:
        try:
            p = subprocess.run([sys.executable, "-m", "manifest.load"], input=json.dumps(request), capture_output=True, text=True,
                               cwd=cwd, env=env, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "stage": "timeout", "error": f"the load did not finish within {TIMEOUT:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = " ".join((p.stderr or "").strip().splitlines()[-3:])[-400:]
    how = f"killed by signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
    return {"ok": False, "stage": "process", "error": f"the loader process died ({how}) without an answer: {tail}"}


def _names(xs: list[str], n: int = 6) -> str:
    return ", ".join(xs[:n]) + (f" and {len(xs) - n} more" if len(xs) > n else "")


_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def _layer_key(art: Artifact) -> tuple[str, int] | None:
    """(key, value) of the config's layer count, for hints that name it."""
    from .formats.config import ConfigError, read_config

    try:
        cfg = read_config(art)
    except (ConfigError, OSError, ValueError):
        return None
    if cfg is None:
        return None
    for k in _LAYER_KEYS:
        v = cfg.raw.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return k, v
    return None


def _layers_of(names: list[str]) -> list[int] | None:
    """The layer indices of ``names`` when every one is a layer's tensor, else None."""
    idx = [_LAYER.search(n) for n in names]
    if not names or not all(idx):
        return None
    return sorted({int(m.group(1)) for m in idx if m})


def _layer_hint(layer_key: tuple[str, int] | None, missing: list[str], unexpected: list[str]) -> tuple[str, str] | None:
    """(what happened, fix) when the only difference is whole layers beyond the config's count."""
    if layer_key is None:
        return None
    key, want = layer_key
    if missing and not unexpected:
        idx = _layers_of(missing)
        if idx and idx == list(range(idx[0], want)):
            have = min(idx)
            return (f"config.json {key} is {want}, but the weights hold {have} layers: layers {have}-{want - 1} would be random",
                    f"set {key} to {have} in config.json (the layer count the weights were trained with)")
    if unexpected and not missing:
        idx = _layers_of(unexpected)
        if idx and idx == list(range(want, idx[-1] + 1)):
            have = idx[-1] + 1
            return (f"config.json {key} is {want}, but the weights hold {have} layers: layers {want}-{have - 1} would be silently dropped",
                    f"set {key} to {have} in config.json (the layer count the weights were trained with)")
    return None


def _findings(res: dict[str, Any], mode: str, report: Report, check: str,
              layer_key: tuple[str, int] | None = None) -> Iterable[Finding]:
    if res.get("facts"):
        report.facts[check] = res["facts"]
    for k, v in (res.get("stats") or {}).items():
        report.stats[f"{check}_{k}"] = v
    missing, unexpected, mismatched = res.get("missing", []), res.get("unexpected", []), res.get("mismatched", [])
    arch = (res.get("facts") or {}).get("class", "the model")
    layers = _layer_hint(layer_key, missing, unexpected)
    if layers is not None:
        what, fix = layers
        names = missing or unexpected
        yield Finding.of("load-mismatch", f"{what} ({len(names)} tensor(s): {_names(names, 3)})", path="config.json",
                         actual=names[:50], hint=fix)
        missing, unexpected = [], []
    if missing:
        yield Finding.of("load-mismatch", f"{len(missing)} tensor(s) {arch} expects are not in the weights: {_names(missing)}; "
                         "from_pretrained would initialize them at random", path="config.json", actual=missing[:50],
                         hint="save the trained model again with save_pretrained, "
                              "or set config.architectures to the class these weights belong to")
    if mismatched:
        shown = [f"{m['name']} {m['expected']} vs {m['actual']} in the weights" for m in mismatched]
        msg = f"{len(mismatched)} tensor(s) have another shape than {arch} builds from config.json: {_names(shown, 4)}"
        yield Finding.of("load-mismatch", msg, path="config.json", actual=mismatched[:50],
                         hint="config.json does not describe these weights (sizes, vocab_size or num_labels differ): "
                              "restore the config they were saved with")
    if unexpected:
        yield Finding.of("load-mismatch", f"{len(unexpected)} tensor(s) in the weights are not used by {arch}: {_names(unexpected)}",
                         path="config.json", actual=unexpected[:50], severity=Severity.WARNING,
                         hint="harmless if they belong to another head; otherwise config.architectures names the wrong class")
    if not res.get("ok"):
        stage = res.get("stage", "load")
        err = " ".join(str(res.get("error", "unknown error")).split())[:600]
        hint = res.get("hint") or (_MISMATCH_HINT if mismatched or missing else _hint_for(err))
        yield Finding.of("load-failed", f"{mode} load failed ({stage}): {err}", path="config.json", hint=hint)
    if res.get("nonfinite"):
        yield Finding.of("load-failed", f"the forward pass produced non-finite values ({res['nonfinite']})", path="config.json",
                         hint="the weights are corrupted or were saved in a dtype that overflowed: restore the original weights")
    report.mark_checked(check)


_MISMATCH_HINT = "config.json does not describe these weights (see the load-mismatch finding): restore the config they were saved with"


def _hint_for(err: str) -> str:
    low = err.lower()
    if "trust_remote_code" in low or "remote code" in low or "custom code" in low:
        return TRUST_HINT
    if "size mismatch" in low or "shape" in low:
        return "config.json does not describe these weights: restore the config they were saved with (manifest check DIR says more)"
    if "out of memory" in low or "cannot allocate" in low:
        return "the model needs more memory than this machine has: load it in a smaller dtype (torch_dtype) or on a bigger machine"
    return "run `manifest check DIR` for the cheaper diagnoses, and load the model in Python to see the full traceback"


def _is_custom(raw: dict[str, Any], builtin: bool) -> bool:
    """Whether loading config.architectures[0] would run the checkpoint's own code."""
    arch = (raw.get("architectures") or [None])[0]
    auto_map = raw.get("auto_map") or {}
    if not isinstance(auto_map, dict) or not auto_map:
        return False
    refs: list[str] = []
    for v in auto_map.values():
        refs.extend(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str))
    return arch is None or not builtin or any(r.endswith("." + str(arch)) for r in refs)


def _refuse_custom(art: Artifact, opts: Options) -> str | None:
    """Decided before any child starts: custom model code without --trust-remote-code."""
    if opts.trust_remote_code:
        return None
    from .formats.config import ConfigError, read_config

    try:
        cfg = read_config(art)
    except (ConfigError, OSError, ValueError):
        return None
    if cfg is None or not cfg.auto_map:
        return None
    arch = cfg.architectures[0] if cfg.architectures else None
    if _is_custom(cfg.raw, builtin=arch is not None and not any(str(v).endswith("." + arch) for v in cfg.auto_map.values())):
        return f"the model class {arch or '(auto_map)'} is custom code shipped with the checkpoint (auto_map); it was not run"
    return None


# --------------------------------------------------------------------------- child side
def _rss_peak() -> int:
    """This process's peak RSS in bytes. VmHWM first: ``ru_maxrss`` starts at the RSS of
    the process this one was forked from (Linux keeps it across exec), so a load started
    from a large caller would report the caller's size."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _model_class(root: str, trust: bool) -> tuple[Any, Any]:
    """(config, class) for config.architectures[0], custom code only when trusted."""
    import transformers
    from transformers import AutoConfig

    raw = json.loads(open(os.path.join(root, "config.json"), "rb").read())
    arch = (raw.get("architectures") or [None])[0]
    auto_map = raw.get("auto_map") or {}
    custom = _is_custom(raw, hasattr(transformers, arch) if arch else False)
    if custom and not trust:
        raise _Refused(f"the model class {arch or '(auto_map)'} is custom code shipped with the checkpoint (auto_map); it was not run")
    config = AutoConfig.from_pretrained(root, trust_remote_code=trust, local_files_only=True)
    if custom:
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        ref = next((v for v in auto_map.values() if isinstance(v, str) and v.endswith("." + str(arch))), None)
        ref = ref or next((v for k, v in auto_map.items() if k.startswith("AutoModel") and isinstance(v, str)), None)
        if ref is None:
            raise _Refused("auto_map names no model class")
        return config, get_class_from_dynamic_module(ref, root, local_files_only=True)
    if arch is None:
        from transformers import AutoModel

        return config, AutoModel._model_mapping[type(config)]
    if not hasattr(transformers, arch):
        raise _Refused(f"transformers {transformers.__version__} has no class {arch} (config.architectures)")
    return config, getattr(transformers, arch)


class _Refused(Exception):
    pass


def _patterns(model: Any, attr: str) -> list[str]:
    v = getattr(model, attr, None) or []
    return [str(x) for x in v]


def structural(root: str, trust: bool, tensors: dict[str, list[int]]) -> dict[str, Any]:
    import re

    import torch

    config, cls = _model_class(root, trust)
    with torch.device("meta"):
        model = cls(config)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    # Tied aliases: parameters shared under several names; one saved copy is enough.
    groups: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(n)
    tied = getattr(model, "_tied_weights_keys", None)
    if isinstance(tied, dict):
        for a, b in tied.items():
            groups.setdefault(id(a), []).extend([str(a), str(b)])
    alias_of: dict[str, list[str]] = {}
    for names in groups.values():
        for n in names:
            alias_of[n] = [m for m in names if m != n]
    buffers = {n for n, _ in model.named_buffers()}
    ignore_missing = [re.compile(p) for p in _patterns(model, "_keys_to_ignore_on_load_missing")]
    ignore_unexpected = [re.compile(p) for p in _patterns(model, "_keys_to_ignore_on_load_unexpected")]
    # The checkpoint may be saved with or without the base model prefix.
    prefix = getattr(cls, "base_model_prefix", "") or ""
    have = dict(tensors)
    if prefix:
        exp_prefixed = any(k.startswith(prefix + ".") for k in expected)
        ck_prefixed = any(k.startswith(prefix + ".") for k in have)
        if exp_prefixed and not ck_prefixed:
            head_roots = {k.split(".", 1)[0] for k in expected if not k.startswith(prefix + ".")}
            have = {(k if k.split(".", 1)[0] in head_roots else f"{prefix}.{k}"): v for k, v in have.items()}
        elif ck_prefixed and not exp_prefixed:
            have = {(k[len(prefix) + 1:] if k.startswith(prefix + ".") else k): v for k, v in have.items()}
    have = {re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", k)) if k not in expected else k: v for k, v in have.items()}
    missing = sorted(k for k in expected if k not in have and not any(a in have for a in alias_of.get(k, []))
                     and not any(p.search(k) for p in ignore_missing))
    unexpected = sorted(k for k in have if k not in expected and k not in buffers and not any(p.search(k) for p in ignore_unexpected))
    mismatched = [{"name": k, "expected": expected[k], "actual": list(have[k])} for k in sorted(expected)
                  if k in have and list(have[k]) != expected[k]]
    return {"ok": True, "missing": missing, "unexpected": unexpected, "mismatched": mismatched,
            "facts": {"class": cls.__name__, "expected_tensors": len(expected), "weights_tensors": len(tensors),
                      "tied_aliases": sorted({n for n, a in alias_of.items() if a})}}


def full(root: str, trust: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    t_import = time.perf_counter() - t0
    rss_base = _rss_peak()
    _config, cls = _model_class(root, trust)
    t1 = time.perf_counter()
    kwargs: dict[str, Any] = {"local_files_only": True, "output_loading_info": True}
    if trust:
        kwargs["trust_remote_code"] = True
    model, info = cls.from_pretrained(root, **kwargs)
    model.eval()
    t_model = time.perf_counter() - t1
    facts: dict[str, Any] = {"class": cls.__name__, "torch": torch.__version__}
    res: dict[str, Any] = {"ok": True, "facts": facts,
                           "missing": sorted(info.get("missing_keys") or []), "unexpected": sorted(info.get("unexpected_keys") or []),
                           "mismatched": [{"name": str(m[0]) if isinstance(m, (list, tuple)) else str(m),
                                           "expected": list(m[2]) if isinstance(m, (list, tuple)) and len(m) > 2 else None,
                                           "actual": list(m[1]) if isinstance(m, (list, tuple)) and len(m) > 1 else None}
                                          for m in (info.get("mismatched_keys") or [])]}
    stats: dict[str, Any] = {"import_seconds": round(t_import, 3), "model_seconds": round(t_model, 3)}
    has_tok = any(os.path.exists(os.path.join(root, n)) for n in ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model",
                                                                "spiece.model", "sentencepiece.bpe.model"))
    if has_tok:
        from transformers import AutoTokenizer

        t2 = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=trust)
        stats["tokenizer_seconds"] = round(time.perf_counter() - t2, 3)
        inputs = tok(SENTENCE, return_tensors="pt")
        t3 = time.perf_counter()
        with torch.inference_mode():
            out = model(**inputs)
        stats["forward_seconds"] = round(time.perf_counter() - t3, 3)
        tensor = getattr(out, "logits", None)
        if tensor is None:
            tensor = getattr(out, "last_hidden_state", None)
        if tensor is None and isinstance(out, (tuple, list)) and out:
            tensor = out[0]
        if tensor is not None:
            facts["output_shape"] = list(tensor.shape)
            if not bool(torch.isfinite(tensor.float()).all()):
                res["nonfinite"] = "NaN or Inf in the output"
        facts["tokens"] = int(inputs["input_ids"].shape[-1])
        facts["sentence"] = SENTENCE
    else:
        facts["forward"] = "not run: the checkpoint has no tokenizer"
    peak = _rss_peak()
    stats["peak_rss_bytes"] = peak
    stats["load_rss_bytes"] = max(0, peak - rss_base)
    stats["total_seconds"] = round(time.perf_counter() - t1, 3)
    res["stats"] = stats
    return res


def _child() -> int:
    req = json.loads(sys.stdin.read())
    root, trust, tensors = req["root"], bool(req.get("trust_remote_code")), req.get("tensors") or {}
    pre: dict[str, Any] = {}
    try:
        if req["mode"] == "structural":
            res = structural(root, trust, tensors)
        else:
            if tensors:  # the meta-device comparison first: it names what a failing from_pretrained only hints at
                pre = structural(root, trust, tensors)
            res = full(root, trust)
    except _Refused as e:
        res = {"ok": False, "stage": "remote code" if "custom code" in str(e) else "model class", "error": str(e),
               "hint": TRUST_HINT if "custom code" in str(e) else None}
    except Exception as e:
        res = {"ok": False, "stage": "load", "error": f"{type(e).__name__}: {e}"}
        for k in ("missing", "unexpected", "mismatched", "facts"):
            if pre.get(k):
                res[k] = pre[k]
    sys.stdout.write("\n" + MARK + json.dumps(res, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - runs in the child process
    sys.exit(_child())

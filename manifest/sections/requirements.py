"""The `requirements` section: library versions and requirement specifiers.

Versions come from installed package metadata (``importlib.metadata``); torch and
transformers are never imported. Whether the installed transformers knows a
``model_type`` is read from the *source text* of its auto-config mapping
(``models/auto/auto_mappings.py`` in 5.x, ``configuration_auto.py`` in 4.x), found with
``importlib.util.find_spec`` (which locates a top-level package without running it).

Default requirements come from the checkpoint: ``config.json``'s
``transformers_version`` X.Y.Z becomes ``transformers>=X.Y``. A checkpoint written by
X.Y may use config keys or file conventions that X.Y introduced, while transformers
keeps reading checkpoints of older versions; patch releases do not change what is
written, so the patch level is dropped (``>=4.8`` rather than ``>=4.8.2``, which would
refuse a working 4.8.1). ``--require`` adds any specifier. An unmet ``--require`` (or
one recorded from it) is ``version-unsatisfied``, an error. The requirement config.json
implies is a *warning* when unmet: transformers reads configs written by newer versions
(unknown keys are kept as attributes), so a checkpoint saved by 5.25 over an installed
5.24 loads and predicts the same. What really fails stays an error: a ``model_type`` the
installed transformers does not know (the hint names close known types, for a typo), a
rope type it does not compute (read from the source text of ``modeling_rope_utils.py``), and
a config value the installed version refuses (``side-file-invalid``, from
:mod:`manifest.consistency`). A checkpoint-derived requirement on a library that is not
installed at all is a warning too (this machine may verify without loading).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from .. import distinfo
from ..errors import UsageError
from ..findings import Finding, Severity
from ..formats.config import ConfigError, read_config
from ..inventory import Artifact
from ..options import Options
from ..report import Report

if TYPE_CHECKING:  # pragma: no cover
    from packaging.requirements import Requirement

PACKAGES = ("transformers", "tokenizers", "safetensors", "torch", "huggingface_hub")
_PAIR = re.compile(r"""\(\s*["']([A-Za-z0-9_\-.]+)["']\s*,\s*["']([A-Za-z0-9_]+)["']\s*\)""")
_MAPPING_FILES = ("models/auto/auto_mappings.py", "models/auto/configuration_auto.py")


_VERSIONS: dict[str, str | None] = {}


def installed_version(name: str) -> str | None:
    """The installed distribution's version from its metadata, or None. Memoized, and
    found by :mod:`manifest.distinfo` (importlib.metadata's rules, without its 30 ms
    import and e-mail parser: the slowest part of a cached verify)."""
    if name not in _VERSIONS:
        _VERSIONS[name] = distinfo.installed_version(name)
    return _VERSIONS[name]


def environment() -> dict[str, str | None]:
    return {p: installed_version(p) for p in PACKAGES}


_KNOWN: dict[tuple[str, str | None], Any] = {}


def transformers_dir() -> str | None:
    """Where the transformers package lives, without importing it."""
    try:
        spec = importlib.util.find_spec("transformers")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def known_model_types() -> dict[str, str] | None:
    """model_type -> config class, read from the installed transformers' auto mapping
    source text (never executed). None when transformers is absent or the text has no
    mapping this reader understands."""
    base = transformers_dir()
    if base is None:
        return None
    key = (base, installed_version("transformers"))
    if key in _KNOWN:
        return _KNOWN[key]
    pairs: dict[str, str] = {}
    for rel in _MAPPING_FILES:
        path = os.path.join(base, rel)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        for mt, cls in _PAIR.findall(text):
            if cls.endswith("Config"):
                pairs.setdefault(mt, cls)
    result = pairs or None
    _KNOWN[key] = result
    return result


def default_requirements(art: Artifact) -> list[dict[str, str]]:
    """Requirements the checkpoint itself implies."""
    try:
        cfg = read_config(art)
    except ConfigError:
        return []
    out: list[dict[str, str]] = []
    if cfg is not None and cfg.transformers_version:
        try:
            v = Version(cfg.transformers_version)
        except InvalidVersion:
            return out
        source = f"config.json transformers_version {cfg.transformers_version}"
        out.append({"requirement": f"transformers>={v.major}.{v.minor}", "source": source})
    return out


class _AtLeast:
    """``name>=X.Y``, the requirement config.json implies, checked without importing the
    PEP 508 parser (``packaging.requirements`` compiles ~50 regexes on import: ~20 ms).
    Same answer as ``SpecifierSet(">=X.Y").contains(v, prereleases=True)``: local
    version labels are ignored, pre-releases compare by PEP 440 order."""

    _FORM = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)>=([0-9]+(?:\.[0-9]+)*)")
    marker = None

    def __init__(self, text: str, name: str, floor: str):
        self.text, self.name, self.floor = text, name, Version(floor)
        self.specifier = self

    @classmethod
    def parse(cls, text: str) -> _AtLeast | None:
        m = cls._FORM.fullmatch(text)
        return cls(text, m.group(1), m.group(2)) if m else None

    def contains(self, version: Version, prereleases: bool = True) -> bool:
        return Version(version.public) >= self.floor

    def __str__(self) -> str:
        return self.text


def parse_requirement(text: str) -> Requirement:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as e:
        raise UsageError(f"cannot read requirement {text!r}: {e}") from None


def check_requirement(text: str, source: str, *, user: bool) -> Finding | None:
    """A finding when the environment does not meet ``text``; None when it does."""
    req: Any = _AtLeast.parse(text)
    if req is None:
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            return Finding.of("version-unsatisfied", f"requirement {text!r} ({source}) cannot be read: {e}",
                              hint="write requirements as PEP 508 specifiers, e.g. 'torch>=2.6'")
    if req.marker is not None and not req.marker.evaluate():
        return None
    have = installed_version(req.name)
    if have is None:
        sev = Severity.ERROR if user else Severity.WARNING
        return Finding.of("version-unsatisfied", f"{req.name} is not installed, but {text} is required (by {source})", expected=str(req),
                          hint=f"pip install '{req}'", severity=sev)
    try:
        ok = req.specifier.contains(Version(have), prereleases=True)
    except InvalidVersion:
        ok = False
    if ok:
        return None
    if not user:
        return Finding.of("version-unsatisfied",
                          f"the checkpoint was written by a newer {req.name} than the installed {have} ({source}); "
                          "it loads unless it uses a feature newer than the installed version",
                          expected=str(req), actual=have, severity=Severity.WARNING,
                          hint=f"pip install '{req}' to load it with the version that wrote it; "
                               "the model_type and config values were checked against the installed version")
    return Finding.of("version-unsatisfied", f"{req.name} {have} is installed, but {text} is required (by {source})",
                      expected=str(req), actual=have, hint=f"pip install '{req}'")


def check_model_type(art: Artifact) -> list[Finding]:
    try:
        cfg = read_config(art)
    except ConfigError:
        return []
    if cfg is None or cfg.model_type is None:
        return []
    if installed_version("transformers") is None:
        return []
    known = known_model_types()
    if known is None or cfg.model_type in known:
        return []
    have = installed_version("transformers")
    if cfg.auto_map:
        return []  # the checkpoint ships its own config class (remote-code finding covers it)
    import difflib

    writer = f" (this checkpoint was written by transformers {cfg.transformers_version})" if cfg.transformers_version else ""
    close = difflib.get_close_matches(cfg.model_type.lower(), list(known), n=3, cutoff=0.7)
    typo = f"if it is a typo, set model_type to {' or '.join(repr(c) for c in close)} in config.json; otherwise " if close else ""
    return [Finding.of("version-unsatisfied", f"the installed transformers {have} does not know model_type {cfg.model_type!r}: "
                                              "from_pretrained raises",
                       path="config.json", actual=have, expected=cfg.model_type,
                       hint=f"{typo}upgrade transformers (pip install -U transformers) to a version that supports "
                            f"{cfg.model_type!r}{writer}")]


_ROPE_TABLE = re.compile(r"^ROPE_INIT_FUNCTIONS\b[^=]*=\s*\{(.*?)^\}", re.M | re.S)


def _source(rel: str) -> str | None:
    base = transformers_dir()
    if base is None:
        return None
    try:
        with open(os.path.join(base, rel), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def known_rope_types() -> set[str] | None:
    """The rope types the installed transformers computes, read from the source text of
    ``modeling_rope_utils.py`` (never executed); None when it cannot be read."""
    key = ("rope", installed_version("transformers"))
    if key not in _KNOWN:
        text = _source("modeling_rope_utils.py")
        m = _ROPE_TABLE.search(text or "")
        _KNOWN[key] = ({"default", *re.findall(r"""^\s*["']([\w-]+)["']\s*:""", m.group(1), re.M)} if m else None)
    result: set[str] | None = _KNOWN[key]
    return result


def _model_source(model_type: str) -> str | None:
    """The source text of the installed configuration and modeling modules of ``model_type``."""
    mod = model_type.replace("-", "_")
    parts = [_source(os.path.join("models", mod, f"{kind}_{mod}.py")) for kind in ("configuration", "modeling")]
    return "\n".join(p for p in parts if p) if parts[0] else None


def _rope_types(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(config key, rope type) pairs in rope_parameters / rope_scaling, per layer type too."""
    out: list[tuple[str, str]] = []
    for key in ("rope_parameters", "rope_scaling"):
        v = raw.get(key)
        blocks = [v] if isinstance(v, dict) and ("rope_type" in v or "type" in v) else list(v.values()) if isinstance(v, dict) else []
        for b in blocks:
            if isinstance(b, dict):
                t = b.get("rope_type", b.get("type"))
                if isinstance(t, str):
                    out.append((key, t))
    return out


def check_rope(art: Artifact) -> list[Finding]:
    """A rope type the installed transformers does not compute: from_pretrained raises
    (KeyError in the rotary embedding), typically a config written by a newer version."""
    try:
        cfg = read_config(art)
    except ConfigError:
        return []
    if cfg is None or cfg.model_type is None or installed_version("transformers") is None:
        return []
    pairs = _rope_types(cfg.raw)
    known = known_rope_types() if pairs else None
    model = _model_source(cfg.model_type) if known is not None else None
    if not pairs or known is None or model is None or "rope" not in model:
        return []  # a model without rotary embeddings never reads them
    # a model may handle its own rope types (Qwen2-VL's "mrope"): named in its own source
    pairs = [(k, t) for k, t in pairs if t not in known and f'"{t}"' not in model and f"'{t}'" not in model]
    have = installed_version("transformers")
    writer = f" (this checkpoint was written by transformers {cfg.transformers_version})" if cfg.transformers_version else ""
    return [Finding.of("version-unsatisfied", f"the installed transformers {have} does not know {key} rope_type {t!r}: "
                                              "from_pretrained raises", path="config.json", actual=have, expected=t,
                       hint=f"upgrade transformers (pip install -U transformers){writer}; the installed version knows "
                            f"{', '.join(sorted(known))}")
            for key, t in dict.fromkeys(pairs)]


class RequirementsSection:
    name = "requirements"

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        reqs = default_requirements(art)
        for r in opts.requires:
            parse_requirement(r)
            reqs.append({"requirement": r, "source": "--require"})
        return {"environment": environment(), "requires": reqs}

    def _check(self, art: Artifact, reqs: Iterable[dict[str, str]], report: Report) -> list[Finding]:
        done: set[str] = art.memo("requirements-checked", set)
        out: list[Finding] = []
        for r in reqs:
            text = r["requirement"]
            if text in done:
                continue
            done.add(text)
            source = str(r.get("source", "the manifest"))
            f = check_requirement(text, source, user=not source.startswith("config.json"))
            if f is not None:
                out.append(f)
        return out

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        for r in opts.requires:
            parse_requirement(r)
        # --require first: when it repeats the config's own requirement, it is the user's (an error)
        reqs = [{"requirement": r, "source": "--require"} for r in opts.requires] + default_requirements(art)
        out = self._check(art, reqs, report)
        out.extend(check_model_type(art))
        out.extend(check_rope(art))
        report.facts.setdefault("environment", environment())
        report.mark_checked("requirements")
        return out

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        if not isinstance(recorded, dict):
            report.mark_not_checked("requirements (manifest)", "the manifest's requirements section is malformed")
            return []
        raw = recorded.get("requires")
        reqs = [r for r in (raw if isinstance(raw, list) else []) if isinstance(r, dict) and isinstance(r.get("requirement"), str)]
        labelled = [{"requirement": r["requirement"], "source": f"the manifest ({r.get('source', 'recorded')})"}
                    if not str(r.get("source", "")).startswith("config.json") else r for r in reqs]
        env = recorded.get("environment")
        if isinstance(env, dict):
            report.facts["environment_recorded"] = env
        return self._check(art, labelled, report)

"""Manifest sections beyond the file table.

A section reads formats from the discovered artifact (never a whole weight file) and
can, independently:

- ``record``: build its part of the manifest at ``create`` time (JSON-able dict or None);
- ``diagnose``: find problems with no manifest at all (``check``, and ``verify`` too);
- ``compare``: check the live artifact against what the manifest recorded.

Each method may call ``report.mark_checked(name)`` / ``report.mark_not_checked(name, why)``
so the report says what was and was not checked. Sections run in list order, all of
them before any full-file digest: they must stay cheap (headers, small JSON files).
``all_sections`` also says what each section's result depends on besides the artifact's
files (``cache_key``); ``verify`` and ``check`` reuse a result that depends on nothing
else while no file changed (:mod:`manifest.sectioncache`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..findings import Finding
from ..inventory import Artifact
from ..options import Options
from ..report import Report


class Section(Protocol):
    name: str

    def cache_key(self, opts: Options) -> list[Any] | None:
        """The options the result depends on, or None if it also depends on anything
        outside the artifact's files (then it is never cached, see sectioncache.py)."""
        ...

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None: ...

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]: ...

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]: ...


class _Lazy:
    """A section whose module (and the format readers it needs) is imported on first
    use: a verify whose sections all come from the section cache imports none of them."""

    def __init__(self, name: str, module: str, cls: str, cache_key: Callable[[Options], list[Any] | None]):
        self.name = name
        self._where = (module, cls)
        self._impl: Any = None
        self.cache_key = cache_key

    def _section(self) -> Any:
        if self._impl is None:
            module, cls = self._where
            self._impl = getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
        return self._impl

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        return self._section().record(art, opts)  # type: ignore[no-any-return]

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        return self._section().diagnose(art, opts, report)  # type: ignore[no-any-return]

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        return self._section().compare(art, recorded, opts, report)  # type: ignore[no-any-return]


# What each section's result depends on besides the artifact's files (the section cache's
# key). None: it also reads something outside the artifact, so it is never cached.
def _files_only(opts: Options) -> list[Any] | None:
    return []


def _weights(opts: Options) -> list[Any] | None:
    return None if opts.check_memory else [opts.memory_limit]  # --check-memory reads the machine's free memory


def _config(opts: Options) -> list[Any] | None:
    return [opts.trust_remote_code]  # named in the remote-code finding


def _never(opts: Options) -> list[Any] | None:
    return None  # requirements: the installed packages; hub: the cache around the snapshot


def all_sections() -> list[Section]:
    """The sections in the order they run."""
    return [
        _Lazy("weights", "weights", "WeightsSection", _weights),
        _Lazy("tokenizer", "tokenizer", "TokenizerSection", _files_only),
        _Lazy("config", "config", "ConfigSection", _config),
        _Lazy("requirements", "requirements", "RequirementsSection", _never),
        _Lazy("hub", "hub", "HubSection", _never),
    ]

"""The stat cache (placeholder: caches nothing until implemented)."""

from __future__ import annotations

from .inventory import FileInfo


class StatCache:
    @classmethod
    def open(cls, key: tuple[str, ...]) -> StatCache | None:
        return None

    def get(self, info: FileInfo, algorithm: str) -> str | None:
        return None

    def put(self, info: FileInfo, algorithm: str, digest: str) -> None:
        return None

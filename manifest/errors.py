"""One exception tree for the whole package.

Every error carries a stable finding ``code`` and the process ``exit_status`` the CLI
uses, so the CLI catches :class:`ManifestError` once and prints one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2


class ManifestError(Exception):
    """Root of every error this package raises on purpose."""

    code: str = "error"
    exit_status: int = EXIT_INPUT

    def __init__(self, message: str, *, code: str | None = None, path: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.path = path

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code

    def one_line(self) -> str:
        """The single line the CLI prints: ``error[code]: path: message``."""
        where = f"{self.path}: " if self.path else ""
        text = " ".join(self.message.split())  # never a multi-line message
        return f"error[{self.code}]: {where}{text}"


class InputError(ManifestError):
    """Unreadable, malformed or unsupported input (exit 2)."""

    code = "input-invalid"
    exit_status = EXIT_INPUT


class ManifestInvalid(InputError):
    """The manifest document is malformed or breaks the format's rules."""

    code = "manifest-invalid"


class KeyError_(InputError):
    """A key file cannot be read or is of an unsupported type."""

    code = "key-invalid"


class UsageError(ManifestError):
    """The call itself is wrong (exit 2)."""

    code = "usage"
    exit_status = EXIT_INPUT


class VerificationFailed(ManifestError):
    """Raised by :func:`manifest.verify_or_raise`; carries the full report."""

    code = "verification-failed"
    exit_status = EXIT_FAILED

    def __init__(self, report: Report):
        first = report.errors[0] if report.errors else None
        msg = f"{len(report.errors)} finding(s)" + (f", first: {first.one_line()}" if first else "")
        super().__init__(msg, code=first.code if first else self.code)
        self.report = report

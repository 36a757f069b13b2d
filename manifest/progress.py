"""Progress on stderr: a tqdm byte bar (with bytes per second) on a TTY, nothing otherwise.

tqdm is imported only when a bar is actually shown, so a pipeline, a CI log or
``--quiet`` pays nothing for it. The bar appears only after :data:`DELAY` seconds,
so a cached re-verify that takes milliseconds never flashes one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

DELAY = 0.5  # seconds before a bar is drawn
MIN_BYTES = 64 * 1024 * 1024  # less work than this never gets a bar


class _Null:
    """The do-nothing progress: same interface as the tqdm bar."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def make_progress(enabled: bool, total: int, desc: str) -> Any:
    """A thread-safe ``update(n_bytes)``/``close()`` object: a tqdm bar on a TTY, else a no-op."""
    if not enabled or total < MIN_BYTES or not _is_tty():
        return _Null()
    from tqdm import tqdm  # only on a TTY

    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False,
        delay=DELAY, smoothing=0.1,
    )


def make_counter(enabled: bool, total: int, desc: str, unit: str) -> Any:
    """A ``update(n)``/``close()`` counter of work items (e.g. models): a tqdm bar on a TTY, else a no-op."""
    if not enabled or total < 2 or not _is_tty():
        return _Null()
    from tqdm import tqdm  # only on a TTY

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, delay=DELAY)

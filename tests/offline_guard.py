"""Run a Python module with the network cut off, and say so if it tried:

    python tests/offline_guard.py MODULE [ARGS...]

Every way out of the process (``socket.connect``/``connect_ex``/``sendto``, name lookup,
``create_connection``) raises, and first writes ``OFFLINE-GUARD: network access attempted``
to stderr, so that an attempt shows even where the library catches the error and goes on.
The module runs as ``python -m MODULE ARGS``; the exit status is its own.
"""

from __future__ import annotations

import runpy
import socket
import sys

MARK = "OFFLINE-GUARD: network access attempted"


def _refuse(*args: object, **kwargs: object) -> None:
    sys.stderr.write(f"{MARK} ({args[1:2] or args[:1]})\n")
    sys.stderr.flush()
    raise OSError(101, "network is unreachable (offline guard)")


socket.socket.connect = _refuse  # type: ignore[method-assign]
socket.socket.connect_ex = _refuse  # type: ignore[method-assign,assignment]
socket.socket.sendto = _refuse  # type: ignore[method-assign,assignment]
socket.getaddrinfo = _refuse  # type: ignore[assignment]
socket.gethostbyname = _refuse  # type: ignore[assignment]
socket.create_connection = _refuse  # type: ignore[assignment]

if __name__ == "__main__":
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)

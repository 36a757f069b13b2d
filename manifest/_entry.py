"""The ``manifest`` console command's entry point: the CLI is loaded with the cyclic
garbage collector paused, and what the imports built is frozen out of later collections.

Loading click and this package allocates tens of thousands of objects, which triggers
many collections that find nothing; the modules live until the process exits, so later
collections (and the one at exit) need not scan them either. This saves about 13 ms of
start-up here (``scripts/bench_startup.py``). It is done only for the command: importing
``manifest`` as a library never touches the collector.
"""

from __future__ import annotations

import gc

# "frozen": the command froze its imports, so what jsonio.gc_paused builds may stay frozen too
STATE = {"frozen": False}


def main() -> None:
    enabled = gc.isenabled()
    gc.disable()
    try:
        from .cli import main as cli_main
    finally:
        gc.freeze()
        STATE["frozen"] = True
        if enabled:
            gc.enable()
    cli_main()

"""Run a command and write its own peak RSS to a file:

    python tests/peak_rss.py OUT_FILE COMMAND [ARGS...]

A process's peak RSS as wait4/getrusage report it (``ru_maxrss``) starts at the RSS of the
process it was forked from: Linux keeps the forked copy's high-water mark across
``execve``. A command started straight from a pytest process that has grown to 500 MB
would report at least 500 MB. This small launcher is that command's parent instead, so
the figure (KiB, written to OUT_FILE) is the command's own. stdin, stdout and stderr are
passed through; the exit status is the command's (128 + N when killed by signal N).
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[2:]
    p = subprocess.Popen(cmd)
    _, status, usage = os.wait4(p.pid, 0)
    with open(out, "w") as f:
        f.write(str(usage.ru_maxrss))
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())

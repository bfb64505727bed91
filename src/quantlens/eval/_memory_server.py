"""The process :mod:`quantlens.eval.memory` starts: forks one child per measurement job.

Reads one JSON job per line on stdin, forks, the child measures
(:func:`quantlens.eval.memory.measure_in_this_process`) and sends its result back through a
pipe; the result goes to stdout as one JSON line. Torch is imported here but runs nothing,
so every child starts from the same clean state.
"""

from __future__ import annotations

import json
import os
import sys

import quantlens.api  # noqa: F401  (imported once here, shared by every forked child)
from quantlens.eval.memory import measure_in_this_process


def _child(job: dict, fd: int) -> None:
    try:
        result = measure_in_this_process(job)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        result = {"ok": False, "error": f"{type(exc).__name__}: {text}"}
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(result))


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                _child(job, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd) as inp:
            data = inp.read()
        os.waitpid(pid, 0)
        sys.stdout.write(
            (data or json.dumps({"ok": False, "error": "the child process died"})) + "\n"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()

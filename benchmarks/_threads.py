"""How idle worker threads wait, chosen before torch starts its thread pool.

By default PyTorch's OpenMP threads spin briefly while waiting for work, which is what
users get and what makes many small parallel regions cheap. On a machine whose cores other
processes hold, spinning threads steal time from the threads doing the work; there
``--passive-threads`` (``OMP_WAIT_POLICY=PASSIVE``) keeps runs stable, at a cost of some
tens of microseconds per parallel region.

ONNX Runtime's pool never spins here: its threads would keep spinning while PyTorch runs
in the same process (measured: with a spinning 2-thread ORT session in the same run,
digits-cnn's float PyTorch row took 23.7 ms instead of 2.8 ms, p95 59.8 ms), and without
spinning ORT itself ran as fast or faster.
"""

from __future__ import annotations

import os
import sys

FLAG = "--passive-threads"
HELP = "idle PyTorch (OpenMP) threads sleep instead of spinning (for a busy machine)"
ORT_SPINNING = "0"  # ONNX Runtime's session.intra_op.allow_spinning: off, see above


def set_wait_policy() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when the command line has ``--passive-threads``;
    call before importing torch."""
    if FLAG in sys.argv[1:]:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

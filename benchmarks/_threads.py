"""How idle worker threads wait, chosen before torch starts its thread pool.

By default OpenMP and ONNX Runtime threads spin briefly while waiting for work, which is
what users get and what makes many small parallel regions cheap. On a machine whose cores
other processes hold, spinning threads steal time from the threads doing the work; there
``--passive-threads`` (``OMP_WAIT_POLICY=PASSIVE`` and no ORT spinning) keeps runs stable,
at a cost of some tens of microseconds per parallel region.
"""

from __future__ import annotations

import os
import sys

FLAG = "--passive-threads"
HELP = "idle OpenMP/ONNX Runtime threads sleep instead of spinning (for a busy machine)"


def set_wait_policy() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when the command line has ``--passive-threads``;
    call before importing torch. Returns whether threads are passive."""
    if FLAG in sys.argv[1:]:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def ort_spinning() -> str:
    """ONNX Runtime's ``session.intra_op.allow_spinning`` value matching the OpenMP policy."""
    return "0" if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else "1"

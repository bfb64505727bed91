"""Shared pytest set-up: puts tests/ on sys.path (in every import mode), so any test can
``from helpers import assert_similar, random_tensor, ...``."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

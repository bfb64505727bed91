"""The entry points' docstrings describe what exists."""

import quantlens as ql


def test_quantize_docs_name_only_algorithms_that_exist():
    from quantlens.methods.weight_only import ALGORITHMS

    named = {w for w in ("GPTQ", "AWQ", "HQQ", "SmoothQuant", "RTN") if w in ql.quantize.__doc__}
    assert named and {w.lower() for w in named} <= set(ALGORITHMS)

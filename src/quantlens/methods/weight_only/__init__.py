"""Weight-only quantization: Linear (and optionally Embedding) weights stored in 8/4/3/2 bits.

``ql.quantize(model, WeightOnly(bits=4, group_size=128))`` replaces every selected float
layer by the quantized layer registered for its class in :mod:`quantlens.nn.registry`
(``QLinear`` for ``nn.Linear``, ``QEmbedding`` for ``nn.Embedding``); activations stay
float. The weight's integer codes come from one of the algorithms registered in
:mod:`.registry` (:data:`ALGORITHMS`), one module each:

=========  =====================================================  ==================
algorithm  what it does                                           needs
=========  =====================================================  ==================
``rtn``    round to nearest on the min/max grid of each group      nothing
           (:mod:`.rtn`)
``hqq``    half-quadratic fit of scale and zero-point               nothing
           (:mod:`.hqq`)
``gptq``   column-by-column rounding with error compensation        ``calib_data``
           from input statistics; act-order, static groups,
           true-sequential (:mod:`.gptq`, :mod:`.sequential`)
``awq``    per-input-channel scales searched on activations,      ``calib_data``
           folded into the preceding norm / Linear, then RTN
           (:mod:`.awq`)
``awq+``   AWQ's scaling, then GPTQ on the scaled weights          ``calib_data``
``gptq``   (:mod:`.awq`)
=========  =====================================================  ==================

GPTQ and AWQ apply to Linear layers only (an embedding has no input activations); embeddings
selected next to ``algorithm="gptq"`` use ``hqq`` (next to ``"awq"``: ``rtn``). To add an
algorithm, write ``quantize(weight, scheme, stats) -> QTensor`` (and, if it needs data,
``collect(model, names, ctx) -> {name: stats}``) in a module of this package and
``register_algorithm(Algorithm(...))`` (see :mod:`.registry`).

Layout: :mod:`.config` (the config), :mod:`.apply` (apply / rebuild / dequantize),
:mod:`.registry`, one module per algorithm, and :mod:`.sequential` (calibrating layer
group by layer group on the outputs of the layers quantized before).
"""

from quantlens.methods.weight_only import awq, gptq, hqq, rtn  # noqa: F401  (register algorithms)
from quantlens.methods.weight_only.apply import apply, dequantize, rebuild
from quantlens.methods.weight_only.config import WeightOnly
from quantlens.methods.weight_only.registry import ALGORITHMS, Algorithm, register_algorithm

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "WeightOnly",
    "apply",
    "dequantize",
    "rebuild",
    "register_algorithm",
]

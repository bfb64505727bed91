"""RTN: round to nearest on the min/max grid of each group (or on a codebook's levels).

The baseline every other algorithm is measured against: no data, no fitting; the codes are
what :func:`quantlens.core.qtensor.quantize_tensor` gives.
"""

from __future__ import annotations

import torch

from quantlens.core.qtensor import QTensor, quantize_tensor
from quantlens.core.scheme import QScheme
from quantlens.methods.weight_only.registry import Algorithm, register_algorithm


def rtn_quantize(weight: torch.Tensor, scheme: QScheme, stats: object = None) -> QTensor:
    """Round ``weight`` to the nearest level of ``scheme`` (``stats`` is unused).

    Args:
        weight: a float weight.
        scheme: its quantization scheme (uniform or codebook).
        stats: unused; RTN needs no data.

    Returns:
        The quantized weight.

    Example:
        >>> rtn_quantize(torch.randn(8, 64), QScheme(bits=4)).data.shape
        torch.Size([8, 64])
    """
    return quantize_tensor(weight, scheme)


register_algorithm(Algorithm("rtn", rtn_quantize, codebooks=True))

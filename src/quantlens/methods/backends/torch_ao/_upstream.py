"""How quantlens reaches torch.ao.quantization: one import point and one warning filter.

Every module of :mod:`quantlens.methods.backends.torch_ao` imports torch.ao through
:func:`tq` or inside :func:`quiet`, so the deprecation notices torch.ao prints
(``torch.ao.quantization is deprecated``, the migration hints, the quantized-tensor
creation notice) never reach quantlens users.
"""

from __future__ import annotations

import contextlib
import warnings

TESTED_TORCH_VERSIONS = ("2.13.0",)


@contextlib.contextmanager
def quiet():
    """Silence torch.ao's deprecation and migration warnings inside the block.

    Example:
        >>> with quiet():
        ...     import torch.ao.quantization
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation.*")
        warnings.filterwarnings(
            "ignore", message=r".*(reduce_range|quantized engine|TypedStorage).*"
        )
        yield


def tq():
    """The ``torch.ao.quantization`` package, imported without its warnings."""
    with quiet():
        import torch.ao.quantization as tq_module
    return tq_module

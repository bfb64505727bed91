"""The torch.ao.quantization backend: every call into torch.ao lives in this package.

torch.ao.quantization is deprecated upstream (torchao's PT2E flow is the named successor),
so quantlens keeps it behind this one package: methods build qconfigs, prepare, convert and
pick engines only through the names exported here, and users never see torch.ao's
deprecation warnings (every call runs inside :func:`quiet`). Replacing the upstream means
replacing this package.

Tested on torch 2.13.0 (CPU build); :data:`TESTED_TORCH_VERSIONS`.

Modules, one concept each:

- :mod:`.engines`: ``torch.backends.quantized.engine``: :func:`available_engines`,
  :func:`use_engine` (a clear :class:`~quantlens.errors.BackendError` listing the engines
  this machine has), :func:`quantized_op_errors` (the ``quantlens doctor`` self-test);
- :mod:`.observers`: :class:`CoreObserver` / :class:`CoreFakeQuantize` (torch.ao observer
  and fake-quant adapters over ``quantlens.core.observers`` and ``quantlens.nn.FakeQuantize``)
  and :func:`make_qconfig` / :func:`make_qconfig_mapping`;
- :mod:`.fx`: graph mode :func:`prepare` / :func:`convert`, :func:`find_untraceable`,
  :func:`freeze_bn` / :func:`freeze_observers` for QAT;
- :mod:`.eager`: the layer-wise eager fallback (:func:`eager_wrap`, :func:`eager_prepare`,
  :func:`eager_convert`);
- :mod:`.dynamic_rnn`: torch.ao's dynamic LSTM / GRU and their weights as plain tensors.
"""

from quantlens.methods.backends.torch_ao._upstream import TESTED_TORCH_VERSIONS, quiet
from quantlens.methods.backends.torch_ao.dynamic_rnn import (
    dynamic_rnn_empty,
    dynamic_rnn_from_float,
    dynamic_rnn_set_weights,
    dynamic_rnn_weights,
)
from quantlens.methods.backends.torch_ao.eager import (
    EAGER_TYPES,
    eager_convert,
    eager_prepare,
    eager_wrap,
)
from quantlens.methods.backends.torch_ao.engines import (
    BACKENDS,
    Backend,
    available_engines,
    quantized_op_errors,
    use_engine,
)
from quantlens.methods.backends.torch_ao.fx import (
    convert,
    find_untraceable,
    freeze_bn,
    freeze_observers,
    is_quantized_module,
    prepare,
    quantizable_types,
)
from quantlens.methods.backends.torch_ao.observers import (
    CoreFakeQuantize,
    CoreObserver,
    make_qconfig,
    make_qconfig_mapping,
)

__all__ = [
    "BACKENDS",
    "EAGER_TYPES",
    "TESTED_TORCH_VERSIONS",
    "Backend",
    "CoreFakeQuantize",
    "CoreObserver",
    "available_engines",
    "convert",
    "dynamic_rnn_empty",
    "dynamic_rnn_from_float",
    "dynamic_rnn_set_weights",
    "dynamic_rnn_weights",
    "eager_convert",
    "eager_prepare",
    "eager_wrap",
    "find_untraceable",
    "freeze_bn",
    "freeze_observers",
    "is_quantized_module",
    "make_qconfig",
    "make_qconfig_mapping",
    "prepare",
    "quantizable_types",
    "quantized_op_errors",
    "quiet",
    "use_engine",
]

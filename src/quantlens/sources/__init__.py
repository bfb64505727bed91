"""Where models and data come from: a name or a path turned into an ``nn.Module`` or into
batches, the same way for the Python API, the command line, checkpoints and the child
processes that measure memory.

- :func:`load_model` / :func:`resolve_model` (:mod:`.models`): a zoo name, a checkpoint
  folder, a float folder, a Hugging Face folder, ``module:function`` (with ``trust_code``)
  or a pickled ``.pt`` model (with ``allow_pickle``);
- :func:`load_data` (:mod:`.data`): a zoo data set, ``.pt`` / ``.npz`` / ``.csv`` files of
  numbers, ``.txt`` files of text, or an image folder;
- :func:`build_skeleton` / :func:`source_of` (:mod:`.recorded`): the ``"source"`` a
  checkpoint records and the model it rebuilds.

Example:
    >>> import quantlens as ql
    >>> model = ql.load_model("digits-cnn")
    >>> data = ql.load_data("digits")
    >>> qm = ql.quantize(model, ql.Static(), calib_data=data.calib)
"""

from quantlens.sources.data import LoadedData, load_data, load_data_for, require_tensors
from quantlens.sources.models import (
    LoadOptions,
    ModelForm,
    ModelSource,
    forms_text,
    is_factory_spec,
    load_model,
    model_forms,
    register_model_form,
    resolve_model,
)
from quantlens.sources.recorded import (
    SOURCE_FILE,
    WEIGHTS_FILE,
    build_skeleton,
    call_factory,
    import_factory,
    load_float_folder,
    source_of,
)

__all__ = [
    "SOURCE_FILE",
    "WEIGHTS_FILE",
    "LoadOptions",
    "LoadedData",
    "ModelForm",
    "ModelSource",
    "build_skeleton",
    "call_factory",
    "forms_text",
    "import_factory",
    "is_factory_spec",
    "load_data",
    "load_data_for",
    "load_float_folder",
    "load_model",
    "model_forms",
    "register_model_form",
    "require_tensors",
    "resolve_model",
    "source_of",
]

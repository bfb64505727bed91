"""Assertions for your own test suite: is the quantized model close enough to the float one?

Example (pytest)::

    import quantlens as ql
    from quantlens.testing import assert_quantized_close

    def test_int8_model_is_close():
        model = build_model().eval()
        qm = ql.quantize(model, ql.Static(), calib_data=calib)
        assert_quantized_close(model, qm, test_inputs, min_sqnr_db=20, min_agreement=99.0)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from quantlens.core.data import iter_batches
from quantlens.core.metrics import cosine_similarity, max_abs_error, prediction_rule, sqnr_db
from quantlens.core.metrics import prediction_agreement as agreement
from quantlens.errors import InputError, check_number

__all__ = ["agreement", "assert_quantized_close"]


def _outputs(out) -> list[torch.Tensor]:
    """Every tensor of a model output (tensor, tuple/list, dict, or a ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        values = out.to_tuple() if hasattr(out, "to_tuple") else out.values()
        return [t for v in values for t in _outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _outputs(v)]
    return []


def _names(out) -> list[str]:
    if isinstance(out, torch.Tensor):
        return ["output"]
    if isinstance(out, dict) or hasattr(out, "keys"):
        return [f"output[{k!r}]" for k in out if isinstance(out[k], torch.Tensor)]
    return [f"output[{i}]" for i, _ in enumerate(_outputs(out))]


@torch.inference_mode()
def assert_quantized_close(
    float_model: nn.Module,
    q_model: nn.Module,
    inputs,
    *,
    min_sqnr_db: float | None = None,
    min_cosine: float | None = None,
    min_agreement: float | None = None,
    atol: float | None = None,
) -> dict[str, dict[str, float]]:
    """Assert that ``q_model``'s outputs stay within tolerances of ``float_model``'s.

    Every output tensor (a model may return several) is checked over all batches of
    ``inputs``; the failure message names the worst output, the metric that failed, the
    measured value and the threshold.

    Args:
        float_model, q_model: the original and the quantized model.
        inputs: a tensor, ``(inputs, labels)``, a list of batches, a DataLoader... (labels are
            ignored).
        min_sqnr_db: lowest allowed signal-to-quantization-noise ratio, dB (about 6 dB per bit).
        min_cosine: lowest allowed cosine similarity of the flattened outputs.
        min_agreement: lowest allowed % of predictions that match float's: the argmax over
            the last dimension; for a single value per prediction (last dimension 1, or a
            1-D output), its sign: the decision of a binary classifier with one logit.
        atol: largest allowed absolute difference of any element.

    Returns:
        ``{output name: {"sqnr_db", "cosine", "agreement", "max_abs_error"}}`` when it passes.

    Raises:
        AssertionError: a tolerance is not met.
        InputError: no tolerance given, the models' outputs differ in number or shape, or
            ``min_agreement`` is given for a 0-d (scalar) output.

    Example:
        >>> assert_quantized_close(model, qm, x, min_sqnr_db=20, min_agreement=99)
    """
    if all(t is None for t in (min_sqnr_db, min_cosine, min_agreement, atol)):
        raise InputError(
            "give at least one tolerance: min_sqnr_db, min_cosine, min_agreement or atol"
        )
    check_number("min_sqnr_db", min_sqnr_db)
    check_number("min_cosine", min_cosine, -1, 1)
    check_number("min_agreement", min_agreement, 0, 100)
    check_number("atol", atol, 0)
    refs: list[list[torch.Tensor]] = []
    outs: list[list[torch.Tensor]] = []
    names: list[str] = []
    for model in (float_model, q_model):
        model.eval()
    for batch in iter_batches(inputs, what="inputs"):
        f_out, q_out = batch.run(float_model), batch.run(q_model)
        f_list, q_list = _outputs(f_out), _outputs(q_out)
        if len(f_list) != len(q_list):
            raise InputError(
                f"the float model returns {len(f_list)} tensor(s), the quantized one {len(q_list)}"
            )
        names = names or _names(f_out)
        for i, (f, q) in enumerate(zip(f_list, q_list)):
            q = q.dequantize() if q.is_quantized else q
            if f.shape != q.shape:
                raise InputError(
                    f"{names[i]}: float shape {tuple(f.shape)} != quantized shape {tuple(q.shape)}"
                )
            if len(refs) <= i:
                refs.append([])
                outs.append([])
            refs[i].append(f.float())
            outs[i].append(q.float())
    if not refs:
        raise InputError("inputs yielded no batch")
    results: dict[str, dict[str, float]] = {}
    failures: list[tuple[float, str]] = []  # (how far past the threshold, message)
    for i, name in enumerate(names[: len(refs)]):
        scalar = refs[i][0].ndim == 0  # one number per batch (a loss, a score): no predictions
        join = torch.stack if scalar else torch.cat
        f, q = join(refs[i]), join(outs[i])
        m = {
            "sqnr_db": sqnr_db(f, q),
            "cosine": cosine_similarity(f, q),
            "max_abs_error": max_abs_error(f, q),
            "agreement": math.nan if scalar else agreement(f, q),
        }
        if min_agreement is not None and scalar:
            raise InputError(
                f"{name}: min_agreement needs predictions to compare, but the output is a scalar; "
                "use min_sqnr_db, min_cosine or atol for it"
            )
        results[name] = m
        checks = (
            ("SQNR", m["sqnr_db"], min_sqnr_db, ">=", " dB"),
            ("cosine similarity", m["cosine"], min_cosine, ">=", ""),
            (f"{prediction_rule(f)} agreement", m["agreement"], min_agreement, ">=", " %"),
            ("max abs error", m["max_abs_error"], atol, "<=", ""),
        )
        for metric, value, limit, op, unit in checks:
            if limit is None or (isinstance(value, float) and math.isnan(value)):
                continue
            ok = value >= limit if op == ">=" else value <= limit
            if not ok:
                gap = (
                    (limit - value) / (abs(limit) or 1)
                    if op == ">="
                    else (value - limit) / (abs(limit) or 1)
                )
                failures.append(
                    (gap, f"{name}: {metric} {value:.4g}{unit} is not {op} {limit:g}{unit}")
                )
    if failures:
        failures.sort(key=lambda f: -f[0])
        worst = failures[0][1]
        more = (
            f" (and {len(failures) - 1} more: {'; '.join(m for _, m in failures[1:4])})"
            if len(failures) > 1
            else ""
        )
        raise AssertionError(f"quantized model not close to float: worst {worst}{more}")
    return results

"""Which group size a weight gets when the one asked for does not fit its input size
(:func:`fit_group`), and how the summary says so (:func:`group_choice`). Used by
:class:`quantlens.methods.weight_only.WeightOnly`."""

from __future__ import annotations

from quantlens.core.scheme import QScheme

DEFAULT_GROUP_SIZE = 128
"""The group size of ``WeightOnly(group_size="auto")`` below 8 bits."""


def fit_group(length: int, group_size: int) -> int | None:
    """The group size a weight axis of ``length`` elements gets when ``group_size`` is asked
    for: ``group_size`` if it divides ``length``; None (one group per row, i.e. per-channel)
    if ``length < group_size``; else the largest divisor of ``length`` in
    ``[group_size / 2, group_size]`` (as many scales as asked for, up to twice as many); else
    None (a prime-like length would otherwise need tiny groups that cost more than the codes).

    Example:
        >>> fit_group(384, 128), fit_group(64, 128), fit_group(200, 128), fit_group(131, 128)
        (128, None, 100, None)
    """
    if length % group_size == 0:
        return group_size
    if length < group_size:
        return None
    return next(
        (g for g in range(group_size, (group_size + 1) // 2 - 1, -1) if length % g == 0), None
    )


def group_choice(group_size: int | None, length: int, scheme: QScheme) -> str:
    """Why ``scheme`` (of a weight whose grouped axis has ``length`` elements) differs from
    the ``group_size`` asked for, for the summary; "" when it does not.

    Example:
        >>> group_choice(128, 200, QScheme(bits=4, granularity="per_group", group_size=100))
        'group_size 128 does not divide 200: groups of 100'
    """
    if group_size is None or (
        scheme.granularity == "per_group" and scheme.group_size == group_size
    ):
        return ""
    if scheme.granularity == "per_group":
        return f"group_size {group_size} does not divide {length}: groups of {scheme.group_size}"
    if length < group_size:
        return f"input size {length} < group_size {group_size}: one group per row"
    return (
        f"no group size in [{(group_size + 1) // 2}, {group_size}] divides {length}: one "
        "group per row"
    )

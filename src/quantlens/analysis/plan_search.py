"""The search behind the mixed-precision planner: candidate configs per bit width, the
per-layer measurements (:class:`LayerTable`), the greedy order of moves, and the measured
local search that finishes a plan.

A *state* maps each layer to a level index into the candidate widths, most precise first
(``levels = [None, 8, 4, 2]``: float, 8-, 4-, 2-bit). A *move* lowers or raises one layer.

Example:
    >>> configs = candidate_configs(ql.WeightOnly(bits=8), (8, 4, None))
    >>> moves = greedy_moves(table)           # [(layer, level), ...], cheapest loss per byte first
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from quantlens.analysis.sensitivity import escape
from quantlens.errors import ConfigError
from quantlens.methods.base import QuantConfig, get_method

__all__ = [
    "LayerTable",
    "Search",
    "build_config",
    "candidate_configs",
    "fill_slack",
    "greedy_moves",
    "state_after",
]

State = dict[str, int]


# --- candidates ----------------------------------------------------------------------------


# weight-only group size per width: 8-bit per channel, 4-bit groups of 32, 2-bit groups of 16
# (as the compare presets w8 / w4 / w2); other widths: groups of 32
_GROUP_SIZES = {8: None, 4: 32, 2: 16}


def _default_configs(candidates) -> dict[int, QuantConfig]:
    """Weight-only configs per width (``w8`` per-channel, ``w4`` groups of 32, ``w2`` of 16)."""
    cls = get_method("weight_only").config_cls
    return {b: cls(bits=b, group_size=_GROUP_SIZES.get(b, 32)) for b in candidates if b is not None}


def _with_bits(method: QuantConfig, bits: int) -> QuantConfig:
    """``method`` at another width; a ``symmetric`` left at its width-dependent default follows the
    width."""
    names = {f.name for f in fields(method)}
    if "symmetric" in names and method.symmetric == (method.bits >= 8):
        return method.replace(bits=bits, symmetric=None)
    return method.replace(bits=bits)


def candidate_configs(
    method: QuantConfig | None, candidates
) -> dict[int | None, QuantConfig | None]:
    """``{bits: config}`` from most to least precise (None = float first).

    Raises:
        ConfigError: empty candidates or one that is not a bit width.
    """
    if not candidates:
        raise ConfigError("candidates is empty; give bit widths such as (8, 4, 2, None)")
    for b in candidates:
        if b is not None and (not isinstance(b, int) or isinstance(b, bool) or b < 1):
            raise ConfigError(
                f"candidate {b!r} is not a bit width; give ints such as 8, 4, 2 (None = float)"
            )
    defaults = _default_configs(candidates) if method is None else {}
    has_bits = method is None or "bits" in {f.name for f in fields(method)}
    out: dict[int | None, QuantConfig | None] = {}
    if None in candidates:
        out[None] = None
    for b in sorted({c for c in candidates if c is not None}, reverse=True):
        if method is None:
            out[b] = defaults[b]
        elif has_bits:
            out[b] = _with_bits(method, b)
        elif not any(v is not None for v in out.values()):
            out[b] = method  # a method without a bit width: "quantized" vs "float" only
    return out


# --- measurements ----------------------------------------------------------------------------


@dataclass
class LayerTable:
    """What each layer costs alone at each candidate width.

    Attributes:
        levels: the candidate widths, most precise first (None = float).
        loss: ``{layer: [loss at each level]}`` with only that layer at that level.
        size: ``{layer: [bytes at each level]}``.
        identical: layers whose every quantized variant gave outputs bit-identical to float
            (they do not reach the metric).

    ``search_plan(..., table=plan.table)`` reuses it for another budget without measuring again.
    """

    levels: list[int | None]
    loss: dict[str, list[float]]
    size: dict[str, list[int]]
    identical: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(self.loss)

    def to_dict(self) -> dict:
        return {
            "levels": list(self.levels),
            "loss": {k: list(v) for k, v in self.loss.items()},
            "size": {k: list(v) for k, v in self.size.items()},
            "identical": list(self.identical),
        }

    @classmethod
    def from_dict(cls, data: dict) -> LayerTable:
        return cls(
            list(data["levels"]),
            {k: list(v) for k, v in data["loss"].items()},
            {k: list(v) for k, v in data["size"].items()},
            list(data.get("identical", [])),
        )

    def check(self, levels: list, names: list[str]) -> None:
        """Raise ConfigError unless the table was measured for these levels and layers."""
        if list(self.levels) != list(levels) or set(self.names) != set(names):
            raise ConfigError(
                f"the table was measured for widths {self.levels} on {len(self.names)} layers, not "
                f"{levels} on {len(names)}; reuse a table only with the same model, method and "
                "candidates"
            )


# --- greedy ordering -------------------------------------------------------------------------


def greedy_moves(table: LayerTable) -> list[tuple[str, int]]:
    """Every move ``(layer, level index)`` in greedy order (least loss per byte saved first),
    from every layer at its most precise level to every layer at its least precise."""
    loss, size, names = table.loss, table.size, table.names
    state = {n: 0 for n in names}
    moves = []
    while True:
        best = None
        for n in names:
            cur = state[n]
            for j in range(cur + 1, len(table.levels)):
                saved = size[n][cur] - size[n][j]
                if saved <= 0:
                    continue
                ratio = max(loss[n][j] - loss[n][cur], 0.0) / saved
                key = (ratio, -saved, n)
                if best is None or key < best[0]:
                    best = (key, n, j)
        if best is None:
            return moves
        _, n, j = best
        state[n] = j
        moves.append((n, j))


def state_after(moves, k: int, names) -> State:
    """The state after the first ``k`` moves."""
    state = {n: 0 for n in names}
    for n, j in moves[:k]:
        state[n] = j
    return state


def fill_slack(state: State, table: LayerTable, slack: int) -> State:
    """Spend ``slack`` bytes raising layers back up (most predicted loss won back per byte
    first)."""
    loss, size = table.loss, table.size
    state = dict(state)
    while True:
        best = None
        for n, cur in state.items():
            for j in range(cur):
                added = size[n][j] - size[n][cur]
                gain = loss[n][cur] - loss[n][j]
                if 0 < added <= slack and gain > 0 and (best is None or gain / added > best[0]):
                    best = (gain / added, n, j, added)
        if best is None:
            return state
        _, n, j, added = best
        state[n] = j
        slack -= added


def single_moves(state: State, table: LayerTable, *, cheaper: bool) -> list[State]:
    """Every state one move away: to a smaller level of one layer (``cheaper``), ordered by
    predicted loss added per byte saved, or to a larger one, ordered by predicted loss won
    back per byte added."""
    out = []
    for n, cur in state.items():
        for j in range(len(table.levels)):
            delta_bytes = table.size[n][cur] - table.size[n][j]  # > 0: saves bytes
            delta_loss = table.loss[n][j] - table.loss[n][cur]  # > 0: predicted worse
            if cheaper and delta_bytes > 0:
                key = (max(delta_loss, 0.0) / delta_bytes, -delta_bytes, n, j)
            elif not cheaper and delta_bytes < 0:
                key = (-max(-delta_loss, 0.0) / -delta_bytes, -delta_bytes, n, j)
            else:
                continue
            out.append((key, {**state, n: j}))
    return [s for _, s in sorted(out, key=lambda kv: kv[0])]


@dataclass
class Search:
    """The measured local search that finishes a plan: from ``state``, take the first single
    move (in predicted order) that ``accept`` approves by measurement, and repeat until a
    whole round of moves is refused (``complete``: no single move left that would be
    accepted) or ``budget`` measurements are spent.

    Attributes:
        taken: the moves accepted, ``(layer, from level, to level)``.
        tried: measurements spent.
        complete: the last round tried every single move and refused them all.
    """

    budget: int
    taken: list[tuple[str, int, int]] = field(default_factory=list)
    tried: int = 0
    complete: bool = False

    def run(
        self,
        state: State,
        moves: Callable[[State], list[State]],
        accept: Callable[[State, State], bool],
    ) -> State:
        while True:
            accepted = None
            for trial in moves(state):
                if self.tried >= self.budget:
                    return state
                self.tried += 1
                if accept(trial, state):
                    accepted = trial
                    break
            if accepted is None:
                self.complete = True
                return state
            (name,) = [n for n in state if state[n] != accepted[n]]
            self.taken.append((name, state[name], accepted[name]))
            state = accepted


# --- the plan as a config ----------------------------------------------------------------------


def build_config(
    method: QuantConfig,
    levels: list,
    configs: dict,
    state: State,
    groups: Callable[[str], list[str]],
) -> QuantConfig:
    """The config of ``state``: the most common width as the base, ``overrides`` for the
    layers at other widths, ``skip`` for the float ones (and what is fused into them)."""
    chosen = [levels[j] for j in state.values() if levels[j] is not None]
    base_bits = (
        Counter(chosen).most_common(1)[0][0] if chosen else next(b for b in levels if b is not None)
    )
    base = configs[base_bits]
    skip = list(method.skip)
    overrides = list(method.overrides)
    for name, j in state.items():
        bits = levels[j]
        if bits is None:
            skip += [escape(m) for m in groups(name)]
        elif bits != base_bits:
            overrides.append((escape(name), configs[bits].replace(skip=(), overrides=())))
    return base.replace(skip=tuple(skip), overrides=tuple(overrides))

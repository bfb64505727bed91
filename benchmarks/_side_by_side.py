"""p50 / p95 of a few variants side by side per case and load: the summary the int8
benchmarks write beside their rows, and its table."""

from __future__ import annotations


def side_by_side(rows: list[dict], variants: tuple[str, ...], ours: str) -> list[dict]:
    """Per (model, batch, load): p50 / p95 (ms) of each of ``variants``, and ``ours``' speed
    relative to each other one (``"<ours>_vs_<other>"``: the other's p50 over ours).

    Example:
        >>> side_by_side(rows, ("fp32", "ql-static", "ort-u8s8-pc"), "ql-static")[0]["load"]
        'idle'
    """
    cases: dict[tuple, dict] = {}
    for r in rows:
        if r.get("variant") in variants and "median_ms" in r:
            case = cases.setdefault(
                (r["model"], r["batch"], r["load"]),
                {"model": r["model"], "batch": r["batch"], "load": r["load"]},
            )
            case[r["variant"]] = {"p50_ms": r["median_ms"], "p95_ms": r["p95_ms"]}
    for case in cases.values():
        p50 = case.get(ours, {}).get("p50_ms")
        for other in variants:
            if p50 and other != ours and other in case:
                case[_ratio_key(ours, other)] = case[other]["p50_ms"] / p50
    return list(cases.values())


def _ratio_key(ours: str, other: str) -> str:
    return f"{ours}_vs_{other}".replace("-", "_")


def side_by_side_table(cases: list[dict], variants: tuple[str, ...], ours: str) -> str:
    """The cases of :func:`side_by_side` as a text table (p50 / p95 ms, then the ratios)."""
    others = [v for v in variants if v != ours]
    head = f"{'model':<11}{'load':<10}{'batch':>6}" + "".join(f"{v:>20}" for v in variants)
    lines = [head + "".join(f"{'vs ' + v:>16}" for v in others)]
    for c in cases:
        cells = "".join(
            f"{c[v]['p50_ms']:>11.2f} / {c[v]['p95_ms']:>6.2f}" if v in c else f"{'-':>20}"
            for v in variants
        )
        ratios = "".join(
            f"{c[k]:>15.2f}x" if (k := _ratio_key(ours, v)) in c else f"{'-':>16}" for v in others
        )
        lines.append(f"{c['model']:<11}{c['load']:<10}{c['batch']:>6}{cells}{ratios}")
    return "\n".join(lines)

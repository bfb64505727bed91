"""Per-layer sensitivity and a mixed-precision plan of SmolLM2, scored by perplexity.

SmolLM2-135M-Instruct (zoo ``smollm2``: the dequantized Q4_1 GGUF model is the float
reference) on Hamlet (zoo ``shakespeare`` test split): ``ql.analysis.sensitivity`` with the
perplexity metric (each layer alone at ``--bits``, RTN in groups of 128, scored on
``--windows`` windows of 512 tokens; the drop is the perplexity increase in percent), then
``search_plan`` with candidates 8 / 4 bits / float under ``--max-ppl-increase`` percent,
verified by measuring. Each pass runs the whole model (cutting decoder layers off leaves no
usable language model); ``--blocks N`` measures and plans only the Linears of the first N
decoder blocks and ``lm_head`` (the rest stay float), which bounds the number of passes.

Run: ``python benchmarks/llm_sensitivity.py [--blocks N]`` writes
benchmarks/results/llm_sensitivity.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _results import run_info, write_results

import quantlens as ql
from quantlens.analysis import search_plan, sensitivity
from quantlens.analysis.sensitivity import escape
from quantlens.zoo import shakespeare, smollm2

RESULTS = Path(__file__).parent / "results" / "llm_sensitivity.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2, help="Linears of the first N blocks")
    parser.add_argument("--bits", type=int, default=3, help="sensitivity bit width (RTN g128)")
    parser.add_argument("--windows", type=int, default=1, help="windows of 512 tokens scored")
    parser.add_argument("--max-ppl-increase", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=10, help="sensitivity rows recorded")
    parser.add_argument("--skip-plan", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = run_info("llm_sensitivity", args.threads)
    model = ql.zoo.load_model("smollm2")
    data = {"input_ids": shakespeare.token_stream(smollm2.tokenizer(), "test")}
    later = [
        escape(n)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and n.startswith("model.layers.")
        and int(n.split(".")[2]) >= args.blocks
    ]
    config = ql.WeightOnly(bits=args.bits, group_size=128, skip=tuple(later))
    start = time.perf_counter()
    result = sensitivity(model, data, config, max_batches=args.windows, progress=False)
    seconds = time.perf_counter() - start
    print(result.__str__().split("\n", 1)[0], f"({seconds:.0f} s)", flush=True)
    out = {
        **info,
        "blocks_measured": args.blocks,
        "windows": args.windows,
        "note": "SmolLM2-135M-Instruct from its Q4_1 GGUF (dequantized float32 = the float "
        "reference), Hamlet; drops are perplexity increases in percent",
        "sensitivity": {
            "config": f"w{args.bits} g128 rtn",
            "float_perplexity": result.baseline,
            "all_quantized_perplexity": result.full_value,
            "all_quantized_increase_pct": result.full_drop,
            "layers_measured": len(result.rows),
            "seconds": seconds,
        },
        "rows": [
            {"rank": i, "layer": r.name, "perplexity": r.value, "increase_pct": r.drop}
            for i, r in enumerate(result.rows[: args.top], 1)
        ],
    }
    write_results(args.out, out)
    if args.skip_plan:
        return
    start = time.perf_counter()
    plan = search_plan(
        model,
        data,
        candidates=(8, 4, None),
        method=ql.WeightOnly(bits=8, group_size=128, skip=tuple(later)),
        max_ppl_increase=args.max_ppl_increase,
        max_batches=args.windows,
        polish=16,
        progress=False,
    )
    seconds = time.perf_counter() - start
    print(str(plan).splitlines()[-3:], flush=True)
    out["plan"] = {
        "budget_pct": args.max_ppl_increase,
        "met_budget": plan.met_budget,
        "perplexity": plan.measured_value,
        "increase_pct": plan.measured_drop,
        "size_mb": plan.size_bytes / 1e6,
        "float_mb": plan.float_bytes / 1e6,
        "bits": {str(b): sum(1 for c in plan.layers if c.bits == b) for b in (8, 4, None)},
        "seconds": seconds,
    }
    out["plan_uniform"] = [  # the same layers at one width each, for comparison
        {"bits": u.bits, "size_mb": u.size_bytes / 1e6, "increase_pct": u.drop}
        for u in plan.uniform
    ]
    write_results(args.out, out)


if __name__ == "__main__":
    main()

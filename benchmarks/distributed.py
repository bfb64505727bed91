"""One process vs 2 gloo ranks on this machine: GPTQ 4-bit on MiniLM, QAT of digits-cnn and
MiniLM's per-layer sensitivity.

Run: python benchmarks/distributed.py [--ranks 2] [--skip-gptq] [--skip-qat]
[--skip-sensitivity]. Writes benchmarks/results/distributed.json (the rows of a skipped case
are kept from the file as they were, with their date and load average) and prints a table.

- ``gptq-minilm``: ``ql.WeightOnly(bits=4, group_size=64, algorithm="gptq")`` on the offline
  all-MiniLM-L6-v2, calibrated on the zoo's 32 calibration sentences: in one process on all
  of them, then on N forked ranks, rank ``r`` on sentences ``r, r + N, ...`` (Hessians and
  sample counts summed over the ranks). Reported: each model's mean embedding cosine to
  float on the 200+ evaluation sentences, their difference (acceptance: < 1e-4), the cosine
  between the two quantized models' embeddings, how many integer weights differ, and the
  wall time of each run (on 2 cores, 2 ranks do not halve it: the GPTQ column loop runs
  whole on every rank).
- ``qat-digits``: ``ql.train_qat`` of digits-cnn for one epoch over the train split (batches
  of 64; on N ranks the same global batches, each rank its 64/N share, under
  DistributedDataParallel), then ``ql.convert``: int8 test accuracy of each run (acceptance:
  within 0.3 points) and whether every rank converted to the same int8 tensors.
- ``sensitivity-minilm``: ``ql.analysis.sensitivity`` of all-MiniLM-L6-v2 with
  ``WeightOnly(bits=4, group_size=32)`` (the pooler skipped) on the 104 test sentences of
  benchmarks/analysis.py (``--sentences`` fewer on a loaded machine): in one process, then
  on N forked ranks, each measuring every N-th layer's pass (``quantlens.core.spread``).
  Reported: the wall time of each (each rank also builds the float outputs and the
  quantized model, so on 2 cores 2 ranks save less than half), and whether every rank's
  ranking equals the single process's.

Every rank runs torch on one thread; so does the single process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import pickle
import queue
import socket
import time
from pathlib import Path

import torch
from _results import run_info, write_results

import quantlens as ql
from quantlens import zoo

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.json"


def spawn(fn, world: int, *args, timeout: float = 900.0) -> list:
    """``fn(rank, world, *args)`` on ``world`` forked ranks in a gloo group on 127.0.0.1;
    the values they return, by rank (an exception in a rank is raised here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def main(rank: int) -> None:
        torch.set_num_threads(1)
        torch.distributed.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout),
        )
        try:
            # plain bytes: the queue would share tensors through file descriptors that die
            # with this process
            results.put((rank, None, pickle.dumps(fn(rank, world, *args))))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            results.put((rank, f"{type(exc).__name__}: {exc}", None))
        finally:
            torch.distributed.destroy_process_group()

    procs = [ctx.Process(target=main, args=(r,), daemon=True) for r in range(world)]
    for p in procs:
        p.start()
    got = {}
    try:
        for _ in range(world):
            rank, error, value = results.get(timeout=timeout)
            if error is not None:
                raise RuntimeError(f"rank {rank}: {error}")
            got[rank] = pickle.loads(value)
    except queue.Empty:
        raise RuntimeError(f"a rank gave no result within {timeout:g} s") from None
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return [got[r] for r in range(world)]


def int_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The integer tensors of a quantized model (packed weights, int8 weights)."""
    out = {}
    for name, t in model.state_dict().items():
        if isinstance(t, torch.Tensor) and t.is_quantized:
            out[name] = t.int_repr()
        elif isinstance(t, torch.Tensor) and not t.is_floating_point():
            out[name] = t
    return out


# --- GPTQ on MiniLM --------------------------------------------------------------------------


def _gptq(rank: int, world: int) -> dict:
    from quantlens.zoo import minilm, sentences

    torch.set_num_threads(1)
    tok = minilm.tokenizer()
    calib = [dict(tok(s, return_tensors="pt")) for s in sentences.calibration_sentences()]
    config = ql.WeightOnly(bits=4, group_size=64, algorithm="gptq")
    start = time.perf_counter()
    qm = ql.quantize(zoo.load_model("minilm"), config, calib_data=calib[rank::world])
    seconds = time.perf_counter() - start
    emb = minilm.mean_pooled_embeddings(qm, zoo.load_dataset("sentences").batches(128))
    return {"emb": emb, "ints": int_state(qm), "seconds": seconds}


def gptq_minilm(world: int) -> dict:
    from quantlens.zoo import minilm

    torch.set_num_threads(1)
    ref = minilm.mean_pooled_embeddings(
        zoo.load_model("minilm"), zoo.load_dataset("sentences").batches(128)
    )
    start = time.perf_counter()
    one = _gptq(0, 1)
    one_wall = time.perf_counter() - start
    start = time.perf_counter()
    ranks = spawn(_gptq, world)
    ranks_wall = time.perf_counter() - start
    cos_one = minilm.mean_cosine(ref, one["emb"])
    cos_ranks = minilm.mean_cosine(ref, ranks[0]["emb"])
    differing = sum(int((one["ints"][k] != ranks[0]["ints"][k]).sum()) for k in one["ints"])
    total = sum(t.numel() for t in one["ints"].values())
    return {
        "case": "gptq-minilm",
        "config": "WeightOnly(bits=4, group_size=64, algorithm='gptq'), 32 calibration sentences",
        "ranks": world,
        "mean_cosine_to_float_1_process": cos_one,
        "mean_cosine_to_float_ranks": cos_ranks,
        "mean_cosine_difference": abs(cos_one - cos_ranks),
        "cosine_1_process_vs_ranks": minilm.mean_cosine(one["emb"], ranks[0]["emb"]),
        "ranks_identical": all(torch.equal(r["emb"], ranks[0]["emb"]) for r in ranks),
        "integer_weights_differing": differing,
        "integer_weights": total,
        "wall_s_1_process": one_wall,
        "wall_s_ranks": ranks_wall,
        "quantize_s_1_process": one["seconds"],
        "quantize_s_per_rank": [r["seconds"] for r in ranks],
    }


# --- QAT of digits-cnn -----------------------------------------------------------------------


def _qat(rank: int, world: int) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, test = zoo.load_dataset("digits", "train"), zoo.load_dataset("digits", "test")
    qat = ql.prepare_qat(zoo.load_model("digits-cnn"), ql.QAT())
    start = time.perf_counter()
    history = ql.train_qat(qat, train.as_pair(), epochs=1, lr=1e-3, progress=False)
    seconds = time.perf_counter() - start
    qm = ql.convert(qat.eval())
    with torch.no_grad():
        acc = (qm(test.inputs).argmax(1) == test.labels).float().mean().item() * 100
    return {
        "accuracy": acc,
        "ints": int_state(qm),
        "train_loss": history[0]["train_loss"],
        "seconds": seconds,
    }


def qat_digits(world: int) -> dict:
    one = _qat(0, 1)
    ranks = spawn(_qat, world)
    same = all(
        all(torch.equal(r["ints"][k], ranks[0]["ints"][k]) for k in ranks[0]["ints"]) for r in ranks
    )
    return {
        "case": "qat-digits",
        "config": "QAT(), 1 epoch over 1,347 train images, lr 1e-3, global batch 64",
        "ranks": world,
        "int8_accuracy_1_process": one["accuracy"],
        "int8_accuracy_ranks": [r["accuracy"] for r in ranks],
        "accuracy_difference": max(abs(r["accuracy"] - one["accuracy"]) for r in ranks),
        "ranks_identical_int8": same,
        "train_loss_1_process": one["train_loss"],
        "train_loss_ranks": ranks[0]["train_loss"],
        "train_s_1_process": one["seconds"],
        "train_s_per_rank": [r["seconds"] for r in ranks],
    }


# --- sensitivity of MiniLM ------------------------------------------------------------------


def _sensitivity(rank: int, world: int, sentences: int) -> dict:
    from analysis import minilm_data

    from quantlens.analysis import sensitivity

    torch.set_num_threads(1)
    model = zoo.load_model("minilm")
    data = minilm_data()
    kept = 0
    trimmed = []
    for batch in data:  # the first ``sentences`` sentences
        take = min(sentences - kept, int(batch["input_ids"].shape[0]))
        if take > 0:
            trimmed.append({k: v[:take] for k, v in batch.items()})
        kept += take
    method = ql.WeightOnly(bits=4, group_size=32, skip=("pooler.*",))
    start = time.perf_counter()
    res = sensitivity(model, trimmed, method, progress=False)
    seconds = time.perf_counter() - start
    return {
        "ranking": [(r.name, round(r.drop, 9)) for r in res.rows],
        "seconds": seconds,
        "sentences": kept,
    }


def sensitivity_minilm(world: int, sentences: int) -> dict:
    from analysis import minilm_data

    zoo.load_model("minilm"), minilm_data()  # imports and file caches warm for both runs
    start = time.perf_counter()
    one = _sensitivity(0, 1, sentences)
    one_wall = time.perf_counter() - start
    start = time.perf_counter()
    ranks = spawn(_sensitivity, world, sentences)
    ranks_wall = time.perf_counter() - start
    names = [n for n, _ in one["ranking"]]
    return {
        "case": "sensitivity-minilm",
        "config": (
            "WeightOnly(bits=4, group_size=32, skip=pooler.*), "
            f"{one['sentences']} test sentences, {len(names)} layers"
        ),
        "ranks": world,
        "same_ranking": all([n for n, _ in r["ranking"]] == names for r in ranks),
        "same_drops": all(r["ranking"] == one["ranking"] for r in ranks),
        "most_sensitive": names[:3],
        "wall_s_1_process": one_wall,
        "wall_s_ranks": ranks_wall,
        "speedup": one_wall / ranks_wall,
        "sensitivity_s_1_process": one["seconds"],
        "sensitivity_s_per_rank": [r["seconds"] for r in ranks],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--skip-gptq", action="store_true")
    parser.add_argument("--skip-qat", action="store_true")
    parser.add_argument("--skip-sensitivity", action="store_true")
    parser.add_argument("--sentences", type=int, default=104, help="MiniLM sensitivity sentences")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    if not args.skip_qat:
        rows.append(qat_digits(args.ranks))
    if not args.skip_gptq:
        rows.append(gptq_minilm(args.ranks))
    if not args.skip_sensitivity:
        rows.append(sensitivity_minilm(args.ranks, args.sentences))
    for row in rows:
        print(row["case"])
        for key, value in row.items():
            if key != "case":
                shown = f"{value:.6g}" if isinstance(value, float) else value
                print(f"  {key:32s} {shown}")
    info = run_info("distributed", threads=1)
    for row in rows:  # each row keeps the load of the run that measured it
        row["load_average_at_start"] = info["load_average_at_start"]
    done = {row["case"] for row in rows}
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {"rows": []}
    kept = [r for r in earlier["rows"] if r["case"] not in done]  # skipped cases stay
    for row in kept:
        row.setdefault("load_average_at_start", earlier.get("load_average_at_start"))
        row.setdefault("date", earlier.get("date"))
    rows = kept + rows
    write_results(args.out, {**info, "rows": rows})


if __name__ == "__main__":
    main()

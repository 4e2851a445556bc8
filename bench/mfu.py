"""How far from this machine's limit do our training runs go? Model FLOP utilisation (MFU).

    python bench/mfu.py                  # matmul peak of this CPU + MFU of bench/results/throughput.json
    python bench/mfu.py --sizes 512 1024 # other matrix sizes

1. The peak: time ``torch.matmul`` of square fp32 matrices at a few sizes (n x n times n x n is
   2 n^3 FLOPs) with the threads torch uses by default, and keep the best rate. That is what a
   training step could reach if it were nothing but large dense matmuls; real steps also run
   softmax, layer norms, the optimizer and Python, so 30-50% MFU is already good on a CPU.
2. The runs: for every run recorded by ``bench/throughput.py`` (real tokens/s and the model's
   shape), MFU = model FLOPs per token x real tokens per second / peak.

Model FLOPs per token (the PaLM / nanoGPT convention, adapted to adapters):
    forward                       2 x N            N = parameters used in matmuls: every linear
                                                   layer, the LM head included, embeddings
                                                   (a table lookup) excluded
    backward, activation grads    2 x N            needed through every layer under the top
                                                   adapter, frozen or not
    backward, weight grads        2 x N_trainable  only trainable weights get them: for LoRA
                                                   that is the small A/B matrices, so a LoRA
                                                   step costs about 4N, not the 6N of full
                                                   finetuning
    attention scores              (2 + 2 + 2) x 2 x layers x hidden x seq_len
                                                   (QK^T and AV, forward and both backward terms)
The same formula is applied to both sides of a benchmark, so the MFU ratio equals the ratio of
real tokens per second: padding and skipped LM-head rows are not counted as useful work.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_flops_per_second(size: int, *, repeats: int = 5, dtype: str = "float32") -> float:
    """Best observed FLOP/s of an n x n by n x n matmul (2 n^3 FLOPs per product)."""
    import torch

    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    torch.matmul(a, b)  # warm up: thread pool start and first-touch of the output
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def measure_peak(sizes: list[int], dtype: str = "float32") -> dict:
    import torch

    rates = {str(n): matmul_flops_per_second(n, dtype=dtype) for n in sizes}
    return {
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "gflops_by_size": {k: round(v / 1e9, 2) for k, v in rates.items()},
        "peak_gflops": round(max(rates.values()) / 1e9, 2),
    }


def flops_per_token(
    *, matmul_params: int, trainable_params: int, layers: int, hidden: int, seq_len: float
) -> float:
    """Training FLOPs per real token for a transformer, by the formula in the module docstring."""
    dense = 2 * matmul_params + 2 * matmul_params + 2 * trainable_params
    attention = 6 * 2 * layers * hidden * seq_len
    return dense + attention


def mfu_of_run(run: dict, peak_flops: float) -> dict:
    """MFU of one run recorded by bench/throughput.py (it records the model shape it trained)."""
    shape = run["model_shape"]
    per_token = flops_per_token(
        matmul_params=shape["matmul_params"],
        trainable_params=shape["trainable_params"],
        layers=shape["layers"],
        hidden=shape["hidden"],
        seq_len=run["mean_sequence_tokens"],
    )
    achieved = per_token * run["real_tokens_per_second"]
    return {
        "flops_per_token": round(per_token),
        "achieved_gflops": round(achieved / 1e9, 2),
        "mfu": round(achieved / peak_flops, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--throughput", type=Path, default=RESULTS / "throughput.json",
                        help="results of bench/throughput.py to rate (skipped when missing)")
    parser.add_argument("--out", type=Path, default=RESULTS / "mfu.json")
    args = parser.parse_args(argv)

    peak = measure_peak(args.sizes)
    print(f"fp32 matmul on {platform.processor() or platform.machine()}, {peak['threads']} threads:")
    for size, rate in peak["gflops_by_size"].items():
        print(f"  {size:>5} x {size:<5} {rate:8.1f} GFLOP/s")
    print(f"  peak           {peak['peak_gflops']:8.1f} GFLOP/s")

    runs = []
    if args.throughput.is_file():
        bench = json.loads(args.throughput.read_text())
        for case_name, case in bench["cases"].items():
            for side in ("plain", "tunesmith"):
                run = case[side]
                rated = mfu_of_run(run, peak["peak_gflops"] * 1e9)
                runs.append({"case": case_name, "side": side,
                             "real_tokens_per_second": run["real_tokens_per_second"], **rated})
        print(f"\nMFU of the runs in {args.throughput.name}:")
        print(f"  {'case':<28} {'side':<10} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>7}")
        for r in runs:
            print(f"  {r['case']:<28} {r['side']:<10} {r['real_tokens_per_second']:>9.0f} "
                  f"{r['achieved_gflops']:>8.1f} {r['mfu']:>7.1%}")
    else:
        print(f"\n{args.throughput} not found: run `python bench/throughput.py` first to rate the runs.")

    result = {
        "machine": {"processor": platform.processor() or platform.machine(),
                    "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "CPU shared with other jobs while measured: peak and MFU are noisy",
        "peak": peak,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

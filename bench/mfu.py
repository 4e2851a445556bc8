"""How far from this machine's limit do our training runs go? Model FLOP utilisation (MFU).

    python bench/mfu.py                  # matmul peak of this CPU + MFU of bench/results/throughput.json
    python bench/mfu.py --sizes 512 1024 # other matrix sizes
    python bench/mfu.py --wait-quiet 1800 --throughput bench/results/throughput_minilm.json \\
        bench/results/throughput_trl.json   # wait for a quiet machine, rate two result files

The peak only means something on a quiet machine: other jobs take the cores and the figure
falls (on the 2-core machine of docs/performance.md it ranged from 10 to 124 GFLOP/s with the
load). So the load average is recorded with it, ``--wait-quiet`` waits (up to the seconds
given) for the 1-minute load average to fall below ``--quiet-load`` before measuring, and a
peak measured above that load is marked as a floor in the result.

1. The peak: time ``torch.matmul`` of square fp32 matrices at a few sizes (n x n times n x n is
   2 n^3 FLOPs) with the threads torch uses by default, and keep the best rate. That is what a
   training step could reach if it were nothing but large dense matmuls; real steps also run
   softmax, layer norms, the optimizer and Python, so 30-50% MFU is already good on a CPU.
2. The runs: for every run recorded by ``bench/throughput.py`` (real tokens/s and the model's
   shape), MFU = model FLOPs per token x real tokens per second / peak. Runs that multiplied
   in bf16 (autocast: tunesmith's default on a CPU with AMX-BF16) are also rated against the
   bf16 peak, which on such a CPU is several times the fp32 one: against the fp32 peak (the
   issue's yardstick) they can pass 100%.

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
import os
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


def measure_peak(sizes: list[int], dtype: str = "float32", repeats: int = 5) -> dict:
    import torch

    rates = {str(n): matmul_flops_per_second(n, dtype=dtype, repeats=repeats) for n in sizes}
    threads = torch.get_num_threads()
    # One core's own peak: what a second of CPU time can reach (the rate per CPU second of a
    # run is measured against it; a busy machine disturbs it less than the all-core peak).
    torch.set_num_threads(1)
    one = max(matmul_flops_per_second(n, dtype=dtype, repeats=repeats) for n in sizes)
    torch.set_num_threads(threads)
    return {
        "dtype": dtype,
        "threads": threads,
        "gflops_by_size": {k: round(v / 1e9, 2) for k, v in rates.items()},
        "peak_gflops": round(max(rates.values()) / 1e9, 2),
        "peak_gflops_one_thread": round(one / 1e9, 2),
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


def wait_for_quiet(threshold: float, timeout: float, poll: float = 15.0) -> tuple[float, float]:
    """Wait until the 1-minute load average is below ``threshold`` or ``timeout`` seconds have
    passed; returns (load average then, seconds waited). Costs nothing but the wait."""
    started = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - started
        if load < threshold or waited >= timeout:
            return load, waited
        print(f"load average {load:.2f} >= {threshold}: waiting ({waited:.0f} of {timeout:.0f} s)",
              flush=True)
        time.sleep(poll)


def computes_in_bf16(run: dict) -> bool:
    """Whether a run of bench/throughput.py multiplied in bf16: tunesmith's recorded precision
    ("bf16 autocast"), TRL's bf16 setting; the plain script and older files are fp32."""
    first = (run.get("runs") or [run])[0]  # a side's summary keeps its runs
    return "bf16" in str(first.get("precision", "")) or bool((first.get("setting") or {}).get("bf16"))


def sides_of(case: dict) -> list[str]:
    """The sides a case of a throughput result holds (older files: plain and tunesmith)."""
    return case.get("sides", ["plain", "tunesmith"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--throughput", type=Path, nargs="+", default=[RESULTS / "throughput.json"],
                        help="results of bench/throughput.py to rate (skipped when missing)")
    parser.add_argument("--out", type=Path, default=RESULTS / "mfu.json")
    parser.add_argument("--repeats", type=int, default=5,
                        help="products timed per size, the fastest kept (more on a busy machine)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a quiet machine before measuring the peak")
    parser.add_argument("--quiet-load", type=float, default=1.5,
                        help="1-minute load average below which the machine counts as quiet")
    parser.add_argument("--peak-from", type=Path, metavar="MFU_JSON",
                        help="measure nothing: take the peak (and its load and date) from an "
                        "earlier result of this script, and rate the --throughput files against it")
    args = parser.parse_args(argv)

    if args.peak_from:
        earlier = json.loads(args.peak_from.read_text())
        peak, date, waited = earlier["peak"], earlier["date"], earlier["waited_for_quiet_seconds"]
        load_before, load_after = earlier["load_average_before"], earlier["load_average_after"]
    else:
        _, waited = wait_for_quiet(args.quiet_load, args.wait_quiet)
        load_before = os.getloadavg()
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        peak = measure_peak(args.sizes, repeats=args.repeats)
        # The bf16 peak too: on a CPU with AMX, runs under bf16 autocast multiply on the AMX
        # tiles, whose peak is several times the fp32 one (rated against both below).
        peak["bf16"] = measure_peak(args.sizes, dtype="bfloat16", repeats=args.repeats)
        load_after = os.getloadavg()
    quiet = max(load_before[0], load_after[0]) < args.quiet_load
    print(f"fp32 matmul on {platform.processor() or platform.machine()}, {peak['threads']} threads:")
    for size, rate in peak["gflops_by_size"].items():
        print(f"  {size:>5} x {size:<5} {rate:8.1f} GFLOP/s")
    print(f"  one thread     {peak['peak_gflops_one_thread']:8.1f} GFLOP/s")
    print(f"  peak           {peak['peak_gflops']:8.1f} GFLOP/s at load average "
          f"{load_before[0]:.2f} / {load_after[0]:.2f} (before / after)"
          + ("" if quiet else f": NOT quiet (>= {args.quiet_load}), the peak is a floor"))
    bf16_peak = peak.get("bf16")
    if bf16_peak:
        print(f"  bf16 peak      {bf16_peak['peak_gflops']:8.1f} GFLOP/s "
              f"(one thread {bf16_peak['peak_gflops_one_thread']:.1f})")

    runs = []
    per_core = peak.get("peak_gflops_one_thread", peak["peak_gflops"] / peak["threads"]) * 1e9
    for path in args.throughput:
        if not path.is_file():
            print(f"\n{path} not found: run `python bench/throughput.py` first to rate the runs.")
            continue
        bench = json.loads(path.read_text())
        for case_name, case in bench["cases"].items():
            for side in sides_of(case):
                run = case[side]
                rated = mfu_of_run(run, peak["peak_gflops"] * 1e9)
                # Per second of the process's CPU time against one core's peak: what the run
                # made of the CPU it got, which load disturbs much less.
                per_cpu = rated["flops_per_token"] * run["real_tokens_per_cpu_second"] / per_core
                in_bf16 = computes_in_bf16(run)
                against_bf16 = (mfu_of_run(run, bf16_peak["peak_gflops"] * 1e9)["mfu"]
                                if bf16_peak and in_bf16 else None)
                runs.append({"file": path.name, "case": case_name, "side": side,
                             "real_tokens_per_second": run["real_tokens_per_second"],
                             "real_tokens_per_cpu_second": run["real_tokens_per_cpu_second"],
                             **rated, "mfu_per_cpu_second": round(per_cpu, 4),
                             "bf16_autocast": in_bf16, "mfu_vs_bf16_peak": against_bf16})
    if runs:
        print("\nMFU of the runs (wall clock against the peak; per CPU second against one core's peak):")
        print(f"  {'case':<24} {'side':<24} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>7} {'per CPU s':>9}"
              f" {'vs bf16 peak':>12}")
        for r in runs:
            bf16_mfu = f"{r['mfu_vs_bf16_peak']:>12.1%}" if r["mfu_vs_bf16_peak"] is not None else ""
            print(f"  {r['case']:<24} {r['side']:<24} {r['real_tokens_per_second']:>9.0f} "
                  f"{r['achieved_gflops']:>8.1f} {r['mfu']:>7.1%} {r['mfu_per_cpu_second']:>9.1%} {bf16_mfu}")

    result = {
        "machine": {"processor": platform.processor() or platform.machine(),
                    "platform": platform.platform()},
        "date": date,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "waited_for_quiet_seconds": round(waited),
        "quiet": quiet,
        "note": (f"measured with the 1-minute load average below {args.quiet_load}: the peak of "
                 "this CPU as torch reaches it" if quiet else
                 f"measured at a 1-minute load average of {max(load_before[0], load_after[0]):.2f} "
                 f"(>= {args.quiet_load}): other jobs held part of the CPU, so the peak is a "
                 "floor and the MFU figures are upper bounds"),
        "throughput_files": [p.name for p in args.throughput],
        "peak": peak,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

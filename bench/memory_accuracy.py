"""The training estimate alone against training alone (for the whole run: bench/memory_run.py).

For MiniLM (classification) and SmolLM2-135M (causal LM), with full finetuning, LoRA and QLoRA,
at two micro-batch sizes, each row runs in its own subprocess so its peak is clean:

1. import torch/transformers/peft, then read the process RSS (``base``);
2. load the real model with ``tunesmith.models.load_model``, apply the method with
   ``tunesmith.methods.apply_method``, build AdamW over ``optimizer_param_groups``;
3. reset the kernel's peak-RSS counter (``/proc/self/clear_refs`` = 5), so loading transients
   (GGUF/safetensors reading, 4-bit quantisation) do not count;
4. train a few steps on fixed-shape batches (``batch x length`` random tokens: the estimate's
   ``max_length`` is then exact), forward + backward + AdamW step + ``zero_grad``;
5. measured = peak RSS (``VmHWM``) - base: the memory training added to the process.

The children run with ``MALLOC_MMAP_THRESHOLD_=131072``: glibc then serves every large tensor
with its own mapping and returns it to the system when freed, so RSS follows the memory that
tensors really hold. With glibc's default (a threshold that grows after each large free), the
heap keeps freed activation blocks and peak RSS came out 1.5-1.8x higher for the same run on
MiniLM (see docs/advise.md): that is allocator retention, not memory training needs, and no
estimate of tensors can predict it. ``--default-malloc`` measures that way instead.

The prediction is ``estimate_memory(model_shape(name), method, batch, length, fp32, adamw,
device="cpu")``'s
``total_gb``: weights + gradients + optimizer states + activations. Linux only (``/proc``).
Memory is not affected by other jobs sharing the CPU, so the figures hold on a busy machine.

    python bench/memory_accuracy.py            # every row, prints the table, writes the JSON
    python bench/memory_accuracy.py --quick    # MiniLM rows only
    python bench/memory_accuracy.py --only smollm2   # rows whose model name contains this
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROWS = [
    # (model, task, method, batch, length)
    ("minilm", "classification", "full", 8, 128),
    ("minilm", "classification", "full", 32, 128),
    ("minilm", "classification", "lora", 8, 128),
    ("minilm", "classification", "lora", 32, 128),
    ("minilm", "classification", "qlora", 8, 128),
    ("minilm", "classification", "qlora", 32, 128),
    ("smollm2-135m-instruct", "instruction", "full", 2, 128),
    ("smollm2-135m-instruct", "instruction", "full", 8, 128),
    ("smollm2-135m-instruct", "instruction", "lora", 2, 128),
    ("smollm2-135m-instruct", "instruction", "lora", 8, 128),
    ("smollm2-135m-instruct", "instruction", "qlora", 2, 128),
    ("smollm2-135m-instruct", "instruction", "qlora", 8, 128),
]
STEPS = 2
TOLERANCE = 0.15
RESULTS = Path(__file__).resolve().parent / "results" / "memory_accuracy.json"
DEFAULT_MALLOC_RESULTS = RESULTS.with_name("memory_accuracy_default_malloc.json")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(model_name: str, task: str, method: str, batch: int, length: int) -> dict:
    """One row, in this process: see the module docstring."""
    import gc

    import peft  # noqa: F401 - imported before the base reading, like torch
    import torch
    import transformers  # noqa: F401

    from tunesmith.config import FinetuneConfig
    from tunesmith.methods import apply_method, optimizer_param_groups
    from tunesmith.models import load_model

    torch.manual_seed(0)
    gc.collect()
    base_kb = _status_kb("VmRSS")
    labels = ["negative", "positive"] if task == "classification" else None
    loaded = load_model(model_name, task=task, labels=labels, load_in_4bit=method == "qlora")
    cfg = FinetuneConfig(model=model_name, method=method)
    model = apply_method(loaded.model, cfg, task=task)
    model.train()
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, cfg), lr=1e-5)
    gc.collect()
    setup_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    vocab = model.config.vocab_size
    for _ in range(STEPS):
        ids = torch.randint(5, min(vocab, 30000), (batch, length))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        target = torch.randint(0, 2, (batch,)) if task == "classification" else ids
        loss = model(**inputs, labels=target).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del loss
    peak_kb = _status_kb("VmHWM")
    return {"setup_mb": (setup_kb - base_kb) / 1024, "measured_mb": (peak_kb - base_kb) / 1024}


def predict(model_name: str, method: str, batch: int, length: int) -> dict:
    from tunesmith.advise.memory import estimate_memory, model_shape

    est = estimate_memory(model_shape(model_name), method=method, batch_size=batch,
                          max_length=length, device="cpu")
    return {k: v for k, v in est.to_json().items() if k.endswith("_gb")}


def print_row(row: dict) -> None:
    print(f"{row['model']:<22} {row['method']:<6} {row['batch']:>5} {row['length']:>4} "
          f"{row['predicted']['total_gb']:>8.3f}GB {row['measured_gb']:>7.3f}GB "
          f"{row['relative_error']:>+7.1%}")


def repredict(path: Path) -> int:
    data = json.loads(path.read_text())
    for row in data["rows"]:
        if "measured_gb" not in row:
            continue
        row["predicted"] = predict(row["model"], row["method"], row["batch"], row["length"])
        row["relative_error"] = round(row["predicted"]["total_gb"] / row["measured_gb"] - 1, 4)
        row["within_tolerance"] = abs(row["relative_error"]) <= TOLERANCE
        print_row(row)
    path.write_text(json.dumps(data, indent=2) + "\n")
    ok = sum(1 for r in data["rows"] if r.get("within_tolerance"))
    print(f"{ok} of {len(data['rows'])} rows within {TOLERANCE:.0%}; rewrote {path}")
    return 0


def save(results: list[dict], default_malloc: bool) -> Path:
    """Write the rows measured so far (after every row: a long run that is stopped keeps them).
    Rows measured before by another ``--only`` run stay unless measured again."""
    target = DEFAULT_MALLOC_RESULTS if default_malloc else RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)

    def key(r: dict) -> tuple:
        return (r["model"], r["method"], r["batch"], r["length"])

    rows = list(results)
    if target.is_file():
        fresh = {key(r) for r in results}
        rows += [r for r in json.loads(target.read_text())["rows"] if key(r) not in fresh]
    order = {(m, meth, b, n): i for i, (m, _, meth, b, n) in enumerate(ROWS)}
    rows.sort(key=lambda r: order.get(key(r), len(ROWS)))
    target.write_text(json.dumps({
        "what": "predicted total_gb vs measured peak RSS added by training (GB = 1e9 bytes)",
        "steps": STEPS, "tolerance": TOLERANCE,
        "malloc": "glibc default" if default_malloc else "MALLOC_MMAP_THRESHOLD_=131072",
        "rows": rows,
    }, indent=2) + "\n")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM rows only")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc settings as they are (see the docstring)")
    parser.add_argument("--only", help="rows whose 'model method' contains this text")
    parser.add_argument("--repredict", action="store_true",
                        help="recompute the predictions for the measured rows in the JSON "
                        "(after a change to the estimator; measures nothing)")
    parser.add_argument("--row", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.row is not None:
        model_name, task, method, batch, length = ROWS[args.row]
        print(json.dumps(measure(model_name, task, method, batch, length)))
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.repredict:
        return repredict(DEFAULT_MALLOC_RESULTS if args.default_malloc else RESULTS)
    rows = [i for i, r in enumerate(ROWS) if (not args.quick or r[0] == "minilm")
            and (args.only is None or args.only in f"{r[0]} {r[2]}")]
    results = []
    header = f"{'model':<22} {'method':<6} {'batch':>5} {'len':>4} {'predicted':>10} {'measured':>9} {'error':>7}"
    print(header)
    for index in rows:
        model_name, task, method, batch, length = ROWS[index]
        started = time.time()
        env = dict(os.environ)
        if not args.default_malloc:
            env["MALLOC_MMAP_THRESHOLD_"] = "131072"
        child = subprocess.run([sys.executable, __file__, "--row", str(index)],
                               capture_output=True, text=True, check=False, env=env)
        if child.returncode != 0:
            print(f"{model_name:<22} {method:<6} {batch:>5} {length:>4} failed: "
                  f"{child.stderr.strip().splitlines()[-1] if child.stderr.strip() else '?'}")
            results.append({"model": model_name, "method": method, "batch": batch,
                            "length": length, "error": child.stderr[-2000:]})
            continue
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        predicted = predict(model_name, method, batch, length)
        measured_gb = measured["measured_mb"] * 1024 * 1024 / 1e9
        error = predicted["total_gb"] / measured_gb - 1
        results.append({
            "model": model_name, "method": method, "batch": batch, "length": length,
            "predicted": predicted, "measured_gb": round(measured_gb, 4),
            "setup_gb": round(measured["setup_mb"] * 1024 * 1024 / 1e9, 4),
            "relative_error": round(error, 4), "within_tolerance": abs(error) <= TOLERANCE,
            "seconds": round(time.time() - started, 1),
        })
        print_row(results[-1])
        save(results, args.default_malloc)
    ok = [r for r in results if r.get("within_tolerance")]
    print(f"{len(ok)} of {len(results)} rows within {TOLERANCE:.0%}")
    print(f"wrote {save(results, args.default_malloc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
